#!/usr/bin/env bash
# bench/gpu_check.sh - the CUDA engine's whole check on a bare GPU machine,
# in one command (the device time of a session is short):
#   1. deps:  unpack the carried Debian packages (.debs/) into a prefix and
#             point pkg-config, CMake and the loader there (the GPU machine
#             has CUDA, cmake, ninja and PyTorch, but not OpenBLAS, kissfft,
#             cJSON, cmocka, libsndfile or soxr);
#   2. build: configure (Release, sm_90) and build the engine, the gpu
#             tests, the CUDA sweep and the demix command line;
#   3. test:  the gpu tests (ctest -L gpu, verbose: parity errors, SDR);
#   4. bench: bench/gpu_bench.c: the ceilings (device copy bandwidth, cuBLAS
#             bf16/tf32/fp32 rates, host<->device copies), then B = 1, 16,
#             64, 256, 1024, 4096 and the largest that fits (fast mode,
#             pinned host buffers; synchronous steps and the submit/collect
#             pipeline), the pageable-buffer path, fp32 mode, a per-op
#             profile, and
#             `demix bench --backend cuda` with and without --pipelined;
#   5. torch: bench/torch_baseline.py, the same step in PyTorch (eager and
#             CUDA graph, TF32), same B values, same device call;
#   6. table: one table with medians, p99, streams at real time, floors
#             and the PyTorch ratios;
#   7. server (only when asked: --stages ...,server): demixd on the GPU
#             with the shipped model under `demix loadgen` rounds
#             (bench/server_capacity.py), PCM16 and Opus, one service
#             thread and the default (server.txt): the whole server's
#             capacity, which the engine figures above only bound.
#
# Usage, on the GPU machine, from the repository root:
#   bench/gpu_check.sh [--stages build,test,bench,torch,table] [OUTDIR]
# (default: all stages; OUTDIR: $OUT if set, else bench/results/latest).
# Raw outputs land in OUTDIR as text files: tests.txt, bench.txt,
# torch.txt, table.txt.
#
# Here (a Debian machine with network), once: bench/gpu_check.sh --fetch-debs
# downloads the packages into .debs/ (git-ignored); name .debs in the
# device call's carry.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

DEBS=(libcjson1 libcjson-dev libopenblas0 libopenblas0-pthread libopenblas-dev
      libopenblas-pthread-dev libgfortran5 libquadmath0 libkissfft-float131
      libkissfft-dev libcmocka0 libcmocka-dev pkgconf pkgconf-bin libpkgconf3
      libsndfile1 libsndfile1-dev libflac12 libmp3lame0 libmpg123-0 libogg0
      libopus0 libvorbis0a libvorbisenc2 libsoxr0 libsoxr-dev libgomp1
      libwebsockets17 libwebsockets-dev libopus-dev libcap2 libcap-dev libssl-dev
      libssl3  # libssl-dev's libssl.so points at it; demixd links OpenSSL
      libev4 libev-dev libwebsockets-evlib-ev)  # demixd --event-loop epoll

if [ "${1:-}" = "--fetch-debs" ]; then
  mkdir -p .debs && cd .debs && exec apt-get download "${DEBS[@]}"
fi

STAGES=build,test,bench,torch,table
if [ "${1:-}" = "--stages" ]; then
  STAGES=$2
  shift 2
fi
OUTDIR=${1:-${OUT:-$ROOT/bench/results/latest}}
mkdir -p "$OUTDIR"
has() { [[ ",$STAGES," == *",$1,"* ]]; }
say() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }

