"""Sending the results to the PACS: STOW-RS as proper Part 10 files (preamble and file meta;
dicomweb-client's store_instances sends bare datasets that Orthanc stores but later serves
unreadable), or C-STORE. An instance the PACS already holds counts as sent: the UIDs are
derived, so it is this very object from an earlier attempt."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
import pydicom
from pynetdicom import AE

from gateway.config import Peer

FAILED_SOP_SEQUENCE = "00081198"
FAILURE_REASON = "00081197"
ALREADY_STORED = {0x0111}  # duplicate SOP instance: some PACS report it as a failure
C_STORE_OK = {0x0000, 0xB000, 0xB006, 0xB007, 0x0111}  # success, warnings (coerced, elements discarded), duplicate


class SendError(Exception):
    """The PACS did not take the results; worth another attempt later."""


class Sender(Protocol):
    def send(self, study_uid: str, datasets: Sequence[pydicom.Dataset]) -> None: ...

    def close(self) -> None: ...


def part10(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)  # 128-byte preamble, DICM, file meta
    return buffer.getvalue()


def multipart(parts: Sequence[bytes]) -> tuple[bytes, str]:
    """multipart/related body of application/dicom parts, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
                    for part in parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


class StowSender:
    def __init__(self, dicomweb_url: str, timeout_s: float = 60.0):
        # identity: Orthanc gzips answers otherwise, several times slower for large objects
        self._http = httpx.Client(base_url=dicomweb_url, timeout=timeout_s,
                                  headers={"Accept": "application/dicom+json", "Accept-Encoding": "identity"})

    def close(self) -> None:
        self._http.close()

    def send(self, study_uid: str, datasets: Sequence[pydicom.Dataset]) -> None:
        body, content_type = multipart([part10(dataset) for dataset in datasets])
        try:
            response = self._http.post(f"/studies/{study_uid}", content=body, headers={"Content-Type": content_type})
        except httpx.HTTPError as exc:
            raise SendError(f"STOW-RS: {type(exc).__name__}") from None
        if response.status_code not in (200, 202):
            raise SendError(f"STOW-RS answered HTTP {response.status_code}")
        failed = [reason for reason in failure_reasons(response) if reason not in ALREADY_STORED]
        if failed:
            raise SendError(f"STOW-RS refused {len(failed)} instance(s): reasons {sorted(set(failed))}")


def failure_reasons(response: httpx.Response) -> list[int]:
    """The FailureReason of every instance in the STOW-RS answer's FailedSOPSequence."""
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        return []
    items = (answer.get(FAILED_SOP_SEQUENCE) or {}).get("Value") or []
    return [int((item.get(FAILURE_REASON) or {}).get("Value", [0xC000])[0]) for item in items]


class CStoreSender:
    def __init__(self, ae_title: str, peer: Peer, timeout_s: float = 60.0):
        self.peer = peer
        self._lock = threading.Lock()  # one AE's requested contexts: one association at a time
        self._ae = AE(ae_title=ae_title)
        self._ae.acse_timeout = self._ae.dimse_timeout = self._ae.network_timeout = timeout_s

    def close(self) -> None:
        pass

    def send(self, study_uid: str, datasets: Sequence[pydicom.Dataset]) -> None:
        with self._lock:
            self._send(datasets)

    def _send(self, datasets: Sequence[pydicom.Dataset]) -> None:
        for dataset in datasets:
            self._ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
        assoc = self._ae.associate(self.peer.host, self.peer.port, ae_title=self.peer.ae_title)
        self._ae.requested_contexts = []
        if not assoc.is_established:
            raise SendError(f"C-STORE: no association with {self.peer.ae_title}")
        try:
            for dataset in datasets:
                status = assoc.send_c_store(dataset)
                code = int(status.Status) if "Status" in status else None
                if code not in C_STORE_OK:
                    raise SendError(f"C-STORE answered status {'none' if code is None else hex(code)}")
        finally:
            assoc.release()


def sender_for(dicomweb: str | None, store_to: Peer | None, ae_title: str) -> Sender:
    if store_to is not None:
        return CStoreSender(ae_title, store_to)
    assert dicomweb is not None  # the config requires one of them
    return StowSender(dicomweb)
