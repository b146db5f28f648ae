"""JSON-lines logging, by python-json-logger: time, level, logger and message, then every
field a call passes in `extra` (request id, route, status, latency...). Records never carry
image data, file names or DICOM tags (they can hold patient data), so nothing passes them."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

# uvicorn passes its message again with terminal colours; the plain one is enough
DROPPED_FIELDS = ("color_message", "taskName")


class JsonFormatter(_LibraryJsonFormatter):
    def __init__(self) -> None:
        super().__init__("{asctime}{levelname}{name}{message}", style="{",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger",
                                        "exc_info": "exception"},
                         reserved_attrs=[*RESERVED_ATTRS, *DROPPED_FIELDS])

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pydicom logs what it warns about, quoting element values (patient data)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # uvicorn's access log prints raw paths and client addresses; ours replaces it
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
