"""A real uvicorn process whose engine is deliberately slow (FakeEngine), for load and shutdown
tests: `python -m tests.slow_server` reads the usual settings plus FAKE_DELAY_S."""

import os
import signal

import uvicorn

from healer.model.fake import FakeEngine
from healer.settings import Settings
from healer.api.app import create_app

if __name__ == "__main__":
    settings = Settings()
    app = create_app(settings, engine=FakeEngine(delay_s=float(os.environ.get("FAKE_DELAY_S", "0.5"))))
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # as main.py: graceful exit is 0
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=settings.shutdown_grace_s)
