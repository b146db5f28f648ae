"""The job table on its own: the quiet period, one claim per job, retries, dead letters, recovery,
results kept once scored."""

from __future__ import annotations

import sqlite3
import time

from gateway.jobs import DEAD, FAILED, PROCESSING, RECEIVED, SCORED, SKIPPED, WRITTEN, JobTable
from gateway.worker import backoff_s


def test_a_job_waits_for_its_study_to_be_quiet_and_is_claimed_once(tmp_path):
    table = JobTable(tmp_path / "jobs.sqlite")
    assert table.add("1.1", "study", RECEIVED, path="a.dcm")
    assert not table.add("1.1", "study", RECEIVED, path="a.dcm")  # a replay adds nothing
    now = time.time()
    assert table.claim(quiet_s=5, now=now) is None  # the study is still arriving
    table.add("1.2", "study", SKIPPED, detail="lateral")  # any instance keeps the study open
    job = table.claim(quiet_s=5, now=time.time() + 6)
    assert job is not None and job.sop_instance_uid == "1.1" and job.state == PROCESSING and job.attempts == 1
    assert table.claim(quiet_s=5, now=time.time() + 6) is None  # claimed: nobody else gets it
    table.finish("1.1", WRITTEN, outputs="2.25.1 2.25.2")
    finished = table.get("1.1")
    assert finished is not None and finished.state == WRITTEN and finished.path is None


def test_failures_retry_when_due_then_dead_letter_and_retry_requeues(tmp_path):
    table = JobTable(tmp_path / "jobs.sqlite")
    table.add("1.1", "study", RECEIVED, path="a.dcm")
    later = time.time() + 100
    table.claim(quiet_s=0, now=later)
    table.fail("1.1", "score: HTTP 503", retry_at=later + 10)
    assert table.claim(quiet_s=0, now=later + 5) is None  # not yet due
    job = table.claim(quiet_s=0, now=later + 11)
    assert job is not None and job.attempts == 2
    table.fail("1.1", "score: HTTP 503", retry_at=None)
    assert [job.state for job in table.list((DEAD,))] == [DEAD]
    assert table.claim(quiet_s=0, now=later + 1000) is None  # dead stays dead
    assert table.retry() == 1
    again = table.claim(quiet_s=0, now=later + 1000)
    assert again is not None and again.attempts == 1 and table.counts() == {PROCESSING: 1}


def test_a_crash_leaves_processing_jobs_to_be_done_again(tmp_path):
    table = JobTable(tmp_path / "jobs.sqlite")
    table.add("1.1", "study", RECEIVED, path="a.dcm")
    table.claim(quiet_s=0, now=time.time() + 1)
    table.close()  # as if killed
    reopened = JobTable(tmp_path / "jobs.sqlite")
    assert reopened.recover() == 1 and reopened.counts() == {RECEIVED: 1}


def test_a_scored_job_keeps_its_results_through_a_failure_and_a_crash(tmp_path):
    table = JobTable(tmp_path / "jobs.sqlite")
    table.add("1.1", "study", RECEIVED, path="a.dcm")
    table.claim(quiet_s=0, now=time.time() + 1)
    table.scored("1.1", ["r/sr.dcm", "r/sc.dcm"])
    assert table.counts() == {SCORED: 1} and table.paths() == {"a.dcm", "r/sr.dcm", "r/sc.dcm"}
    table.fail("1.1", "send: STOW-RS answered HTTP 503", retry_at=time.time())
    job = table.claim(quiet_s=0, now=time.time() + 1)
    assert job is not None and job.state == PROCESSING and job.results == "r/sr.dcm r/sc.dcm"
    table.scored("1.1", ["r/sr.dcm", "r/sc.dcm"])
    assert table.recover() == 1  # a crash while sending: pending again, results kept
    assert table.get("1.1").results == "r/sr.dcm r/sc.dcm"
    table.finish("1.1", WRITTEN, outputs="2.25.1 2.25.2")
    assert table.get("1.1").results is None and table.paths() == set() and FAILED not in table.counts()


def test_a_job_table_from_before_the_scored_state_is_brought_up_to_date(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE jobs (sop_instance_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, path TEXT,"
                    " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0,"
                    " received_at REAL NOT NULL, finished_at REAL, detail TEXT, outputs TEXT)")
        old.execute("INSERT INTO jobs (sop_instance_uid, study_uid, path, state, received_at)"
                    " VALUES ('1.1', 'study', 'a.dcm', 'received', 0)")
    table = JobTable(path)
    job = table.claim(quiet_s=0)
    assert job is not None and job.results is None


def test_backoff_doubles_with_jitter_up_to_the_cap():
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 15.0)):
        delays = [backoff_s(attempt, 1.0, 15.0) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not all the same
