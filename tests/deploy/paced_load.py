"""Requests at a fixed rate, whatever the answers (an open loop, as clients behave: a slow
answer does not slow the next request down). Run inside the load balancer's namespace:

    python -m tests.deploy.paced_load URL IMAGE --count 240 --rate 20 --api-key KEY

prints one JSON object: each request's start (s after the first), status (0: no answer) and
latency, in the order sent."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.paced_load", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("image", type=Path)
    parser.add_argument("--count", type=int, default=240)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    body = args.image.read_bytes()
    headers = {"Content-Type": "image/jpeg", "X-API-Key": args.api_key}
    local = threading.local()
    results: list[dict[str, float | int | str]] = [{} for _ in range(args.count)]
    started = time.monotonic()

    def send(index: int) -> None:
        if not hasattr(local, "client"):  # one kept-alive connection per thread
            local.client = httpx.Client(timeout=args.timeout)
        sent = time.monotonic()
        try:
            status = local.client.post(f"{args.url}/predict", content=body, headers=headers).status_code
            error = ""
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
        results[index] = {"start_s": round(sent - started, 3), "status": status,
                          "latency_s": round(time.monotonic() - sent, 3), "error": error}

    with ThreadPoolExecutor(max_workers=32) as pool:
        for index in range(args.count):
            time.sleep(max(0.0, started + index / args.rate - time.monotonic()))
            pool.submit(send, index)
    json.dump({"results": results, "seconds": round(time.monotonic() - started, 3)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
