"""Good, bad, slow and vanishing clients at once against the real service on loopback, bounded
in time; prints what each kind of client got, the service's memory over the run, and checks
that every request was answered, none with a 5xx, and memory stayed flat.

    python -m benchmarks.mixed_load [--seconds 60] [--concurrency 32] [--sigterm-at 30]

Clients (shares of the concurrency): good 60% (real X-rays, JPEG and DICOM, on kept-alive
connections), bad 20% (not an image, a truncated JPEG, a photograph, an empty body, a 1 MB
header), slow 10% (headers a byte a second, or an upload that stalls), vanishing 10% (gone
mid-upload); besides them one client sending scan bombs (6000 px progressive JPEGs with 4,000
refinement scans: refused 422 before decoding) and one trickling an upload a byte a second
(cut off 408 once under CXR_MIN_UPLOAD_RATE_KBPS after its first 10 s). The good requests'
latency is reported (median, p99): what a small request waits behind the rest.
With --sigterm-at the service gets SIGTERM then; each request sent before it must
still be answered (new connections are refused from then on, as they should be).
Exit status 0 when every check holds.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.hostile_inputs import scan_bomb
from benchmarks.loadgen import describe_times, median_p99_max_ms
from benchmarks.serve import Server, benchmark_parser, load_bodies, sample_memory
from service.process.memory import IDLE_AFTER_S

HOST = "127.0.0.1"
READY_WITHIN_S = 0.1  # what a load balancer's health check may wait
# memory once the load has stopped and the workers handed back what it left (IDLE_AFTER_S), at
# most this times its level after the warm-up: what stays is kept (a leak), what went back was the
# allocator's high-water mark, which grows in steps whenever a worker's threads first meet a heavier
# combination of uploads (a step of 100 MB came 6 or 10 s into a loaded 16 s run, then stayed flat;
# 3.5 s after the load the service held 461-469 MB against 569-589 after the warm-up)
FLAT_MEMORY = 1.0
SETTLE_S = IDLE_AFTER_S + 1.5


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)  # (client kind, status) -> count
    unanswered: Counter = field(default_factory=Counter)  # kind -> requests sent but never answered
    unanswered_before_sigterm: int = 0
    sigterm_at: float | None = None
    good_seconds: list[float] = field(default_factory=list)  # each good request's answer time

    def record(self, kind: str, status: int | None, sent_at: float, accepted: bool = True) -> None:
        """`accepted`: the request's headers were all sent (a server may drop one whose
        headers never completed when it shuts down)."""
        if status is None:
            self.unanswered[kind] += 1
            if accepted and (self.sigterm_at is None or sent_at < self.sigterm_at):
                self.unanswered_before_sigterm += 1
        else:
            self.statuses[(kind, status)] += 1


def _request(path: str, body: bytes, media_type: str, extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {media_type}\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _exchange(port: int, requests: list[bytes], kind: str, tally: Tally, deadline: float) -> None:
    """Requests one after another on kept-alive connections (a new one after a close)."""
    index = 0
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:  # refused: the service has stopped listening (SIGTERM)
            return
        try:
            while time.monotonic() < deadline:
                request = requests[index % len(requests)]
                index += 1
                sent_at = time.monotonic()
                writer.write(request)
                try:
                    status = await asyncio.wait_for(_answer(reader), 60)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    tally.record(kind, None, sent_at)
                    break
                tally.record(kind, status, sent_at)
                if kind == "good":
                    tally.good_seconds.append(time.monotonic() - sent_at)
                if status in (408, 431):  # the server closes after these
                    break
        finally:
            writer.close()


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(1.0)


async def _slow(port: int, body: bytes, tally: Tally, deadline: float, stall: bool) -> None:
    """Headers a byte a second (stall=False) or a body that stops half way (stall=True)."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            return
        sent_at = time.monotonic()
        request = _request("/predict", body, "image/jpeg")
        if stall:
            writer.write(request[: len(request) // 2])
            sender = None
        else:
            sender = asyncio.ensure_future(_trickle(writer, request[:200]))
        try:
            status = await asyncio.wait_for(_answer(reader), 120)
            tally.record("slow", status, sent_at)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            tally.record("slow", None, sent_at, accepted=stall)
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            writer.close()


async def _trickle_upload(port: int, body: bytes, tally: Tally, deadline: float) -> None:
    """Headers at once, then the body a byte a second: the idle timeout never fires."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            return
        request = _request("/predict", body, "image/jpeg")
        head = request.index(b"\r\n\r\n") + 4
        writer.write(request[:head])
        sent_at = time.monotonic()
        sender = asyncio.ensure_future(_trickle(writer, request[head:]))
        try:
            status = await asyncio.wait_for(_answer(reader), 180)
            tally.record("trickle", status, sent_at)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            tally.record("trickle", None, sent_at, accepted=False)  # its request never completes
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            writer.close()


async def _vanish(port: int, body: bytes, tally: Tally, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            return
        request = _request("/predict", body, "image/jpeg")
        try:
            writer.write(request[: len(request) // 2])
            await writer.drain()
            await asyncio.sleep(0.2)
        except ConnectionError:
            pass  # a stopping server may close first; the client vanishes all the same
        writer.transport.abort()  # a reset, as a dropped link looks
        tally.statuses[("vanishing", "gone")] += 1
        await asyncio.sleep(0.3)


def _bombs(jpeg: bytes) -> list[bytes]:
    """The scan bomb, built from a real X-ray at the largest size CXR_MAX_PIXELS allows."""
    with Image.open(io.BytesIO(jpeg)) as image:
        bomb = scan_bomb(image.convert("L").resize((6000, 6000)), 4000)
    return [_request("/predict", bomb, "image/jpeg")]


def _bodies(data: Path) -> tuple[list[bytes], list[bytes], bytes]:
    """(good requests, bad requests, a real JPEG for the slow and vanishing clients)."""
    from skimage import data as samples

    bodies = load_bodies(data)  # the benchmark's images: the val JPEGs and a chest DICOM
    good = [_request("/predict", body, media_type) for body, media_type in bodies]
    photo = io.BytesIO()
    Image.fromarray(samples.astronaut()).save(photo, "JPEG")
    jpeg = bodies[0][0]
    bad = [
        _request("/predict", b"not an image at all", "application/octet-stream"),  # 415
        _request("/predict", jpeg[: len(jpeg) // 3], "image/jpeg"),  # 422 undecodable
        _request("/predict", photo.getvalue(), "image/jpeg"),  # 422 not_chest_xray
        _request("/predict", b"", "image/jpeg"),  # 400
        _request("/predict", b"", "image/jpeg", b"X-Big: " + b"a" * 1024 * 1024 + b"\r\n"),  # 431
    ]
    return good, bad, jpeg


async def _probe_readiness(port: int, seconds: list[float], deadline: float) -> None:
    """/health/ready four times a second on a connection of its own, as a load balancer does."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            return
        try:
            while time.monotonic() < deadline:
                started = time.monotonic()
                writer.write(f"GET /health/ready HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                await _answer(reader)
                seconds.append(time.monotonic() - started)
                await asyncio.sleep(0.25)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _run(server: Server, data: Path, concurrency: int, seconds: float, sigterm_at: float | None,
               tally: Tally, memory: list[float], readiness: list[float]) -> None:
    port = server.port
    good, bad, jpeg = _bodies(data)
    bombs = _bombs(jpeg)
    deadline = time.monotonic() + seconds
    shares = {"good": 0.6, "bad": 0.2, "slow": 0.1}
    counts = {kind: max(1, round(concurrency * share)) for kind, share in shares.items()}
    counts["vanishing"] = max(1, concurrency - sum(counts.values()))
    tasks = [_exchange(port, good[i::counts["good"]] or good, "good", tally, deadline) for i in range(counts["good"])]
    tasks += [_exchange(port, bad[i % len(bad):] + bad[: i % len(bad)], "bad", tally, deadline)
              for i in range(counts["bad"])]
    tasks += [_slow(port, jpeg, tally, deadline, stall=bool(i % 2)) for i in range(counts["slow"])]
    tasks += [_vanish(port, jpeg, tally, deadline) for _ in range(counts["vanishing"])]
    tasks.append(_exchange(port, bombs, "bomb", tally, deadline))
    tasks.append(_trickle_upload(port, jpeg, tally, deadline))
    tasks.append(sample_memory(server, memory, deadline, 2.0))
    tasks.append(_probe_readiness(port, readiness, deadline if sigterm_at is None else time.monotonic() + sigterm_at))
    if sigterm_at is not None:
        async def terminate() -> None:
            await asyncio.sleep(sigterm_at)
            tally.sigterm_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
        tasks.append(terminate())
    await asyncio.gather(*tasks)


def _five_xx_in_metrics(port: int) -> float:
    import re

    text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r'^cxr_requests_total\{[^}]*status="5\d\d"\} (\S+)$', text, re.M))


def run(model: Path, data: Path, seconds: float, concurrency: int, workers: int,
        sigterm_at: float | None) -> bool:
    server = Server("service", model, {"CXR_WORKERS": str(workers)}, settle_s=1.0)
    tally, memory, readiness = Tally(), [], []
    try:
        asyncio.run(_run(server, data, concurrency, seconds, sigterm_at, tally, memory, readiness))
        metrics_5xx = _five_xx_in_metrics(server.port) if sigterm_at is None else 0.0
        if sigterm_at is None:
            time.sleep(SETTLE_S)
            rested = server.rss_mb()
    finally:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
        exit_status = server.process.wait(60)
        server.log.close()
    print(f"{seconds:.0f} s, concurrency {concurrency}, {workers} workers; service log {server.log.name}")
    for (kind, status), count in sorted(tally.statuses.items(), key=str):
        print(f"  {kind:9s} {status!s:5s} {count}")
    for kind, count in tally.unanswered.items():
        print(f"  {kind:9s} unanswered {count}")
    five_xx = sum(c for (_, s), c in tally.statuses.items() if isinstance(s, int) and s >= 500
                  and not (sigterm_at is not None and s == 503))
    warm = memory[min(3, len(memory) - 1)] if memory else 0.0
    flat = bool(memory) and (sigterm_at is not None or rested <= warm * FLAT_MEMORY)
    print(f"  memory (service, all processes): {warm:.0f} MB after warm-up, max {max(memory):.0f} MB "
          f"({len(memory)} samples: {' '.join(f'{m:.0f}' for m in memory)})" if memory else "  memory: no samples")
    if sigterm_at is None:
        print(f"  memory {SETTLE_S:.1f} s after the load: {rested:.0f} MB")
    if readiness:
        print(f"  /health/ready under this load: {describe_times(readiness, 1)} ({len(readiness)} probes)")
    if tally.good_seconds:
        print(f"  good requests' answer time: {describe_times(tally.good_seconds)} ({len(tally.good_seconds)} requests)")
    # the trickle may still be sending when the run ends: unanswered then, and not a failure
    others_unanswered = sum(count for kind, count in tally.unanswered.items() if kind != "trickle")
    answered = tally.unanswered_before_sigterm == 0 and (sigterm_at is not None or others_unanswered == 0)
    checks = {
        "every request answered": answered,
        "no 5xx answered": five_xx == 0,
        "no 5xx in /metrics": metrics_5xx == 0,
        "memory back to its warm level once idle": flat,
        "good requests served": tally.statuses[("good", 200)] > 0,
        "scan bombs refused 422": {s for (k, s) in tally.statuses if k == "bomb"} <= {422, 503}
        and tally.statuses[("bomb", 422)] > 0,
        "trickle cut off with 408": seconds < 12 or sigterm_at is not None or tally.statuses[("trickle", 408)] > 0,
        # p99: the probe is timed from a client that shares the cores with the service
        "readiness within 100 ms (p99)": bool(readiness) and median_p99_max_ms(readiness)[1] < 1000 * READY_WITHIN_S,
    }
    if sigterm_at is not None:
        checks["service exited after SIGTERM"] = exit_status in (0, -signal.SIGTERM)
    for name, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {name}")
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sigterm-at", type=float, help="send SIGTERM this many seconds in")
    args = parser.parse_args(argv)
    return 0 if run(args.model, args.data, args.seconds, args.concurrency, args.workers, args.sigterm_at) else 1


if __name__ == "__main__":
    sys.exit(main())
