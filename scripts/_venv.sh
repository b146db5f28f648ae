# Sourced by the scripts: make ./.venv (Python 3.11+) and install the project with the given extras.
# Usage: ensure_venv "cpu,train,dev"
ensure_venv() {
    local extras=$1
    local python=${PYTHON:-$(command -v python3.11 || command -v python3)}
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
        .venv/bin/python -m pip install -q --upgrade pip
    fi
    # quiet when nothing changed; pip only downloads what is missing
    .venv/bin/python -m pip install -q -e ".[${extras}]"
}
