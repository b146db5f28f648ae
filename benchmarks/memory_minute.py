"""The service's memory at rest and after a minute at concurrency 16 (issue 24's measure): RSS of
its whole process tree, as the operating system counts it (shared library pages once per process).

    python -m benchmarks.memory_minute [--workers 1] [--seconds 60] [--concurrency 16] [--jpegs-only]

Prints each process's RSS at rest, then the tree's RSS at rest, 1 s after the load and 4 s after
it (by then an idle worker has handed back what the load left: service/process/memory.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.cpu_cost import process_memory_mb, tree_pids
from benchmarks.loadgen import build_requests, describe_times, run_load
from benchmarks.serve import HOST, Server, benchmark_parser, load_bodies


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, prog="python -m benchmarks.memory_minute", jpegs_only_option=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    bodies = load_bodies(args.data, args.jpegs_only)
    server = Server("service", args.model, {"CXR_WORKERS": str(args.workers), "CXR_LOG_LEVEL": "INFO"},
                    settle_s=3.0)
    try:
        for pid in tree_pids(server.process.pid):
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            print(f"process {pid} ({name}): {process_memory_mb(pid):.0f} MB at rest")
        at_rest = server.rss_mb()
        result = run_load(HOST, server.port, build_requests(HOST, server.port, bodies), args.concurrency,
                          args.seconds)
        time.sleep(1.0)
        after_1s = server.rss_mb()
        time.sleep(3.0)
        after_4s = server.rss_mb()
    finally:
        server.stop()
    print(f"{len(result.latencies_s)} images in {args.seconds:.0f} s at c={args.concurrency}, errors "
          f"{result.errors}; {describe_times(result.latencies_s)}")
    print(f"RSS, whole tree ({args.workers} worker{'s' if args.workers > 1 else ''}): {at_rest:.0f} MB at rest, "
          f"{after_1s:.0f} MB 1 s after the load, {after_4s:.0f} MB 4 s after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
