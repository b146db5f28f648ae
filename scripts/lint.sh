#!/usr/bin/env bash
# ruff (style and bug patterns) over the repository, mypy (strict) over every package (service,
# cxr_common, cxr_client, gateway, model_export); both configured in pyproject.toml. Run by scripts/test.sh before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/mypy
