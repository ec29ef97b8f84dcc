"""Healer's FastAPI app: wiring only. The work lives in the `healer` package.

    uvicorn main:app            serves MODEL_DIR (see healer/settings.py for every setting)
    python main.py              the same, on $PORT, as the container runs it
"""

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from healer import routes
from healer.engine import Engine
from healer.handlers import install_error_handlers
from healer.logs import setup_logging
from healer.metrics import MODEL_LOAD
from healer.middleware import BodyLimitMiddleware, RequestContextMiddleware
from healer.prompts import DEMO_WARNING, DISCLAIMER
from healer.service import ScreeningService
from healer.settings import Settings
from healer.slides import routes as slide_routes
from healer.slides.jobs import SlideJobs

FRONTEND_DIST = Path(__file__).parent / "frontend" / "dist"
MULTIPART_SLACK = 64 * 1024  # the form's boundaries and the question ride along with the image

log = logging.getLogger("healer")


def load_engine(settings: Settings) -> Engine:
    from healer.medgemma import MedGemmaEngine  # torch and transformers load only when serving

    engine = MedGemmaEngine.load(settings)
    if engine.info.demo:
        for line in ("=" * 72, DEMO_WARNING, "=" * 72):
            log.warning(line)
    engine.warmup()
    return engine


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    setup_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        try:
            service = ScreeningService(engine or load_engine(settings), settings)
        except Exception as error:
            log.critical("cannot start: %s", error)
            raise
        MODEL_LOAD.set(time.perf_counter() - started)
        app.state.service = service
        app.state.slide_jobs = SlideJobs(service.batcher, settings, service.model_card)
        await app.state.slide_jobs.start()
        log.info("ready: %s on %s", service.model_card.id, service.model_card.device)
        yield
        await app.state.slide_jobs.stop()
        await service.close()

    app = FastAPI(title="Healer", description=DISCLAIMER, version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    # Outermost last: request id around everything, CORS headers on every answer, 413s included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes + MULTIPART_SLACK,
                       path_limits={"/slides": settings.max_slide_bytes + MULTIPART_SLACK})
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"], expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(slide_routes.router)
    if FRONTEND_DIST.is_dir():
        app.mount("/app", StaticFiles(directory=FRONTEND_DIST, html=True), name="app")
    return app


app = create_app()

if __name__ == "__main__":
    import signal
    import sys

    import uvicorn

    from healer.model_dir import ModelDirError, check_model_dir

    settings = Settings()
    try:  # the common mistake, caught before uvicorn starts: one line, no traceback
        check_model_dir(settings.model_dir)
    except ModelDirError as error:
        log.critical("cannot start: %s", error)
        sys.exit(2)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal once its own
    # handler is gone; this no-op receives it, so a graceful shutdown exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_config=None,
                timeout_graceful_shutdown=settings.shutdown_grace_s)
