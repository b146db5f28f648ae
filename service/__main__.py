"""python -m service [--host H] [--port P] [--model PATH] [--workers N]: serve the model with uvicorn.

Every option also comes from CXR_* environment variables (see service/config.py); options
given here win.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from service.process.logs import configure_logging
from service.process.server import configure_process, serve
from service.process.startup import prepare_startup

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
    configure_logging()  # JSON logs from here; the configured level once the settings are read
    configure_process()  # before the start-up child's threads: glibc fixes its arena count then
    startup = prepare_startup(overrides)  # settings and model checked in a child: see its module
    if isinstance(startup, int):
        return startup
    configure_logging(startup.log_level)
    log.info("serving plan", extra={"plan": startup.plan.__dict__})
    return serve(startup)


if __name__ == "__main__":
    sys.exit(main())
