"""Logging with the request id on every line. Image bytes are never logged, anywhere."""

import hashlib
import json
import logging
import os
import re
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="-")

_base_factory = logging.getLogRecordFactory()
_JOB_ID = re.compile(r"\b[0-9a-f]{32}\b")


def job_tag(job_id: str) -> str:
    """What logs show of a slide job id: the id is the only key to a patient's results, so logs
    carry a short hash of it instead (enough to follow one job through the lines)."""
    return "job#" + hashlib.sha256(job_id.encode()).hexdigest()[:10]


def without_job_ids(path: str) -> str:
    """A request path as logged: /slides/<id>/tiles becomes /slides/job#1a2b…/tiles."""
    return _JOB_ID.sub(lambda match: job_tag(match.group()), path)


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
