#!/usr/bin/env bash
# Regenerate the golden test files (tests/data/tiny*.safetensors) with the
# PyTorch reference. Needs python3 with torch (CPU is enough: the truth is
# computed in float64); the project's machines have none, so it runs on the
# GPU machine:  scripts/make_golden.sh "$OUT"  then copy the four files back
# into tests/data/. The script stops without writing a pair whose
# self-checks (offline form == streaming form, file read-back) fail.
#
# Usage: scripts/make_golden.sh [OUT_DIR]   (default tests/data)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-tests/data}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 train/make_golden.py --out "$out"
ls -l "$out"
# The shipped model's golden file (tests/data/<name>_golden.safetensors):
#   python3 train/make_golden.py --model models/NAME.safetensors --hops 32 \
#       --frames 2 --out tests/data
