#!/usr/bin/env bash
# The whole test suite: sets up ./.venv on a fresh machine, runs the linters (scripts/lint.sh),
# then pytest with any arguments given (e.g. -m "not slow" for the fast loop).
# Needs the shared data beside the repository (../shared/data/chest_xray) or CXR_SHARED_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "cpu,train,dev,gateway"
bash scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
