#!/usr/bin/env bash
# The README's test command: installs what is needed, builds, runs every test
# that needs no GPU (GPU tests skip themselves when no device opens).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh "$@"
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 600
