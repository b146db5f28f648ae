#!/usr/bin/env bash
# Run the service on the bundled model (127.0.0.1:8000), setting up ./.venv on a fresh machine.
# Options pass through: scripts/serve.sh --port 9000 --model other.onnx
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "cpu"
exec .venv/bin/python -m service "$@"
