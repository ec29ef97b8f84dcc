"""Logging with the request id on every line. Image bytes are never logged, anywhere."""

import logging
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="-")

_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args, **kwargs) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id.get()
    return record


def setup_logging(level: str) -> None:
    # Every record, from any library, carries the id of the request being served.
    logging.setLogRecordFactory(_record_with_request_id)
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    healer = logging.getLogger("healer")
    healer.handlers[:] = [handler]
    healer.setLevel(level.upper())
    healer.propagate = False
