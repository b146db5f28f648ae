"""python -m service [--host H] [--port P] [--model PATH] [--workers N]: serve the model with uvicorn.

Every option also comes from CXR_* environment variables (see service/config.py); options
given here win.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from cxr_common.hardware import available_cores
from service.config import Settings
from service.process.plan import make_plan
from service.process.server import check_model, configure_process, serve

log = logging.getLogger("service")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", help="address to listen on (CXR_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (CXR_PORT, default 8000)")
    parser.add_argument("--model", type=Path, help="ONNX model (CXR_MODEL_PATH, default the bundled model)")
    parser.add_argument("--workers", type=int,
                        help="worker processes under the supervisor (CXR_WORKERS; default 1, with a scoring thread per core)")
    args = parser.parse_args(argv)
    given = {"host": args.host, "port": args.port, "model_path": args.model, "workers": args.workers}
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        settings = Settings.from_env(os.environ, **overrides)
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_process(settings)
    # the model is checked before the port is bound, so that a bad model stops start-up with a
    # clear message; in a child process, so that the supervisor never holds onnxruntime or the model
    provider, error = check_model(settings)
    if provider is None:
        log.error("cannot start: %s", error)
        return 1
    plan = make_plan(settings, provider, available_cores())
    log.info("serving plan", extra={"plan": plan.__dict__})
    return serve(settings, plan)


if __name__ == "__main__":
    sys.exit(main())
