"""Our supervisor (service/process/server.py) against uvicorn's own (`uvicorn --workers`), paired rounds
in one run, on the same images, the same app and the same per-worker settings.

    python -m benchmarks.supervisors [--rounds 4] [--seconds 10]

Ours: each worker binds its own socket on the port (SO_REUSEPORT) and sees the others' load
(service/process/peers.py). uvicorn's: one socket shared by the workers, each worker an app alone. Both
run two workers with one onnxruntime and one decoding thread each (what the plan gives two
workers on two cores), and our HTTP protocol limits. Each round measures both, back to back, at
concurrency 16 and 2 (keep-alive connections: how unevenly they land is the difference).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from benchmarks.loadgen import build_requests, run_load
from benchmarks.serve import HOST, Server, benchmark_parser, load_bodies

PER_WORKER = {"CXR_INTRA_OP_THREADS": "1", "CXR_DECODE_THREADS": "1", "CXR_LOG_LEVEL": "WARNING"}


def _command(kind: str, port: int, model: Path) -> list[str]:
    if kind == "ours":
        return [sys.executable, "-m", "service", "--port", str(port), "--model", str(model), "--workers", "2"]
    return [sys.executable, "-m", "uvicorn", "--factory", "service.http.app:create_app", "--host", HOST,
            "--port", str(port), "--workers", "2", "--http", "service.http.protocol:LimitedHttpToolsProtocol",
            "--log-level", "warning", "--no-access-log"]


def _measure(kind: str, model: Path, bodies: list[tuple[bytes, str]], seconds: float) -> dict[int, float]:
    env = {**PER_WORKER, "CXR_MODEL_PATH": str(model)}
    server = Server(kind, model, env, command=lambda port: _command(kind, port, model), settle_s=2.0)
    port = server.port
    try:
        requests = build_requests(HOST, port, bodies)
        run_load(HOST, port, requests, 16, 2.0)  # warm-up
        results = {}
        for concurrency in (16, 2):
            result = run_load(HOST, port, requests, concurrency, seconds)
            if result.errors:
                raise RuntimeError(f"{kind}: {result.errors} errors at c={concurrency}")
            results[concurrency] = result.throughput
        return results
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    bodies = load_bodies(args.data)
    ratios: dict[int, list[float]] = {16: [], 2: []}
    for round_number in range(1, args.rounds + 1):
        order = ("ours", "uvicorn") if round_number % 2 else ("uvicorn", "ours")  # alternate who goes first
        measured = {kind: _measure(kind, args.model, bodies, args.seconds) for kind in order}
        for concurrency in ratios:
            ratios[concurrency].append(measured["ours"][concurrency] / measured["uvicorn"][concurrency])
        print(f"round {round_number}: " + "  ".join(
            f"c={c}: ours {measured['ours'][c]:6.1f}  uvicorn {measured['uvicorn'][c]:6.1f} img/s"
            for c in ratios), flush=True)
    for concurrency, values in ratios.items():
        print(f"ours / uvicorn's supervisor at c={concurrency}: {statistics.median(values):.2f}x "
              f"(rounds {', '.join(f'{v:.2f}' for v in values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
