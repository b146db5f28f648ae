"""JSON log lines without patient data: jobs are named by a short hash of the SOP Instance UID,
never by names, IDs or dates from the dataset."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import warnings
from typing import Any

log = logging.getLogger("gateway")


def job_id(sop_instance_uid: str) -> str:
    """A stable, non-identifying name for a job in logs (`cxr-gateway jobs` shows it too)."""
    return hashlib.sha256(sop_instance_uid.encode()).hexdigest()[:12]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = record.exc_info[0].__name__  # not the text: it can quote element values
        return json.dumps(line)


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    # pydicom warns about non-conformant datasets quoting element values (patient data), on
    # stderr, outside these JSON lines: what matters surfaces as a job's failure instead
    warnings.simplefilter("ignore")
    # pynetdicom's INFO lines print dataset elements (patient data): only its warnings, as JSON
    for name, name_level in (("gateway", level), ("pynetdicom", max(level, logging.WARNING))):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(name_level)
        logger.propagate = False


def event(name: str, **fields: Any) -> None:
    log.info(name, extra={"fields": fields})


def warning(name: str, **fields: Any) -> None:
    log.warning(name, extra={"fields": fields})
