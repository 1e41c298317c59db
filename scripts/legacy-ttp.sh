#!/usr/bin/env bash
# Build .venv-ttp: Python 3.7 with mlflow 1.7.2, the client the original Synergos TTP logs with,
# so the tests can write and read a file store exactly as it does. Every package is pinned in
# tests/legacy_ttp/requirements.txt and installed with --no-deps; a stamp holding that file's
# checksum makes a second call return at once. The interpreter is, in order: $PYTHON37,
# pyenv's 3.7.x, python3.7 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-ttp
REQS=tests/legacy_ttp/requirements.txt
STAMP="$VENV/.legacy-ttp-installed"
LOG="$VENV/install.log"

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

is_py37() {
    [[ -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 7))' 2>/dev/null
}

find_python37() {
    local candidates=()
    [[ -n "${PYTHON37:-}" ]] && candidates+=("$PYTHON37")
    local root=""
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root 2>/dev/null || true)"
    fi
    for dir in "$root" "${PYENV_ROOT:-}" "$HOME/.pyenv"; do
        [[ -n "$dir" ]] || continue
        for py in "$dir"/versions/3.7*/bin/python3.7; do
            [[ -e "$py" ]] && candidates+=("$py")
        done
    done
    command -v python3.7 >/dev/null 2>&1 && candidates+=("$(command -v python3.7)")
    for py in "${candidates[@]}"; do
        if is_py37 "$py"; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

# --check-python: only say whether a Python 3.7 can be found (.ci/run asks before testing).
if [[ "${1:-}" == "--check-python" ]]; then
    find_python37 >/dev/null
    exit $?
fi

# One build at a time: parallel test processes may all ask for the environment.
exec 9>".venv-ttp.lock"
flock 9
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

if ! python37="$(find_python37)"; then
    echo "legacy-ttp: no Python 3.7 found (set PYTHON37, install it with pyenv, or put python3.7 on PATH)" >&2
    exit 1
fi

rm -rf "$VENV"
"$python37" -m venv "$VENV"
if ! "$VENV/bin/pip" install --disable-pip-version-check --no-deps -r "$REQS" >"$LOG" 2>&1 ||
    ! "$VENV/bin/pip" check >>"$LOG" 2>&1 ||
    ! "$VENV/bin/python" -c 'import mlflow; assert mlflow.__version__ == "1.7.2", mlflow.__version__' \
        >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    echo "legacy-ttp: installing $REQS into $VENV failed (full log: $LOG)" >&2
    exit 1
fi
echo "$want" >"$STAMP"
echo "legacy-ttp: $VENV ready (mlflow 1.7.2 on $("$VENV/bin/python" -V 2>&1))"
