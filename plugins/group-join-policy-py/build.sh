#!/usr/bin/env bash
# Builds the Python group-join policy into a component: build.sh OUT.wasm
# The contract is taken from the repository's wit/plugin.wit (never a copy kept here); the
# toolchain is .venv/bin/componentize-py (make deps: python3 -m venv .venv && pip install -r requirements.txt).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT.wasm}
cpy=${COMPONENTIZE_PY:-$here/.venv/bin/componentize-py}
wit=$(mktemp -d)
trap 'rm -rf "$wit"' EXIT
mkdir -p "$wit/deps/imgate"
cp "$here/wit/world.wit" "$wit/world.wit"
cp "$here/../../wit/plugin.wit" "$wit/deps/imgate/plugin.wit"
"$cpy" -d "$wit" -w plugin componentize -p "$here/src" app -o "$out"
