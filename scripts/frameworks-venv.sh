#!/usr/bin/env bash
# Build .venv-fl: Python 3.11 with this package and its [flower,nvflare] extras (Flower with
# Ray for its simulation, NVIDIA FLARE), for the framework adapters' tests and benchmark.
# Kept apart from .venv because flwr[simulation] pins older fastapi/starlette/uvicorn than the
# server runs on; the tests start `synmlops serve` from .venv and the federations from here.
# A stamp holding the checksum of pyproject.toml and of this script makes a second call
# return at once. The interpreter is $PYTHON311, else python3.11 on PATH.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."

VENV=.venv-fl
STAMP="$VENV/.frameworks-installed"
LOG="$VENV/install.log"

want="$(cat pyproject.toml "$SELF" | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

# One build at a time: parallel test processes may all ask for the environment.
exec 9>".venv-fl.lock"
flock 9
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

python311="${PYTHON311:-$(command -v python3.11 || true)}"
if [[ -z "$python311" ]] ||
    ! "$python311" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "frameworks: no Python 3.11 found (set PYTHON311 or put python3.11 on PATH)" >&2
    exit 1
fi

started=$SECONDS
rm -rf "$VENV"
"$python311" -m venv "$VENV"
if ! "$VENV/bin/pip" install --disable-pip-version-check -e '.[flower,nvflare]' \
        'pytest>=8' 'pytest-timeout>=2.3' >"$LOG" 2>&1 ||
    ! "$VENV/bin/python" -c 'import flwr, nvflare, synergos_mlops' >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    echo "frameworks: installing .[flower,nvflare] into $VENV failed (full log: $LOG)" >&2
    exit 1
fi
echo "$want" >"$STAMP"
echo "frameworks: $VENV ready ($("$VENV/bin/python" -c 'import flwr, nvflare; print("flwr", flwr.__version__, "nvflare", nvflare.__version__)'), $(du -sh "$VENV" | cut -f1), $((SECONDS - started)) s)"
