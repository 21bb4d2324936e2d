#!/usr/bin/env bash
# bench/engine_ab.sh - the CUDA engine against a baseline tree, on the GPU
# machine, in one call: builds `demix` of .carry/enginebase (a `git
# archive` of the baseline commit: CMakeLists.txt engine cpu gpu common
# audio include protocol tools; made here) into /tmp/engine-base, then
# runs `demix bench --backend cuda` of the baseline and of build-dev (built
# by bench/gpu_check.sh's build stage) alternately, same sizes, same
# machine: synchronous steps, and pipelined steps for each output shape.
#
# Usage, on the GPU machine, after `bench/gpu_check.sh --stages build`:
#   bench/engine_ab.sh [STREAMS] [SECONDS]   (default 1,64,1024,16384 and 3)
# Here, first:
#   mkdir -p .carry/enginebase && git archive BASE CMakeLists.txt engine \
#     cpu gpu common audio include protocol tools server | tar -x -C .carry/enginebase
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
P=/tmp/demix-prefix
LIBDIRS=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread:$P/lib/x86_64-linux-gnu
STREAMS=${1:-1,64,1024,16384}
SECONDS_EACH=${2:-3}
MODEL=${MODEL:-models/default.safetensors}
if [ ! -x /tmp/engine-base/tools/demix ]; then
  bench/build_baseline.sh .carry/enginebase /tmp/engine-base demix || exit 1
fi
run() { # LABEL BINARY ARGS...
  local label=$1 bin=$2
  shift 2
  echo "# $label: demix bench --backend cuda $*"
  LD_LIBRARY_PATH=$LIBDIRS "$bin" bench --backend cuda --model "$MODEL" \
    --streams "$STREAMS" --seconds "$SECONDS_EACH" "$@" 2>&1 | grep -v '^$'
}
for args in "" "--pipelined" "--pipelined --output s16" "--pipelined --output mix16"; do
  # shellcheck disable=SC2086 # args are words
  run base /tmp/engine-base/tools/demix $args
  # shellcheck disable=SC2086
  run new build-dev/tools/demix $args
done
