#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang into
# build-fuzz/ and runs each for SECONDS (default 60). For a target T,
# tests/fuzz/T_seeds.c (when present) writes its seed corpus and
# tests/fuzz/T.dict is its dictionary. Corpora grow in build-fuzz/corpus/T,
# crashing inputs land in build-fuzz/artifacts/. Exits non-zero on the first
# target that finds a crash.
#   scripts/fuzz.sh [SECONDS]      JOBS=N (build jobs), MAX_LEN=N (input size)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
jobs="${JOBS:-$(nproc)}"
max_len="${MAX_LEN:-16384}"
command -v clang >/dev/null || { echo "fuzz: clang is required" >&2; exit 1; }

gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
CC=clang cmake -S . -B build-fuzz "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDEMIX_FUZZ=ON -DDEMIX_CUDA=OFF -DDEMIX_TESTS=ON -DDEMIX_BENCH=OFF >/dev/null

targets=()
for src in tests/fuzz/fuzz_*.c; do
  stem="$(basename "$src" .c)"
  case "$stem" in *_seeds) continue ;; esac
  targets+=("$stem")
done
build=()
for t in "${targets[@]}"; do
  build+=(--target "$t")
  [ -f "tests/fuzz/${t}_seeds.c" ] && build+=(--target "${t}_seeds")
done
cmake --build build-fuzz -j"$jobs" "${build[@]}"

mkdir -p build-fuzz/artifacts
for t in "${targets[@]}"; do
  corpus="build-fuzz/corpus/$t"
  mkdir -p "$corpus"
  if [ -x "build-fuzz/tests/fuzz/${t}_seeds" ]; then
    "build-fuzz/tests/fuzz/${t}_seeds" "$corpus"
  fi
  args=(-max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1
        -artifact_prefix="build-fuzz/artifacts/$t-")
  [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
  echo "fuzz: $t for ${seconds}s"
  "build-fuzz/tests/fuzz/$t" "${args[@]}" "$corpus"
done
echo "fuzz: ${#targets[@]} target(s), no crash"
