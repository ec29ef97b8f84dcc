"""The served engine, ready to answer: loaded once, the demo model announced loudly, warmed up.

Shared by the service's start-up (healer.api.app) and each slide worker task
(healer.slides.worker), so both answer with the same model in the same way.
"""

import logging

from healer.model.engine import Engine
from healer.screening.prompts import DEMO_WARNING
from healer.settings import Settings

log = logging.getLogger("healer")


def load_engine(settings: Settings) -> Engine:
    from healer.model.medgemma import MedGemmaEngine  # torch and transformers load only when serving

    engine = MedGemmaEngine.load(settings)
    if engine.info.demo:
        for line in ("=" * 72, DEMO_WARNING, "=" * 72):
            log.warning(line)
    engine.warmup()
    return engine
