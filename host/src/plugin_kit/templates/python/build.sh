#!/usr/bin/env bash
# Builds this plugin into a WebAssembly component: ./build.sh [OUT.wasm] (default plugin.wasm).
# The toolchain is componentize-py: $COMPONENTIZE_PY, else .venv/bin/componentize-py
# (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt), else one on the PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-plugin.wasm}
cpy=${COMPONENTIZE_PY:-}
if [ -z "$cpy" ]; then
  if [ -x "$here/.venv/bin/componentize-py" ]; then
    cpy=$here/.venv/bin/componentize-py
  elif command -v componentize-py >/dev/null; then
    cpy=componentize-py
  else
    echo "componentize-py not found: python3 -m venv .venv && .venv/bin/pip install -r requirements.txt" >&2
    exit 1
  fi
fi
"$cpy" -d "$here/wit" -w plugin componentize -p "$here/src" app -o "$out"