# ---- 1. dependencies into a prefix ----------------------------------------
P=/tmp/demix-prefix
LIBDIRS=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread:$P/lib/x86_64-linux-gnu
if has build || has test || has bench; then
  say "deps: $(find .debs -maxdepth 1 -name '*.deb' 2>/dev/null | wc -l) carried packages -> $P"
  mkdir -p "$P"
  for f in .debs/*.deb; do dpkg -x "$f" "$P"; done
  # .pc files say /usr: point them into the prefix. Their Requires name
  # .pc files we do not carry (needed for static links only, or already
  # satisfied by the libraries' own NEEDED entries).
  # lws dlopens its libev plugin from the folder it was built for only
  # (LWS_INSTALL_LIBDIR); without it demixd runs on poll() and says so
  plugin=$P/usr/lib/x86_64-linux-gnu/libwebsockets-evlib_ev.so
  if [ -f "$plugin" ] && [ -w /usr/lib/x86_64-linux-gnu ]; then
    cp "$plugin" /usr/lib/x86_64-linux-gnu/
  fi
  find "$P" -name '*.pc' -print0 | xargs -0 -r sed -i \
    -e "s|=/usr\$|=$P/usr|" -e "s|=\"/usr\"|=\"$P/usr\"|" \
    -e "s|/usr/|$P/usr/|g" -e '/^Requires/d'
fi
export PKG_CONFIG_PATH=$P/usr/lib/x86_64-linux-gnu/pkgconfig:$P/usr/lib/x86_64-linux-gnu/openblas-pthread/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
PKGCONF=$(command -v pkg-config || echo "$P/usr/bin/pkgconf")
# The carried libraries for our programs only (not for PyTorch's python).
with_libs() { LD_LIBRARY_PATH=$LIBDIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$@"; }

# ---- 2. build ---------------------------------------------------------------
B=${BUILD_DIR:-$ROOT/build-dev}
if has build; then
  say "build"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUTDIR/device.txt"
  # (lws's header wants <sys/capability.h> and OpenSSL's headers, whose
  # arch part lives in include/x86_64-linux-gnu)
  with_libs cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="-isystem $P/usr/include/x86_64-linux-gnu" \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DDEMIX_CUDA=ON \
    -DPKG_CONFIG_EXECUTABLE="$PKGCONF" -DCMAKE_PREFIX_PATH="$P/usr" \
    >"$OUTDIR/build.txt" 2>&1 || { tail -40 "$OUTDIR/build.txt"; exit 1; }
  # every GPU test (tests/gpu/test_*.c -> gpu_test_*), so that ctest -L gpu
  # finds them all
  gpu_tests=()
  for f in tests/gpu/test_*.c; do
    f=${f##*/}
    gpu_tests+=("gpu_${f%.c}")
  done
  with_libs cmake --build "$B" -j"$(nproc)" --target "${gpu_tests[@]}" \
    demix_gpu_bench >>"$OUTDIR/build.txt" 2>&1 || { grep -B2 -A20 -m3 'error' "$OUTDIR/build.txt"; tail -20 "$OUTDIR/build.txt"; exit 1; }
  with_libs cmake --build "$B" -j"$(nproc)" --target demix demixd >>"$OUTDIR/build.txt" 2>&1 \
    || echo "# demix or demixd did not build; their stages are skipped"
  grep -i -E 'warning' "$OUTDIR/build.txt" | grep -v -i 'ptxas info' | head -20
  echo "build ok"
fi

# ---- 3. gpu tests -------------------------------------------------------------
if has test; then
  say "gpu tests"
  (cd "$B" && with_libs timeout 200 ctest -L gpu -V --timeout 200) 2>&1 \
    | grep -v '^[0-9]*: *$' | tee "$OUTDIR/tests.txt" \
    | grep -E '^[0-9]+: (#|\[ *(OK|FAILED|SKIPPED|PASSED|RUN) *\])|tests passed|tests failed|Error|error' \
    | sed -E 's/^[0-9]+: //' | grep -v '^\[ RUN'
fi

