"""How long a small request waits behind the heaviest uploads the limits allow.

    python -m benchmarks.fairness [--seconds 30] [--heavy 32] [--workers 1]

`--heavy` clients loop the worst case of every format, at 6000 x 6000 with ?heatmap=true: a
baseline JPEG, a progressive JPEG (10 scans), a 16-bit PNG and a JPEG 2000 DICOM, all built
here from a real X-ray. Beside them one client sends small requests (the validation X-rays,
one after another, as a clinician's viewer would) and records each answer time. Prints the
small requests' median, p99 and max, what the heavy clients got, and the service's memory.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image
from pydicom.uid import JPEG2000Lossless

from benchmarks.hostile_inputs import progressive_jpeg
from benchmarks.loadgen import describe_times, median_p99_max_ms
from benchmarks.serve import Server, benchmark_parser, sample_memory

HOST = "127.0.0.1"
SIDE = 6000


def _request(path: str, body: bytes, media_type: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {media_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def heavy_bodies(xray: Path) -> list[tuple[bytes, str]]:
    """The worst case of each format at 6000 px."""
    from tests.dicoms import chest_dataset, to_bytes

    with Image.open(xray) as image:
        big = image.convert("L").resize((SIDE, SIDE))
    baseline, png = io.BytesIO(), io.BytesIO()
    big.save(baseline, "JPEG", quality=95)
    big.convert("I;16").save(png, "PNG", compress_level=1)
    small_path = Path("/tmp/cxr-fairness-xray.png")
    big.save(small_path)
    dataset = chest_dataset(small_path)  # 12-bit CR
    dataset.compress(JPEG2000Lossless)
    return [(baseline.getvalue(), "image/jpeg"), (progressive_jpeg(big.convert("RGB"), quality=90), "image/jpeg"),
            (png.getvalue(), "image/png"), (to_bytes(dataset), "application/dicom")]


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _client(port: int, requests: list[bytes], deadline: float, statuses: Counter,
                  seconds: list[float] | None) -> None:
    index = 0
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            return
        try:
            while time.monotonic() < deadline:
                started = time.monotonic()
                writer.write(requests[index % len(requests)])
                index += 1
                try:
                    status = await asyncio.wait_for(_answer(reader), 120)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    statuses["no answer"] += 1
                    break
                statuses[status] += 1
                if seconds is not None:
                    seconds.append(time.monotonic() - started)
                if status != 200:  # an early answer may leave the body unread: the server ends the connection
                    break
        finally:
            writer.close()


async def _run(port: int, heavy: list[bytes], small: list[bytes], clients: int, seconds: float,
               server: Server) -> tuple[Counter, Counter, list[float], float]:
    heavy_statuses, small_statuses, small_seconds, memory = Counter(), Counter(), [], []
    deadline = time.monotonic() + seconds
    tasks = [_client(port, heavy[i % len(heavy):] + heavy[: i % len(heavy)], deadline, heavy_statuses, None)
             for i in range(clients)]
    tasks.append(_client(port, small, deadline, small_statuses, small_seconds))
    tasks.append(sample_memory(server, memory, deadline, 1.0))
    await asyncio.gather(*tasks)
    return heavy_statuses, small_statuses, small_seconds, max(memory, default=0.0)


def run(model: Path, data: Path, seconds: float, clients: int, workers: int) -> dict[str, float]:
    xrays = sorted((data / "val").rglob("*.jpeg"))
    heavy = [_request("/predict?heatmap=true", body, media_type) for body, media_type in heavy_bodies(xrays[0])]
    small = [_request("/predict", path.read_bytes(), "image/jpeg") for path in xrays]
    server = Server("service", model, {"CXR_WORKERS": str(workers)}, settle_s=1.0)
    try:
        heavy_statuses, small_statuses, small_seconds, peak = asyncio.run(
            _run(server.port, heavy, small, clients, seconds, server))
    finally:
        server.stop()
    median, p99, most = median_p99_max_ms(small_seconds)
    result = {"median_ms": median, "p99_ms": p99, "max_ms": most, "small_requests": len(small_seconds),
              "peak_rss_mb": peak}
    print(f"{seconds:.0f} s, {clients} heavy clients (6000 px, every format, heatmaps), {workers} workers")
    print(f"  heavy answers: {dict(heavy_statuses)}")
    print(f"  small answers: {dict(small_statuses)}")
    print(f"  small requests' answer time: {describe_times(small_seconds)} ({len(small_seconds)} requests)")
    print(f"  service memory, peak: {peak:.0f} MB")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--heavy", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)  # the service's default
    args = parser.parse_args(argv)
    run(args.model, args.data, args.seconds, args.heavy, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
