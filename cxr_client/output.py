"""Result rows written as they arrive (CSV or JSON lines), so an interrupted run loses
nothing, and read back for --resume."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import IO

from cxr_client.results import ItemResult

COLUMNS = ("path", "label", "p_pneumonia", "p_normal", "threshold", "model_version", "request_id", "error")


def row(item: ItemResult) -> dict[str, str | float]:
    p = item.prediction
    return {
        "path": str(item.path),
        "label": p.label if p else "",
        "p_pneumonia": p.p_pneumonia if p else "",
        "p_normal": p.p_normal if p else "",
        "threshold": p.threshold if p else "",
        "model_version": p.model_version if p else "",
        "request_id": p.request_id if p else "",
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
    """Paths already scored (rows without an error) in an earlier run's output file."""
    if not out.exists():
        return set()
    with open(out, newline="", encoding="utf-8") as handle:
        if out.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            rows = [json.loads(line) for line in handle if line.strip().endswith("}")]
        else:
            rows = list(csv.DictReader(handle))
    return {r["path"] for r in rows if r.get("label") and not r.get("error")}
