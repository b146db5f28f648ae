"""A real Orthanc (Debian's `orthanc` and `orthanc-dicomweb`) for the gateway tests: started
with a JSON configuration in a temporary directory, reached through its REST API and DICOMweb."""

from __future__ import annotations

import email.parser
import email.policy
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def unavailable() -> str | None:
    if shutil.which("Orthanc") is None:
        return "needs Debian's orthanc (apt-get install orthanc orthanc-dicomweb)"
    if not DICOMWEB_PLUGIN.exists():
        return "needs Debian's orthanc-dicomweb"
    if shutil.which("dciodvfy") is None:
        return "needs dciodvfy (apt-get install dicom3tools)"
    return None


@dataclass
class Orthanc:
    url: str
    dicom_port: int
    ae_title: str
    http: httpx.Client

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, dicom: bytes) -> dict[str, Any]:
        response = self.http.post("/instances", content=dicom)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def add_modality(self, name: str, ae_title: str, port: int) -> None:
        self.http.put(f"/modalities/{name}", json={"AET": ae_title, "Host": "127.0.0.1", "Port": port}).raise_for_status()

    def send_study(self, modality: str, orthanc_study_id: str, timeout_s: float = 120) -> None:
        """Route a study to a modality by C-STORE, as a hospital routes to an AI node."""
        self.http.post(f"/modalities/{modality}/store", json={"Resources": [orthanc_study_id], "Synchronous": True},
                       timeout=timeout_s).raise_for_status()

    def instances(self, orthanc_study_id: str) -> list[dict[str, Any]]:
        """Every instance of the study with its tags (MainDicomTags of instance and series)."""
        response = self.http.get(f"/studies/{orthanc_study_id}/instances", params={"expand": "true"})
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    def series_of(self, orthanc_study_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/studies/{orthanc_study_id}/series", params={"expand": "true"})
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    def wado_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """One instance by WADO-RS, as Part 10 bytes."""
        response = self.http.get(
            f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
            headers={"Accept": 'multipart/related; type="application/dicom"', "Accept-Encoding": "identity"})
        response.raise_for_status()
        parts = multipart_parts(response.headers["Content-Type"], response.content)
        assert len(parts) == 1, f"WADO-RS returned {len(parts)} parts"
        return parts[0]


def multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    return [part.get_payload(decode=True) for part in message.iter_parts()]  # type: ignore[attr-defined]


def config(directory: Path, http_port: int, dicom_port: int, ae_title: str) -> dict[str, Any]:
    return {
        "Name": "gateway-test-pacs",
        "StorageDirectory": str(directory / "db"),
        "IndexDirectory": str(directory / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ae_title,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpCompressionEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {},
        "StableAge": 2,
    }


@contextmanager
def running_orthanc(directory: Path, ae_title: str = "ORTHANC", **settings: Any) -> Iterator[Orthanc]:
    """Orthanc on free loopback ports (run it inside tests.gateway.netns.private_network);
    `settings` override or add configuration entries."""
    directory.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    (directory / "orthanc.json").write_text(json.dumps({**config(directory, http_port, dicom_port, ae_title), **settings}))
    with open(directory / "orthanc.log", "w") as log:
        process = subprocess.Popen(["Orthanc", str(directory / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    http = httpx.Client(base_url=url, timeout=30, headers={"Accept-Encoding": "identity"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http.get("/system").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start: {(directory / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield Orthanc(url, dicom_port, ae_title, http)
    finally:
        http.close()
        process.terminate()
        process.wait(timeout=30)
