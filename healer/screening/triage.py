"""Triage bands: where a tile or a slide goes in a pathologist's queue, from its P(yes).

    P(yes) <  TRIAGE_RULE_OUT                      rule-out   negative, low priority
    TRIAGE_RULE_OUT ≤ P(yes) ≤ TRIAGE_RULE_IN      refer      a pathologist looks
    P(yes) >  TRIAGE_RULE_IN                       rule-in    suspicious, review first

A tile exactly at either threshold is referred: that is what makes the evaluation's guarantee
hold when scores tie (healer.evaluation.guarantee). A tile the model did not answer (answer
mass below MIN_ANSWER_MASS) is referred too: its P(yes) says nothing, and referring it can only
catch more. A slide's band is its worst tile's. The thresholds come from
`python -m healer.evaluate … --triage` (docs/evaluation.md, "Triage").
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Band = Literal["rule-out", "refer", "rule-in"]
BANDS: tuple[Band, ...] = ("rule-out", "refer", "rule-in")  # from least to most urgent


@dataclass(frozen=True)
class Triage:
    rule_out: float
    rule_in: float

    def band(self, p_yes: float, answered: bool = True) -> Band:
        if answered and p_yes < self.rule_out:
            return "rule-out"
        if answered and p_yes > self.rule_in:
            return "rule-in"
        return "refer"


def worst(bands: Iterable[Band]) -> Band:
    """The most urgent band; "refer" when there is none (nothing screened rules nothing out)."""
    return max(bands, key=BANDS.index, default="refer")


def counts(bands: Iterable[Band]) -> dict[Band, int]:
    found = list(bands)
    return {band: found.count(band) for band in BANDS}


def read_file(path: Path) -> tuple[float, float]:
    """(rule_out, rule_in) from the triage.json the evaluation writes; ValueError saying what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
        return float(data["rule_out"]), float(data["rule_in"])
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not the triage.json that `python -m healer.evaluate --triage` "
                         f"writes (rule_out and rule_in numbers): {error!r}") from None


def calibrated_model(path: Path) -> dict | None:
    """The model a triage.json's thresholds were chosen with (`model`, as the evaluation writes
    it), or None when the file does not say."""
    model = json.loads(Path(path).read_text()).get("model")
    return model if isinstance(model, dict) else None


def model_mismatch(calibrated: dict, served) -> str | None:
    """Why thresholds chosen with the `calibrated` model do not hold for the `served` one (its
    ModelInfo), or None. A guarantee is about one model's scores: another checkpoint, revision or
    adapter scores differently, so its thresholds promise nothing here."""
    adapter = (calibrated.get("adapter") or {}).get("sha256")
    served_adapter = served.adapter.sha256 if served.adapter else None
    if calibrated.get("id") != served.id:
        return f"they were chosen with {calibrated.get('id')}, and this service serves {served.id}"
    if calibrated.get("revision") and served.revision and calibrated["revision"] != served.revision:
        return f"they were chosen with revision {calibrated['revision']}, and this service serves {served.revision}"
    if adapter != served_adapter:
        return (f"they were chosen with adapter {adapter or 'none'}, and this service serves "
                f"{served_adapter or 'none'}")
    return None
