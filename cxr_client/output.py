"""Result rows written as they arrive (CSV or JSON lines), so an interrupted run loses
nothing, and read back for --resume."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import IO

from cxr_client.results import REFUSED_CODE, ItemResult

COLUMNS = ("path", "label", "p_pneumonia", "p_normal", "pneumonia_type", "p_bacterial", "p_viral", "threshold",
           "model_version", "request_id", "warning", "code", "error")


def row(item: ItemResult) -> dict[str, str | float]:
    p = item.prediction
    return {
        "path": str(item.path),
        "label": p.label if p else "",
        "p_pneumonia": p.p_pneumonia if p else "",
        "p_normal": p.p_normal if p else "",
        "pneumonia_type": (p.pneumonia_type or "") if p else "",
        "p_bacterial": 1.0 - p.p_viral if p and p.p_viral is not None else "",
        "p_viral": p.p_viral if p and p.p_viral is not None else "",
        "threshold": p.threshold if p else "",
        "model_version": p.model_version if p else "",
        "request_id": p.request_id if p else "",
        "warning": (p.warning or "") if p else "",
        "code": item.code or "",
        "error": item.error or "",
    }


class ResultWriter:
    """CSV unless the output file ends in .jsonl/.ndjson/.json; stdout when no file is given."""

    def __init__(self, out: Path | None):
        self.jsonl = out is not None and out.suffix.lower() in (".jsonl", ".ndjson", ".json")
        appending = out is not None and out.exists() and out.stat().st_size > 0
        self._handle: IO[str] = open(out, "a", newline="", encoding="utf-8") if out else sys.stdout
        self._csv = None if self.jsonl else csv.DictWriter(self._handle, COLUMNS)
        if self._csv and not appending:
            self._csv.writeheader()

    def write(self, item: ItemResult) -> None:
        values = row(item)
        if self._csv:
            self._csv.writerow(values)
        else:
            self._handle.write(json.dumps(values) + "\n")
        self._handle.flush()  # on disk now: an interruption loses at most the rows in flight

    def close(self) -> None:
        if self._handle is not sys.stdout:
            self._handle.close()


def scored_paths(out: Path) -> set[str]:
    """Paths already done in an earlier run's output file: scored, or refused as not a chest
    X-ray (a refusal is the answer, not a failure to try again)."""
    if not out.exists():
        return set()
    with open(out, newline="", encoding="utf-8") as handle:
        if out.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            rows = [json.loads(line) for line in handle if line.strip().endswith("}")]
        else:
            rows = list(csv.DictReader(handle))
    return {r["path"] for r in rows
            if (r.get("label") and not r.get("error")) or r.get("code") == REFUSED_CODE}
