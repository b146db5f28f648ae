"""Issue 25's probe, replayed against the service as shipped (default settings, one worker).

    python -m benchmarks.probe_replay [--small-seconds 50] [--held 80] [--held-mb 45]

1. Scan bombs: two 6000 px progressive JPEGs with 4,000 refinement scans each (about 300 KB,
   some 10 s of decoding apiece before the scans were counted), sent at once; then one client
   sends the validation X-rays one after another for `--small-seconds`. Before issue 25 every
   small request failed for a minute.
2. Held uploads: `--held` connections each announce a `--held-mb` MB DICOM and send all of it but
   its last byte, then hold; meanwhile small requests for `--held-seconds`. Before issue 25 the
   bodies were read whole before admission: 80 x 45 MB took 3.6 GB.

Prints what each kind of client got, the small requests' answer times and the service's memory
(its whole process tree, sampled every 0.5 s).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

from PIL import Image

from benchmarks.fairness import HOST, SIDE, _answer, _client, _request
from benchmarks.hostile_inputs import scan_bomb
from benchmarks.loadgen import describe_times
from benchmarks.serve import Server, benchmark_parser, sample_memory

BOMB_SCANS = 4000
HOLD_FIRST_S = 2.0  # the held uploads are in (or refused) before the small requests start
CHUNK = 1024 * 1024  # written a megabyte at a time, so that this client holds no copies


async def _small_requests(port: int, small: list[bytes], seconds: float) -> tuple[Counter, list[float]]:
    statuses: Counter = Counter()
    times: list[float] = []
    await _client(port, small, time.monotonic() + seconds, statuses, times)
    return statuses, times


async def _send_once(port: int, request: bytes, statuses: Counter) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        statuses[await asyncio.wait_for(_answer(reader), 120)] += 1
    finally:
        writer.close()


async def _bombs_then_small(server: Server, bomb: bytes, small: list[bytes], seconds: float) -> None:
    bomb_statuses: Counter = Counter()
    bombs = [asyncio.create_task(_send_once(server.port, bomb, bomb_statuses)) for _ in range(2)]
    small_statuses, times = await _small_requests(server.port, small, seconds)
    await asyncio.gather(*bombs)
    print(f"scan bombs ({BOMB_SCANS} scans, {len(bomb) // 1024} KB): {dict(bomb_statuses)}")
    _report(f"small requests for {seconds:.0f} s after them", small_statuses, times)


async def _hold(port: int, head: bytes, body: bytes, statuses: Counter, release: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        statuses["not connected"] += 1
        return
    try:
        writer.write(head)
        answer = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
        view = memoryview(body)[:-1]  # all but the last byte: the upload never completes
        try:
            for start in range(0, len(view), CHUNK):
                writer.write(view[start:start + CHUNK])
                await writer.drain()
        except ConnectionError:
            pass
        released = asyncio.create_task(release.wait())
        done, _ = await asyncio.wait([answer, released], return_when=asyncio.FIRST_COMPLETED)
        released.cancel()
        if answer not in done:
            statuses["held"] += 1
            answer.cancel()
        elif answer.exception():
            statuses["closed by the server"] += 1
        else:
            statuses[int(answer.result().split(b" ", 2)[1])] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        statuses["closed by the server"] += 1
    finally:
        writer.close()


async def _held_uploads(server: Server, small: list[bytes], count: int, megabytes: int, seconds: float) -> None:
    body = bytes(megabytes * 1024 * 1024)
    head = (f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/dicom\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    statuses: Counter = Counter()
    release, memory = asyncio.Event(), [server.rss_mb()]
    # sampled while the uploads are held: they are in (or refused) 2 s before the small requests
    sampler = asyncio.create_task(sample_memory(server, memory, time.monotonic() + HOLD_FIRST_S + seconds, 0.5))
    holders = [asyncio.create_task(_hold(server.port, head, body, statuses, release)) for _ in range(count)]
    await asyncio.sleep(HOLD_FIRST_S)
    small_statuses, times = await _small_requests(server.port, small, seconds)
    release.set()
    await asyncio.gather(*holders, sampler)
    print(f"{count} held uploads of {megabytes} MB: {dict(statuses)}")
    _report("small requests meanwhile", small_statuses, times)
    print(f"  service memory: {memory[0]:.0f} MB before, {max(memory):.0f} MB at most")


def _report(what: str, statuses: Counter, times: list[float]) -> None:
    print(f"{what}: {dict(statuses)}; answer time {describe_times(times)}")


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--small-seconds", type=float, default=50.0)
    parser.add_argument("--held", type=int, default=80)
    parser.add_argument("--held-mb", type=int, default=45)
    parser.add_argument("--held-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    xrays = sorted((args.data / "val").rglob("*.jpeg"))
    small = [_request("/predict", path.read_bytes(), "image/jpeg") for path in xrays]
    with Image.open(xrays[0]) as image:
        bomb = _request("/predict", scan_bomb(image.convert("L").resize((SIDE, SIDE)), BOMB_SCANS), "image/jpeg")
    server = Server("service", args.model, settle_s=1.0)
    try:
        asyncio.run(_bombs_then_small(server, bomb, small, args.small_seconds))
        asyncio.run(_held_uploads(server, small, args.held, args.held_mb, args.held_seconds))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
