"""The service against the plain server (benchmarks/plain_server.py: FastAPI under
`uvicorn --workers 2`, the same decoding and model, nothing else), both running side by side,
load alternated between them in rounds so that the machine's drift falls on both alike.

    python -m benchmarks.against_plain [--rounds 3] [--seconds 8] [--levels 1 16 64] [--jpegs-only]
                                       [--baseline DIR]

Per level and round: images/s, median and p99 answer time, and CPU per image of each server's
whole process tree; then each server's memory (RSS, whole tree) at rest and after the rounds.
The service runs as a user runs it (its defaults: logs at INFO, metrics and the image check on).
Prints the ratio service / plain server of images/s per level (median of the rounds).

--baseline DIR: instead of the plain server, the service as another checkout has it (a git
worktree of an earlier commit: `git worktree add /tmp/base HEAD~3`), same settings: an A/B of
a change, CPU per image being the figure this machine's noise moves least.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cpu_cost import load_with_cpu
from benchmarks.loadgen import build_requests
from benchmarks.serve import HOST, Server, benchmark_parser, load_bodies


@dataclass(frozen=True)
class Level:
    images_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # CPU per image, the whole process tree


def measure(server: Server, requests: list[bytes], concurrency: int, seconds: float) -> Level:
    result, cpu_ms = load_with_cpu(server.process.pid, HOST, server.port, requests, concurrency, seconds,
                                   warm_up_s=1.0)
    if result.errors:
        raise RuntimeError(f"{result.errors} errors at c={concurrency}: {result.statuses}")
    return Level(result.throughput, result.percentile_ms(50), result.percentile_ms(99), cpu_ms)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, prog="python -m benchmarks.against_plain", jpegs_only_option=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per level, server and round")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--baseline", type=Path, help="a checkout whose service stands in for the plain server")
    args = parser.parse_args(argv)
    bodies = load_bodies(args.data, args.jpegs_only)
    env = {"CXR_MODEL_PATH": str(args.model)}
    servers = {"service": Server("service", args.model, {"CXR_LOG_LEVEL": "INFO"}, settle_s=2.0)}
    if args.baseline:  # run from there, its code comes first on the path (python -m)
        servers["baseline"] = Server("baseline", args.model, {"CXR_LOG_LEVEL": "INFO"}, settle_s=2.0,
                                  cwd=args.baseline.resolve(), command=lambda port: [
            sys.executable, "-m", "service", "--port", str(port), "--model", str(args.model.resolve())])
    else:
        servers["plain"] = Server("plain", args.model, env, settle_s=2.0, command=lambda port: [
            sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port), "--workers", "2",
            "--log-level", "warning", "--no-access-log", "benchmarks.plain_server:app"])
    try:
        at_rest = {name: server.rss_mb() for name, server in servers.items()}
        requests = {name: build_requests(HOST, server.port, bodies) for name, server in servers.items()}
        found: dict[tuple[str, int], list[Level]] = {}
        for round_number in range(1, args.rounds + 1):
            order = list(servers) if round_number % 2 else list(reversed(servers))
            for concurrency in args.levels:
                for name in order:
                    level = measure(servers[name], requests[name], concurrency, args.seconds)
                    found.setdefault((name, concurrency), []).append(level)
                    print(f"round {round_number} c={concurrency:<3} {name:<8} {level.images_per_s:7.1f} img/s  "
                          f"p50 {level.p50_ms:6.1f} ms  p99 {level.p99_ms:6.1f} ms  "
                          f"CPU {level.cpu_ms:5.2f} ms/img", flush=True)
        after = {name: server.rss_mb() for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    for name in servers:
        print(f"{name}: RSS at rest {at_rest[name]:.0f} MB, after the rounds {after[name]:.0f} MB")
    other = "baseline" if args.baseline else "plain"
    for concurrency in args.levels:
        ratios = [s.images_per_s / p.images_per_s
                  for s, p in zip(found[("service", concurrency)], found[(other, concurrency)])]
        cpu = {name: [level.cpu_ms for level in found[(name, concurrency)]] for name in servers}
        lower = sum(s < o for s, o in zip(cpu["service"], cpu[other]))
        print(f"c={concurrency}: service / {other} {statistics.median(ratios):.2f}x images/s "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}); CPU per image {statistics.median(cpu['service']):.2f} "
              f"against {statistics.median(cpu[other]):.2f} ms (lower in {lower} of {len(ratios)} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