# ---- 4. CUDA sweep ------------------------------------------------------------
if has bench; then
  say "cuda sweep"
  {
    with_libs timeout 150 "$B/gpu/demix_gpu_bench" --ceilings --gemm-shapes --largest --pipelined
    with_libs timeout 40 "$B/gpu/demix_gpu_bench" --pageable --sizes 1,16,256,1024,4096
    with_libs timeout 40 "$B/gpu/demix_gpu_bench" --precision fp32 --sizes 1,16,256,1024,4096
    # the per-op profile
    with_libs timeout 40 "$B/gpu/demix_gpu_bench" --profile --sizes 1,16,256,1024,4096 --iters 50
    # which cuBLAS kernels the products get (names and device times);
    # opt-in (GPU_CHECK_NCU=1): ncu adds about a minute
    NCU=$(command -v ncu || find /opt/nvidia/nsight-compute -mindepth 2 -maxdepth 2 -name ncu 2>/dev/null | sort | head -1)
    if [ -n "$NCU" ] && [ "${GPU_CHECK_NCU:-0}" = 1 ]; then
      with_libs timeout 90 "$NCU" --clock-control none --csv \
        --metrics gpu__time_duration.sum "$B/gpu/demix_gpu_bench" \
        --gemm-shapes --shape-reps 1 --sizes 0 >"$OUTDIR/ncu.txt" 2>&1 \
        || echo "# ncu failed (rc $?)"
      echo "# ncu: $(grep -c gpu__time_duration "$OUTDIR/ncu.txt") kernels in ncu.txt"
    fi
    if [ -x "$B/tools/demix" ]; then
      for mode in "" --pipelined; do
        echo "# demix bench --backend cuda $mode"
        with_libs timeout 45 "$B/tools/demix" bench --backend cuda $mode \
          --streams 1,16,64,256,1024,4096 --seconds 1 2>&1 | sed 's/^/# demix: /'
      done
    fi
  } 2>&1 | tee "$OUTDIR/bench.txt" | grep -E '^(RESULT|CEILING|FLOOR|PROFILE|GEMM|# (device|demix))'
fi

# ---- 5. PyTorch baseline ------------------------------------------------------
if has torch; then
  say "pytorch baseline"
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/torch_baseline.py 2>&1 \
    | tee "$OUTDIR/torch.txt" | grep -E '^(RESULT|#)'
fi

# ---- 7. the whole server under load (opt-in) ----------------------------------
# Rounds of live sessions (bench/server_capacity.py: demixd and demix loadgen
# pinned to halves of the CPUs, 15 s a round) against demixd with the
# shipped model: SERVER_BACKEND (default cuda), PCM16 and Opus, with one
# service thread and with the default (one per CPU of its half but one);
# SESSIONS_PCM / SESSIONS_OPUS set the rounds.
if [[ ",$STAGES," == *",server,"* ]] && [ -x "$B/server/demixd" ] && [ -x "$B/tools/demix" ]; then
  say "server under load"
  half=$(( $(nproc) / 2 ))
  {
    for codec in pcm16 opus; do
      sessions=${SESSIONS_PCM:-500,1000,2000,4000}
      [ "$codec" = opus ] && sessions=${SESSIONS_OPUS:-250,500,1000}
      for st in 1 default; do
        args=""
        [ "$st" = 1 ] && args="--service-threads 1"
        echo "# demixd --service-threads $st, loadgen --codec $codec"
        with_libs python3 bench/server_capacity.py --build "$B" \
          --backend "${SERVER_BACKEND:-cuda}" --codec "$codec" \
          --sessions "$sessions" --seconds 15 \
          --server-cpus "0-$((half - 1))" --client-cpus "$half-$(( $(nproc) - 1 ))" \
          --demixd-args "$args" --out "/tmp/server-$codec-$st" 2>&1 | grep -v '^{'
      done
    done
  } 2>&1 | tee "$OUTDIR/server.txt" | grep -E '^(#|largest|\|)'
fi

# ---- 6. one table ---------------------------------------------------------------
if has table; then
  say "table"
  python3 - "$OUTDIR" <<'PY' | tee "$OUTDIR/table.txt"
import os, re, sys
d = sys.argv[1]
def read(name):
    p = os.path.join(d, name)
    return open(p).read().splitlines() if os.path.exists(p) else []
lines = read("bench.txt") + read("torch.txt")
kv = lambda s: dict(re.findall(r"(\w+)=([^\s]+)", s))
ceil, floor, rows = {}, {}, []
for l in lines:
    if l.startswith("CEILING"):
        ceil.update({k: float(v) for k, v in kv(l).items()})
    elif l.startswith("FLOOR"):
        floor.update({k: float(v) for k, v in kv(l).items()})
    elif l.startswith("RESULT"):
        rows.append(kv(l))
