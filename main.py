"""Healer's entry point: wiring only. The work lives in the `healer` package.

    uvicorn main:app            serves MODEL_DIR (see healer/settings.py for every setting)
    python main.py              the same, on $PORT, as the container runs it
"""

import logging
import signal
import sys

import uvicorn

from healer.api.app import create_app
from healer.model.adapter import AdapterError, check_adapter
from healer.model.model_dir import ModelDirError, check_model_dir, read_source
from healer.settings import Settings

app = create_app()

if __name__ == "__main__":
    settings = Settings()
    try:  # the common mistakes, caught before uvicorn starts: one line, no traceback
        if settings.engine == "transformers":  # ENGINE=vllm: the engine's server holds the weights
            check_model_dir(settings.model_dir)
        if settings.adapter_dir:
            check_adapter(settings.adapter_dir, read_source(settings.model_dir, settings.model_id,
                                                            settings.model_revision))
    except (ModelDirError, AdapterError) as error:
        logging.getLogger("healer").critical("cannot start: %s", error)
        sys.exit(2)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal once its own
    # handler is gone; this no-op receives it, so a graceful shutdown exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_config=None,
                timeout_graceful_shutdown=settings.shutdown_grace_s)
