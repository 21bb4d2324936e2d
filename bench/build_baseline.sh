#!/usr/bin/env bash
# bench/build_baseline.sh SRC BUILD TARGET... - build an older tree of the
# project (a `git archive` carried to the GPU machine, e.g. .carry/base)
# with CUDA against the Debian packages bench/gpu_check.sh unpacked into
# its prefix, Release, without tests, so that a benchmark can run it beside
# the current tree's build-dev in the same lease (bench/server_gpu.sh,
# bench/engine_ab.sh). The log goes to BUILD.txt; on failure its tail is
# shown and the exit status is 1.
set -uo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 SRC BUILD TARGET..." >&2
  exit 2
fi
src=$1 build=$2
shift 2
P=/tmp/demix-prefix
LIBDIRS=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread:$P/lib/x86_64-linux-gnu
export PKG_CONFIG_PATH=$P/usr/lib/x86_64-linux-gnu/pkgconfig
log=$build.txt
if ! { LD_LIBRARY_PATH=$LIBDIRS cmake -S "$src" -B "$build" -G Ninja \
         -DCMAKE_BUILD_TYPE=Release -DDEMIX_TESTS=OFF -DDEMIX_BENCH=OFF \
         -DCMAKE_C_FLAGS="-isystem $P/usr/include/x86_64-linux-gnu" \
         -DCMAKE_CUDA_ARCHITECTURES=90 -DDEMIX_CUDA=ON \
         -DPKG_CONFIG_EXECUTABLE="$(command -v pkg-config || echo "$P/usr/bin/pkgconf")" \
         -DCMAKE_PREFIX_PATH="$P/usr" >"$log" 2>&1 &&
       LD_LIBRARY_PATH=$LIBDIRS cmake --build "$build" -j"$(nproc)" \
         --target "$@" >>"$log" 2>&1; }; then
  tail -30 "$log"
  echo "# $src did not build (log: $log)"
  exit 1
fi
