"""`cxr-gateway`: run the gateway (the default), list jobs, or send dead-lettered jobs again.

    cxr-gateway --listen 127.0.0.1:11112 --ae-title CXR_AI --service http://127.0.0.1:8000 \\
                --dicomweb http://PACS/dicom-web --state ./gateway-state
    cxr-gateway jobs --state ./gateway-state [--dead]
    cxr-gateway retry --state ./gateway-state [SOP_INSTANCE_UID ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from gateway import logs
from gateway.config import ENV_PREFIX, add_serve_options, from_args
from gateway.jobs import DEAD, JobTable, state_file

COMMANDS = ("serve", "jobs", "retry")


def serve(argv: list[str], env: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(prog="cxr-gateway", description="DICOM gateway: PACS -> scoring service -> PACS")
    add_serve_options(parser, env)
    args = parser.parse_args(argv)
    try:
        config = from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    from gateway.app import Gateway  # pynetdicom and highdicom load only for serving

    logs.setup()
    gateway = Gateway(config)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    try:
        gateway.start()
    except OSError as exc:  # the port taken, the state dir not writable
        logs.warning("start_failed", error_type=type(exc).__name__, error=str(exc))
        return 1
    done.wait()
    gateway.stop()
    return 0


def state_option(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument("--state", default=env.get(ENV_PREFIX + "STATE", "./gateway-state"),
                        help=f"the gateway's state directory ({ENV_PREFIX}STATE)")


def open_table(state: str) -> JobTable:
    path = state_file(Path(state))
    if not path.exists():
        sys.exit(f"cxr-gateway: no job table at {path}")
    return JobTable(path)


def jobs(argv: list[str], env: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(prog="cxr-gateway jobs", description="List the gateway's jobs (JSON lines).")
    state_option(parser, env)
    parser.add_argument("--dead", action="store_true", help="dead-lettered jobs only")
    parser.add_argument("--state-is", action="append", default=[], help="jobs in this state only (repeatable)")
    args = parser.parse_args(argv)
    table = open_table(args.state)
    states = tuple(args.state_is) + ((DEAD,) if args.dead else ())
    for job in table.list(states):
        print(json.dumps({"job": logs.job_id(job.sop_instance_uid), "sop_instance_uid": job.sop_instance_uid,
                          "state": job.state, "attempts": job.attempts, "detail": job.detail,
                          "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.received_at)),
                          "outputs": job.outputs.split() if job.outputs else []}))
    table.close()
    return 0


def retry(argv: list[str], env: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cxr-gateway retry", description="Send dead-lettered jobs again (all, or those named); "
        "a running gateway picks them up at once.")
    state_option(parser, env)
    parser.add_argument("sop_instance_uids", nargs="*", help="SOP Instance UIDs (default: every dead-lettered job)")
    args = parser.parse_args(argv)
    table = open_table(args.state)
    count = table.retry(args.sop_instance_uids or None)
    table.close()
    print(json.dumps({"requeued": count}))
    return 0


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    command = argv[0] if argv and argv[0] in COMMANDS else "serve"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    return {"serve": serve, "jobs": jobs, "retry": retry}[command](rest, env)
