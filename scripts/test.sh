#!/usr/bin/env bash
# The README's test command: installs what is needed, builds, runs every test
# that needs no GPU (GPU tests skip themselves when no device opens).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh "$@"
# The parsers of untrusted input are fuzzed first (clang + libFuzzer), for
# DEMIX_FUZZ_SECONDS each (default 60; 0 skips), so ctest's summary ends the log.
fuzz_seconds="${DEMIX_FUZZ_SECONDS:-60}"
if [ "$fuzz_seconds" -gt 0 ]; then
  scripts/fuzz.sh "$fuzz_seconds"
fi
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 600
