"""cxr-client: score files and folders against the service, check its health and model.

  cxr-client predict PATH... --url URL [--api-key KEY] [--concurrency N] [--out FILE]
                             [--recursive] [--resume]
  cxr-client health --url URL
  cxr-client model --url URL

The API key may come from $CXR_API_KEY instead of --api-key (keeps it out of process lists).
Exit codes: 0 every file scored or refused (not a chest X-ray: code not_chest_xray, counted
apart); 1 some failed; 2 the service could not be reached or bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cxr_client.client import Client
from cxr_client.errors import ServiceError, ServiceUnavailable
from cxr_client.inputs import collect
from cxr_client.output import ResultWriter, scored_paths

EXIT_OK, EXIT_FAILURES, EXIT_UNREACHABLE = 0, 1, 2


class Progress:
    """One self-overwriting line on stderr, only when stderr is a terminal."""

    def __init__(self, total: int):
        self.total, self.done, self.failed = total, 0, 0
        self.started = time.monotonic()
        self.enabled = sys.stderr.isatty()

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if self.enabled:
            rate = self.done / max(time.monotonic() - self.started, 1e-9)
            sys.stderr.write(f"\r{self.done}/{self.total} scored ({self.failed} failed) {rate:.1f}/s ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _predict(args: argparse.Namespace) -> int:
    inputs = collect(args.paths, recursive=args.recursive)
    files = inputs.files
    already = 0
    if args.resume:
        if args.out is None:
            print("cxr-client: --resume needs --out FILE", file=sys.stderr)
            return EXIT_UNREACHABLE
        done = scored_paths(args.out)
        already = sum(str(f) in done for f in files)
        files = [f for f in files if str(f) not in done]
    started = time.monotonic()
    writer = ResultWriter(args.out)
    progress = Progress(len(files))
    scored = failed = refused = 0
    try:
        with Client(args.url, api_key=args.api_key, timeout=args.timeout, retries=args.retries) as client:
            if files:
                _check_reachable(client)
            for item in client.predict_many(files, concurrency=args.concurrency):
                writer.write(item)
                progress.update(item.ok)
                scored += item.ok
                refused += item.refused
                failed += not item.ok and not item.refused
    except ServiceUnavailable as exc:
        progress.close()
        print(f"cxr-client: cannot reach the service at {args.url}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        writer.close()
    progress.close()
    elapsed = time.monotonic() - started
    print(
        f"scored {scored}, refused {refused} (not chest X-rays), failed {failed}, "
        f"skipped {len(inputs.skipped) + already} "
        f"({len(inputs.skipped)} not images, {already} already in the output), "
        f"elapsed {elapsed:.1f} s, rate {scored / max(elapsed, 1e-9):.1f}/s",
        file=sys.stderr,
    )
    if failed:
        print(f"cxr-client: {failed} file(s) failed; see the error column", file=sys.stderr)
        return EXIT_FAILURES
    if refused:
        print(f"cxr-client: {refused} file(s) refused as not frontal chest X-rays; see the code column",
              file=sys.stderr)
    return EXIT_OK


def _check_reachable(client: Client) -> None:
    """Fail fast, once, instead of once per file when the URL is wrong or the service down."""
    status = client.health()
    if status.get("status") != "ready":
        raise ServiceUnavailable(f"service is not ready: {status}")


def _show(args: argparse.Namespace, what: str) -> int:
    try:
        with Client(args.url, api_key=args.api_key, timeout=args.timeout, retries=args.retries) as client:
            body = client.health() if what == "health" else client.model()
    except ServiceUnavailable as exc:
        print(f"cxr-client: cannot reach the service at {args.url}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ServiceError as exc:
        print(f"cxr-client: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    print(json.dumps(body, indent=2))
    return EXIT_OK if what != "health" or body.get("status") == "ready" else EXIT_FAILURES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr-client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", required=True, help="service base URL, e.g. http://127.0.0.1:8000")
    common.add_argument("--api-key", help="API key (default: $CXR_API_KEY)")
    common.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    common.add_argument("--retries", type=int, default=5, help="attempts per request, in all")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", parents=[common], help="score files and folders")
    predict.add_argument("paths", nargs="+", type=Path)
    predict.add_argument("--concurrency", type=int, default=4)
    predict.add_argument("--out", type=Path, help="CSV, or JSON lines for .jsonl (default: CSV to stdout)")
    predict.add_argument("--recursive", action="store_true", help="walk folders")
    predict.add_argument("--resume", action="store_true", help="skip files already scored in --out")
    commands.add_parser("health", parents=[common], help="print readiness")
    commands.add_parser("model", parents=[common], help="print model metadata")
    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            return _predict(args)
        return _show(args, args.command)
    except KeyboardInterrupt:
        print("cxr-client: interrupted; rows written so far are kept (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
