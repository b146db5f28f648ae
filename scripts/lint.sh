#!/usr/bin/env bash
# ruff (style and bug patterns) over the repository, mypy (strict) over cxr_common, service and
# cxr_client; both configured in pyproject.toml. Run by scripts/test.sh before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/mypy
