#!/usr/bin/env bash
# Configures and builds demixd into build/ (CUDA backend when nvcc exists).
# Extra arguments go to cmake's configure step, e.g. -DDEMIX_CUDA=OFF.
# DEMIX_BUILD_DIR=DIR builds into DIR instead (the sanitizer builds of
# scripts/test.sh: build-asan/, build-tsan/).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${DEMIX_BUILD_DIR:-build}"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
