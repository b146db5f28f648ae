"""A real service for the client: in-process uvicorn on 127.0.0.1, optionally behind a front
that answers 503/429 a few times or slows requests down, and a folder of mixed real inputs."""

from __future__ import annotations

import asyncio
import io
import json
import shutil

import pytest
from PIL import Image

from service.config import Settings
from service.http.app import create_app
from tests.conftest import dicom_sample
from tests.servers import running_app


class Front:
    """ASGI wrapper: the first `fail_first` POST /predict get `status` with Retry-After, and
    each later one waits `delay_s` before the real service answers. Counts attempts."""

    def __init__(self, app, fail_first: int = 0, status: int = 503, retry_after: str | None = "1",
                 delay_s: float = 0.0):
        self.app, self.fail_first, self.status = app, fail_first, status
        self.retry_after, self.delay_s, self.attempts = retry_after, delay_s, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/predict":
            self.attempts += 1
            if self.attempts <= self.fail_first:
                # read the upload first, as the service does: a body left unread makes the server
                # close the connection, and a client that reuses it meanwhile gets a reset
                # that is an attempt this front never sees
                while (await receive()).get("more_body", False):
                    pass
                body = json.dumps({"error": {"code": "busy", "message": "try later"}}).encode()
                headers = [(b"content-type", b"application/json")]
                if self.retry_after is not None:
                    headers.append((b"retry-after", self.retry_after.encode()))
                await send({"type": "http.response.start", "status": self.status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await asyncio.sleep(self.delay_s)
        await self.app(scope, receive, send)


@pytest.fixture
def front_factory(bundled_model):
    """front_factory(**Front options, settings=dict) -> context manager yielding (url, front)."""
    from contextlib import contextmanager

    @contextmanager
    def make(settings: dict | None = None, **options):
        front = Front(create_app(Settings(model_path=bundled_model, **(settings or {}))), **options)
        with running_app(front) as url:
            yield url, front

    return make


@pytest.fixture(scope="module")
def service_url(bundled_model):
    with running_app(create_app(Settings(model_path=bundled_model))) as url:
        yield url


@pytest.fixture
def mixed_folder(tmp_path, val_images):
    """JPEG, PNG, DICOM with and without extension, a nested folder, a text file, a bad JPEG."""
    root = tmp_path / "export"
    (root / "nested").mkdir(parents=True)
    shutil.copy(val_images[0], root / "a_normal.jpeg")
    shutil.copy(val_images[-1], root / "nested" / "b_pneumonia.jpg")
    with Image.open(val_images[1]) as image:
        buffer = io.BytesIO()
        image.convert("L").save(buffer, "PNG")
    (root / "c_normal.png").write_bytes(buffer.getvalue())
    shutil.copy(dicom_sample("RG1_UNCR.dcm"), root / "d_study.dcm")
    shutil.copy(dicom_sample("RG1_J2KR.dcm"), root / "nested" / "1.2.840.99")  # no extension
    shutil.copy(dicom_sample("693_UNCR.dcm"), root / "f_ct.dcm")  # a CT: refused, not failed
    (root / "notes.txt").write_text("not an image")
    (root / "nested" / "readme").write_text("no extension, not DICOM")
    (root / "e_broken.jpeg").write_bytes(val_images[2].read_bytes()[:4000])
    return root


SCORABLE = {"a_normal.jpeg", "b_pneumonia.jpg", "c_normal.png", "d_study.dcm", "1.2.840.99"}
BROKEN = "e_broken.jpeg"
REFUSED = "f_ct.dcm"
SKIPPED = {"notes.txt", "readme"}
