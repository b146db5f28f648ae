"""multipart/form-data uploads read into memory as they stream in, never onto disk.

Starlette's form parser keeps each file part in a SpooledTemporaryFile that moves to /tmp past
1 MB: a DICOM with its PatientID would sit on disk while in flight, outside the container's
memory limit (60 held uploads: +2.8 GB of /tmp). Here python-multipart's streaming parser feeds
the file parts of one field into bytes in memory; the body's size is already bounded
(CXR_MAX_UPLOAD_MB, service/http/middleware.py) and so is the sum over a worker's uploads
(CXR_MAX_INFLIGHT_UPLOAD_MB, service/http/upload_limits.py). Other fields are read and dropped.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.http.errors import ApiError

MAX_PARTS = 100  # parts of any kind in one request
MAX_PART_HEADER_BYTES = 8 * 1024


class _Collector:
    """The parser's callbacks: the bytes of each file part named `field`, in order."""

    def __init__(self, field: str, max_files: int):
        self.field, self.max_files = field.encode(), max_files
        self.files: list[bytes] = []
        self.parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._current: bytearray | None = None  # the file part being read, when it is one of ours

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError("bad_request", f"the multipart body has more than {MAX_PARTS} parts")
        self._headers, self._current = {}, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_name) + len(self._header_value) > MAX_PART_HEADER_BYTES:
            raise ApiError("bad_request", "a multipart part's headers are too long")

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == self.field and b"filename" in options:  # a file, as Starlette tells them
            if len(self.files) >= self.max_files:
                raise ApiError("bad_request", f"too many files in field '{self.field.decode()}'; "
                               f"at most {self.max_files} are taken")
            self._current = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current += data[start:end]

    def on_part_end(self) -> None:
        if self._current is not None:
            self.files.append(bytes(self._current))
            self._current = None


def _boundary(request: Request) -> bytes:
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise ApiError("bad_request", "multipart request without a valid boundary")
    return boundary


async def read_files(request: Request, field: str, max_files: int) -> list[bytes]:
    """The files of multipart `field`, in order, as bytes. ApiError bad_request for a malformed
    body, more than `max_files` files or more than MAX_PARTS parts."""
    collector = _Collector(field, max_files)
    parser = MultipartParser(_boundary(request), {
        "on_part_begin": collector.on_part_begin, "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end, "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value, "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise ApiError("bad_request", "malformed multipart body") from None
    return collector.files
