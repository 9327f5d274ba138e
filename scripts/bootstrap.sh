#!/usr/bin/env bash
# Create the virtual environment and install the project (with the dev extras when given "dev").
# torch's CPU build is installed first so that no multi-GB CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
mode="${1:-run}"
stamp="$VENV/.installed-$mode"

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0" \
    || "$VENV/bin/python" -m pip install --quiet "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
if [ "$mode" = "dev" ]; then
  "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
  # Tests use Debian's packages, never downloads: Chromium for the browser tests, and real PostgreSQL,
  # Redis and nginx servers (each test starts its own on free loopback ports).
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
  { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing="$missing nginx"
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$missing postgresql"
  if [ -n "$missing" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
      || echo "warning: could not install:$missing" >&2
  fi
  # a Matrix homeserver for the Matrix bot's tests (Synapse, from PyPI), in its own environment: its pins stay
  # out of the service's
  SYNAPSE_VENV="${SYNAPSE_VENV:-.venv-synapse}"
  if ! "$SYNAPSE_VENV/bin/python" -c "import synapse" 2>/dev/null; then
    "$PYTHON" -m venv "$SYNAPSE_VENV"
    "$SYNAPSE_VENV/bin/python" -m pip install --quiet "matrix-synapse>=1.120" \
      || echo "warning: could not install Synapse (the Matrix bot's tests need it)" >&2
  fi
  # the benchmarks' load generator, on its own: the tests never wait for it
  if ! command -v wrk >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) 2>/dev/null \
      || echo "warning: could not install wrk (make bench then uses a Python load generator)" >&2
  fi
else
  "$VENV/bin/python" -m pip install --quiet -e .
fi
touch "$stamp"
