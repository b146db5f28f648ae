"""The job table: one row per received instance, in SQLite under --state, so that what was
acknowledged survives a crash and what was written is never written twice.

States: received -> processing -> scored -> written, or refused, or failed (retried at next_at)
-> dead. Instances the rules pass over are recorded as skipped at once. A row's key is the source
SOP Instance UID: a replayed instance finds its row and adds nothing. A scored job's result
objects are on disk (`results`) until written: a failed send, a crash or a dead letter retried
sends them again without asking the service a second time.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RECEIVED, PROCESSING, SCORED, WRITTEN, REFUSED, SKIPPED, FAILED, DEAD = (
    "received", "processing", "scored", "written", "refused", "skipped", "failed", "dead")
TERMINAL = (WRITTEN, REFUSED, SKIPPED)
PENDING = (RECEIVED, FAILED)  # what the worker picks up once due

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    path TEXT,                 -- the received Part 10 file while the job needs it
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    finished_at REAL,
    detail TEXT,               -- why skipped/refused/failed: attribute names and codes, no patient data
    outputs TEXT,              -- the SOP Instance UIDs written, space-separated
    results TEXT               -- the result objects' files once scored, until written, space-separated
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_at);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_uid, received_at);
"""


def state_file(state: Path) -> Path:
    """The job table's file in the gateway's state folder."""
    return state / "jobs.sqlite"


@dataclass(frozen=True)
class Job:
    sop_instance_uid: str
    study_uid: str
    path: str | None
    state: str
    attempts: int
    next_at: float
    received_at: float
    finished_at: float | None
    detail: str | None
    outputs: str | None
    results: str | None = None


class JobTable:
    """Thread-safe access to jobs.sqlite (one connection, a lock; the gateway is one process,
    and the `jobs`/`retry` commands open their own connection)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: explicit BEGIN IMMEDIATE below, so a claim is atomic across processes
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # committed means on disk: the C-STORE ack depends on it
        self._db.executescript(SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "results" not in columns:  # a state folder from before the scored state
            self._db.execute("ALTER TABLE jobs ADD COLUMN results TEXT")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, sop_instance_uid: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE sop_instance_uid = ?", (sop_instance_uid,)).fetchone()
        return Job(**row) if row else None

    def add(self, sop_instance_uid: str, study_uid: str, state: str, path: str | None = None,
            detail: str | None = None) -> bool:
        """Record a received instance; False when its row already exists (a replay)."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (sop_instance_uid, study_uid, path, state, received_at, finished_at, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sop_instance_uid, study_uid, path, state, now, None if state in PENDING else now, detail))
            return cursor.rowcount == 1

    def claim(self, quiet_s: float, now: float | None = None) -> Job | None:
        """The oldest due job of a study quiet for `quiet_s` seconds, marked processing."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute(
                "SELECT j.* FROM jobs j WHERE j.state IN (?, ?) AND j.next_at <= ?"
                " AND (SELECT MAX(received_at) FROM jobs s WHERE s.study_uid = j.study_uid) <= ?"
                " ORDER BY j.received_at LIMIT 1", (*PENDING, now, now - quiet_s)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = ?, attempts = attempts + 1 WHERE sop_instance_uid = ?",
                       (PROCESSING, row["sop_instance_uid"]))
        return Job(**{**dict(row), "state": PROCESSING, "attempts": row["attempts"] + 1})

    def scored(self, sop_instance_uid: str, results: list[str]) -> None:
        """The job's result objects are on disk (their files): from now on it is only to be sent."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state = ?, results = ? WHERE sop_instance_uid = ?",
                       (SCORED, " ".join(results), sop_instance_uid))

    def finish(self, sop_instance_uid: str, state: str, detail: str | None = None, outputs: str | None = None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state = ?, detail = ?, outputs = ?, finished_at = ?, path = NULL,"
                       " results = NULL WHERE sop_instance_uid = ?",
                       (state, detail, outputs, time.time(), sop_instance_uid))

    def fail(self, sop_instance_uid: str, detail: str, retry_at: float | None) -> None:
        """A failed attempt: retried at `retry_at`, or dead-lettered when None."""
        state = FAILED if retry_at is not None else DEAD
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state = ?, detail = ?, next_at = ? WHERE sop_instance_uid = ?",
                       (state, detail, retry_at or 0, sop_instance_uid))

    def recover(self) -> int:
        """At start-up: jobs a crash left processing or scored are pending again (their output
        UIDs are fixed, so redoing them writes nothing twice; a scored one keeps its results)."""
        with self._transaction() as db:
            return db.execute("UPDATE jobs SET state = ? WHERE state IN (?, ?)",
                              (RECEIVED, PROCESSING, SCORED)).rowcount

    def retry(self, sop_instance_uids: list[str] | None = None) -> int:
        """Dead-lettered jobs (all, or those named) pending again with fresh attempts."""
        with self._transaction() as db:
            if sop_instance_uids:
                marks = ",".join("?" * len(sop_instance_uids))
                query = f"UPDATE jobs SET state = ?, attempts = 0, next_at = 0 WHERE state = ? AND sop_instance_uid IN ({marks})"
                return db.execute(query, (RECEIVED, DEAD, *sop_instance_uids)).rowcount
            return db.execute("UPDATE jobs SET state = ?, attempts = 0, next_at = 0 WHERE state = ?",
                              (RECEIVED, DEAD)).rowcount

    def list(self, states: tuple[str, ...] = ()) -> list[Job]:
        with self._lock:
            if states:
                marks = ",".join("?" * len(states))
                rows = self._db.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY received_at", states)
            else:
                rows = self._db.execute("SELECT * FROM jobs ORDER BY received_at")
            return [Job(**row) for row in rows.fetchall()]

    def paths(self) -> set[str]:
        """The files pending and dead jobs still need: received instances and result objects."""
        with self._lock:
            rows = self._db.execute("SELECT path, results FROM jobs WHERE path IS NOT NULL OR results IS NOT NULL")
            return {name for path, results in rows for name in [path, *(results or "").split()] if name}

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
