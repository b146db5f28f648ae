"""The C-STORE SCP: the PACS routes studies here. Each instance is decided on its attributes,
and what is to be scored is on disk with its job row committed before the C-STORE is
acknowledged; a failure to persist answers 0xA700 (out of resources), so the PACS knows."""

from __future__ import annotations

import sqlite3
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from gateway import logs, metrics, storage
from gateway.config import GatewayConfig
from gateway.jobs import RECEIVED, SKIPPED, JobTable
from gateway.select import passed_over

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


class Receiver:
    def __init__(self, config: GatewayConfig, jobs: JobTable):
        self.config, self.jobs = config, jobs
        self.ae = AE(ae_title=config.ae_title)
        for context in AllStoragePresentationContexts:  # any storage class, any transfer syntax
            if context.abstract_syntax is not None:
                self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        self.ae.maximum_associations = config.max_associations
        if config.allow_aets:
            self.ae.require_calling_aet = sorted(config.allow_aets)
        self.server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        self.server = self.ae.start_server(
            self.config.listen, block=False, evt_handlers=[(evt.EVT_C_STORE, self.on_store)])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()

    def on_store(self, event: Any) -> int:
        """Persist, then acknowledge. Runs in the association's thread."""
        try:
            dataset = event.dataset
            sop_uid, study_uid = str(dataset.SOPInstanceUID), str(dataset.StudyInstanceUID)
        except Exception as exc:  # pydicom raises many kinds for a malformed dataset
            logs.warning("store_unreadable", error_type=type(exc).__name__)
            return CANNOT_UNDERSTAND
        metrics.RECEIVED.inc()
        calling = event.assoc.requestor.ae_title
        if self.jobs.get(sop_uid) is not None:
            logs.event("replayed", job=logs.job_id(sop_uid), calling_aet=calling)
            return SUCCESS  # seen before: its job stands (exactly once)
        refusal = passed_over(dataset)
        try:
            if refusal is not None:
                if refusal.attribute == "Manufacturer":  # our own SR/SC, routed back: not even a row
                    metrics.SKIPPED.labels(refusal.attribute).inc()
                    logs.event("own_output_ignored", calling_aet=calling)
                    return SUCCESS
                if self.jobs.add(sop_uid, study_uid, SKIPPED, detail=refusal.reason):
                    metrics.SKIPPED.labels(refusal.attribute).inc()
                    logs.event("skipped", job=logs.job_id(sop_uid), attribute=refusal.attribute, calling_aet=calling)
                return SUCCESS
            path = storage.instance_path(self.config.state, sop_uid)
            storage.write_durably(path, event.encoded_dataset())
            if self.jobs.add(sop_uid, study_uid, RECEIVED, path=str(path)):
                metrics.QUEUE.inc()
                logs.event("received", job=logs.job_id(sop_uid), calling_aet=calling)
        except (OSError, sqlite3.Error) as exc:
            logs.warning("store_failed", job=logs.job_id(sop_uid), error_type=type(exc).__name__)
            return OUT_OF_RESOURCES
        return SUCCESS
