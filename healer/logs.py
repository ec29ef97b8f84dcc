"""Logging with the request id on every line. Image bytes are never logged, anywhere."""

import json
import logging
import os
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="-")

_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args, **kwargs) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id.get()
    return record


class JsonFormatter(logging.Formatter):
    """One JSON object per line, in the fields Cloud Logging reads (severity, message)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "time": self.formatTime(record),
        }
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def setup_logging(level: str, log_format: str = "text") -> None:
    # Every record, from any library, carries the id of the request being served.
    logging.setLogRecordFactory(_record_with_request_id)
    if log_format == "auto":
        log_format = "json" if os.environ.get("K_SERVICE") else "text"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    for name in ("healer", "uvicorn"):  # uvicorn's start-up and error lines, in the same format
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
