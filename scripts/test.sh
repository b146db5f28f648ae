#!/usr/bin/env bash
# The whole test suite: sets up ./.venv on a fresh machine, then runs pytest.
# Needs the shared data beside the repository (../shared/data/chest_xray) or CXR_SHARED_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "cpu,train,dev"
exec .venv/bin/python -m pytest "$@"
