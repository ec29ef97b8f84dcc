"""The app factory: settings, logging, middleware, routers, and the life cycle of the model.

    create_app(settings, engine)   tests pass their own settings, and a fake engine for
                                   HTTP-contract tests; the service passes nothing.

The lifespan loads the engine once and warms it up before the server listens, so `GET /` never
says ready too early; a SIGTERM meanwhile ends start-up at once (healer.api.signals); on shutdown
the slide jobs stop first, then queued requests drain.
"""

import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from healer.api import openai_compat, screening, slides
from healer.api.handlers import install_error_handlers
from healer.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from healer.api.signals import ExitSignal, StartupStopped, in_daemon_thread
from healer.logs import setup_logging
from healer.metrics import MODEL_LOAD
from healer.model.engine import Engine
from healer.model.load import load_engine
from healer.text.prompts import DISCLAIMER
from healer.screening.service import ScreeningService
from healer.settings import Settings
from healer.slides.jobs import SlideJobs

FRONTEND_DIST = Path(__file__).resolve().parents[2] / "frontend" / "dist"
MULTIPART_SLACK = 64 * 1024  # the form's boundaries and the question ride along with the file

log = logging.getLogger("healer")


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    setup_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        exit_signal = ExitSignal()
        exit_signal.install()
        try:
            loaded = engine or await exit_signal.unless_stopped(in_daemon_thread(lambda: load_engine(settings)))
            service = ScreeningService(loaded, settings)
        except StartupStopped as stopped:
            log.warning("%s", stopped)
            raise
        except Exception as error:
            log.critical("cannot start: %s", error)
            raise
        MODEL_LOAD.set(time.perf_counter() - started)
        app.state.service = service
        app.state.slide_jobs = SlideJobs(service.batcher, settings, service.model_card)
        await app.state.slide_jobs.start()
        adapter = service.model_card.adapter
        log.info("ready: %s on %s%s", service.model_card.id, service.model_card.device,
                 f", adapter {adapter.name} ({adapter.sha256})" if adapter else "")
        yield
        await app.state.slide_jobs.stop()
        await service.close()

    app = FastAPI(title="Healer", description=DISCLAIMER, version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    # Outermost last: request id around everything, CORS headers on every answer, 413s included.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=(settings.max_upload_bytes + MULTIPART_SLACK, "MAX_UPLOAD_MB"),
        path_limits={"/slides": (settings.max_slide_bytes + MULTIPART_SLACK, "MAX_SLIDE_MB"),
                     # the image as base64 in JSON: 4/3 of its bytes
                     "/v1/chat/completions": (settings.max_upload_bytes * 4 // 3 + MULTIPART_SLACK, "MAX_UPLOAD_MB")},
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"], expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware, upload_origin=upload_origin(settings))
    install_error_handlers(app)
    app.include_router(screening.router)
    screening.document_stream_events(app)
    app.include_router(openai_compat.router)
    app.include_router(slides.router)
    if FRONTEND_DIST.is_dir():
        app.mount("/app", StaticFiles(directory=FRONTEND_DIST, html=True), name="app")
    return app


def upload_origin(settings: Settings) -> str | None:
    """Where the page sends slides when they go straight to Cloud Storage (its CSP must allow it)."""
    if not (settings.slide_store or "").startswith("gs://"):
        return None
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")  # the Cloud Storage client's own variable
    return emulator.rstrip("/") if emulator else "https://storage.googleapis.com"
