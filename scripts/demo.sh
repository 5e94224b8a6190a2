#!/usr/bin/env bash
# The main job: verify the data, then show what mapscope does. Later stages append to this.
set -euo pipefail
out=${1:-runs/demo}
mapscope() { .venv/bin/mapscope "$@"; }
mkdir -p "$out"
mapscope data fetch mnist fashion-mnist wifi
mapscope data check
mapscope data show mnist --split test --index 1302 --index 1816 --index 1270 --index 1249 --out "$out/digits.png"
echo "demo outputs are in $out"
