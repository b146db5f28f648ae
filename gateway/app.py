"""The running gateway: the job table, the C-STORE listener, the workers and the metrics
endpoint, started together and stopped together."""

from __future__ import annotations

import threading

from gateway import logs, metrics, storage
from gateway.config import GatewayConfig
from gateway.jobs import JobTable, state_file
from gateway.receiver import Receiver
from gateway.scoring import Scorer
from gateway.sender import sender_for
from gateway.worker import Worker


class Gateway:
    def __init__(self, config: GatewayConfig):
        self.config = config
        config.state.mkdir(parents=True, exist_ok=True)
        self.jobs = JobTable(state_file(config.state))
        self.scorer = Scorer(config.service, api_key=config.api_key, attempts=config.client_attempts)
        self.sender = sender_for(config.dicomweb, config.store_to, config.ae_title)
        self.receiver = Receiver(config, self.jobs)
        self.workers = [Worker(config, self.jobs, self.scorer, self.sender) for _ in range(config.workers)]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        recovered = self.jobs.recover()
        orphans = storage.remove_orphans(self.config.state, self.jobs.paths())
        if self.config.metrics is not None:
            metrics.serve(*self.config.metrics)
        self.receiver.start()
        for number, worker in enumerate(self.workers):
            thread = threading.Thread(target=worker.run, name=f"gateway-worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        host, port = self.config.listen
        logs.event("started", listen=f"{host}:{port}", ae_title=self.config.ae_title, recovered_jobs=recovered,
                   orphan_files_removed=orphans, sends_by="C-STORE" if self.config.store_to else "STOW-RS",
                   counts=self.jobs.counts())

    def stop(self) -> None:
        """Stop taking studies, let the workers finish the job in hand, close."""
        self.receiver.stop()
        for worker in self.workers:
            worker.stopping.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self.scorer.close()
        self.sender.close()
        self.jobs.close()
        logs.event("stopped")
