#!/usr/bin/env bash
# Runs a command inside boxwalk's build environment: the pinned venv (created on first use by
# scripts/venv.sh) on PATH, and torch-sys told to take libtorch from it.
set -euo pipefail
venv=$("$(dirname "$0")/venv.sh")
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 BOXWALK_PYTHON="$venv/bin/python"
exec "$@"