def get(**want):
    for r in rows:
        if all(r.get(k) == str(v) for k, v in want.items()):
            return r
    return None
for l in lines:
    if l.startswith("# device") or l.startswith("# torch"):
        print(l)
for k, v in ceil.items():
    print(f"ceiling {k} = {v:g}")
hop_ms = 512 / 44100 * 1e3
sizes = sorted({int(r["B"]) for r in rows if r.get("engine") == "cuda"})
hdr = ("B", "cuda ms med", "p99", "graph ms", "streams@rt", "dev GiB",
       "pipelined", "p99", "streams@rt", "pageable", "fp32", "torch eager",
       "torch graph", "xeager", "xgraph", "xgraph pipe", "floor dev",
       "floor step", "x floor", "floor pipe", "x floor pipe")
print("\nfast mode (bf16 products, f32 state); ms per step incl. host<->device "
      "copies of all B hops; pinned host buffers unless noted")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
f = lambda x, p=3: "-" if x is None else f"{x:.{p}f}"
for B in sizes:
    c = get(engine="cuda", precision="fast", host="pinned", B=B)
    if not c:
        continue
    pg = get(engine="cuda", precision="fast", host="pageable", B=B)
    pl = get(engine="cuda", precision="fast", host="pipelined", B=B)
    fp = get(engine="cuda", precision="fp32", host="pinned", B=B)
    te = get(engine="torch", mode="eager", B=B)
    tg = get(engine="torch", mode="graph", B=B)
    med = float(c["median_ms"])
    wbytes = floor.get("weight_MB_bf16", 0) * 1e6
    bw = ceil.get("d2d_copy_GBps", 0) * 1e9
    tc = ceil.get("bf16_TFLOPs", 0) * 1e12
    fdev = max(wbytes / bw if bw else 0,
               B * floor.get("flops_per_row", 0) / tc if tc else 0) * 1e3
    io = B * (4096 / (ceil.get("h2d_GBps", 1) * 1e9) +
              16384 / (ceil.get("d2h_GBps", 1) * 1e9)) * 1e3
    fstep = fdev + io
    fpipe = max(fdev, B * 16384 / (ceil.get("d2h_GBps", 1) * 1e9) * 1e3,
                B * 4096 / (ceil.get("h2d_GBps", 1) * 1e9) * 1e3)
    pm = float(pl["median_ms"]) if pl else None
    cells = [str(B), f(med), f(float(c["p99_ms"])), f(float(c["graph_ms"])) if float(c["graph_ms"]) > 0 else "-",
             f"{B * hop_ms / med:.0f}", c["device_GiB"],
             f(pm), f(float(pl["p99_ms"])) if pl else "-",
             f"{B * hop_ms / pm:.0f}" if pm else "-",
             f(float(pg["median_ms"])) if pg else "-",
             f(float(fp["median_ms"])) if fp else "-",
             f(float(te["median_ms"])) if te else "-",
             f(float(tg["median_ms"])) if tg else "-",
             f"{float(te['median_ms']) / med:.1f}" if te else "-",
             f"{float(tg['median_ms']) / med:.1f}" if tg else "-",
             f"{float(tg['median_ms']) / pm:.1f}" if tg and pm else "-",
             f(fdev), f(fstep), f"{med / fstep:.1f}" if fstep else "-",
             f(fpipe), f"{pm / fpipe:.1f}" if pm and fpipe else "-"]
    print("| " + " | ".join(cells) + " |")
print("\nfloor dev = max(bf16 weight bytes / device copy rate, B x FLOPs / "
      "cuBLAS bf16 rate); floor step = floor dev + B x (4 KiB up / h2d rate "
      "+ 16 KiB down / d2h rate); x floor = measured / floor step")
print("pipelined: submit/collect, 2 steps in flight, interval between collects; "
      "floor pipe = max(floor dev, B x 16 KiB / d2h rate, B x 4 KiB / h2d rate)")
print("xeager, xgraph = PyTorch ms / CUDA engine ms (same B, same device call); "
      "xgraph pipe = PyTorch graph ms / pipelined ms")
PY
fi
