"""Processing jobs: wait until a study is quiet, score each pending image, build the SR and
the SC and keep them on disk, send them, record the outcome. A failed attempt is retried after an exponential
backoff with jitter, and dead-lettered after --max-attempts."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pydicom

from cxr_client.errors import ServiceError
from gateway import logs, metrics, source, storage
from gateway.config import GatewayConfig
from gateway.jobs import PENDING, PROCESSING, REFUSED, WRITTEN, Job, JobTable
from gateway.results_sc import build_sc
from gateway.results_sr import build_sr
from gateway.scoring import Refused, Scorer
from gateway.sender import Sender, SendError, part10

IDLE_POLL_S = 0.25  # how often an idle worker looks for due jobs (the table is shared with `retry`)


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential, with 'equal jitter': half fixed, half random, so that jobs failed together
    (the service down for a whole study) do not all come back at the same instant."""
    delay = min(max_s, base_s * 2.0 ** (attempt - 1))
    return float(delay / 2 + random.uniform(0, delay / 2))


class Worker:
    def __init__(self, config: GatewayConfig, jobs: JobTable, scorer: Scorer, sender: Sender):
        self.config, self.jobs, self.scorer, self.sender = config, jobs, scorer, sender
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.update_queue_depth()
            job = self.jobs.claim(self.config.quiet_s)
            if job is None:
                self.stopping.wait(IDLE_POLL_S)
                continue
            self.process(job)

    def update_queue_depth(self) -> None:
        counts = self.jobs.counts()
        metrics.QUEUE.set(sum(counts.get(state, 0) for state in (*PENDING, PROCESSING)))

    def process(self, job: Job) -> None:
        name = logs.job_id(job.sop_instance_uid)
        stage = "read"
        scored: dict[str, object] = {}  # what the log line says of a score made in this attempt
        results: list[pydicom.Dataset]
        try:
            if job.results:  # scored in an earlier attempt: only the sending is left
                kept = job.results.split()
                results = [pydicom.dcmread(path) for path in kept]
            else:
                dicom = Path(job.path or "").read_bytes()
                stage = "score"
                score = self.scorer.score(dicom)
                metrics.SCORED.inc()
                scored = {"label": score.prediction.label, "p_pneumonia": round(score.prediction.p_pneumonia, 4),
                          "model_version": score.prediction.model_version}
                logs.event("scored", job=name, **scored)
                stage = "build"
                header = source.header(dicom)
                results = [build_sr(header, score), build_sc(header, score)]
                kept = self.keep(results)
                self.jobs.scored(job.sop_instance_uid, kept)
            stage = "send"
            self.sender.send(job.study_uid, results)
        except Refused as refused:
            metrics.REFUSED.inc()
            self.jobs.finish(job.sop_instance_uid, REFUSED, detail=f"{refused.code}: {refused}")
            storage.remove(job.path)
            logs.event("refused", job=name, code=refused.code)
            return
        except Exception as exc:  # any failure is this job's, retried then dead-lettered; never the worker's end
            self.failed(job, stage, exc)
            return
        outputs = " ".join(str(result.SOPInstanceUID) for result in results)
        self.jobs.finish(job.sop_instance_uid, WRITTEN, outputs=outputs)
        for path in [job.path, *kept]:
            storage.remove(path)
        elapsed = time.time() - job.received_at
        metrics.WRITTEN.inc()
        metrics.RECEIPT_TO_WRITTEN.observe(elapsed)
        logs.event("written", job=name, **scored, seconds_since_receipt=round(elapsed, 2), attempt=job.attempts,
                   scored_earlier=not scored)

    def keep(self, results: Sequence[pydicom.Dataset]) -> list[str]:
        """The result objects on disk, durably, so that a failed send is retried without scoring again."""
        paths = []
        for result in results:
            path = storage.result_path(self.config.state, str(result.SOPInstanceUID))
            storage.write_durably(path, part10(result))
            paths.append(str(path))
        return paths

    def failed(self, job: Job, stage: str, exc: Exception) -> None:
        # the message of a service or send error is ours (codes, statuses); others only by type
        detail = f"{stage}: {exc}" if isinstance(exc, (ServiceError, SendError)) else f"{stage}: {type(exc).__name__}"
        metrics.FAILED.labels(stage).inc()
        if job.attempts >= self.config.max_attempts:
            self.jobs.fail(job.sop_instance_uid, detail, retry_at=None)
            metrics.DEAD.inc()
            logs.warning("dead_lettered", job=logs.job_id(job.sop_instance_uid), stage=stage, attempts=job.attempts,
                         detail=detail)
            return
        delay = backoff_s(job.attempts, self.config.retry_base_s, self.config.retry_max_s)
        self.jobs.fail(job.sop_instance_uid, detail, retry_at=time.time() + delay)
        logs.warning("attempt_failed", job=logs.job_id(job.sop_instance_uid), stage=stage, attempt=job.attempts,
                     retry_in_s=round(delay, 2), detail=detail)

