#!/usr/bin/env bash
# sf_ensure_venv: create .venv and install the project (with dev tools) when needed.
sf_ensure_venv() {
    local python=${PYTHON:-python3}
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv"
        "$python" -m venv .venv
    fi
    if ! .venv/bin/python -c 'import feeder, freqtrade, pytest, hypothesis' 2>/dev/null \
        || [ pyproject.toml -nt .venv/.installed ] \
        || [ feeder/history/_csvscan.c -nt .venv/.installed ]; then
        echo "== installing the project (pip install -e '.[dev]'; about a minute on a fresh machine)"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e '.[dev]'
        touch .venv/.installed
    fi
}
