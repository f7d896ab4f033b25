# Sourced by the other scripts: create or reuse .venv with requirements.txt installed.
# Reinstalls only when requirements.txt changed since the last successful install.
set -e
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    python3 -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "installing requirements into $VENV (first run: several minutes)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" >&2
    echo "$want" > "$STAMP"
fi
PY="$VENV/bin/python"
export PYTHONUNBUFFERED=1
