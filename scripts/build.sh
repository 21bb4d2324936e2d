#!/usr/bin/env bash
# Configures and builds demixd into build/ (CUDA backend when nvcc exists).
# Extra arguments go to cmake's configure step, e.g. -DDEMIX_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build build -j"$(nproc)"
