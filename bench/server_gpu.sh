#!/usr/bin/env bash
# bench/server_gpu.sh - demixd's live capacity on the GPU machine, in as few
# device calls as possible (device time is short):
#
#   bench/server_gpu.sh build
#       unpack the carried Debian packages (.debs/, see bench/gpu_check.sh
#       --fetch-debs) and build demix + demixd with CUDA into build-dev/
#       (bench/gpu_check.sh's build stage); when .carry/base holds an older
#       tree (git archive of the baseline commit: CMakeLists.txt server
#       engine cpu gpu protocol tools bench), build its demixd too, into
#       /tmp/base-build, so that the baseline is measured on the same
#       machine in the same lease.
#   bench/server_gpu.sh plan [ARGS...]
#       the lease's whole measurement: 15 s rounds of PCM16 and Opus
#       (--opus-complexity 0), the baseline and one service thread beside
#       them, then 60 s at the largest count that held for each codec.
#   bench/server_gpu.sh cap LABEL CODEC SESSIONS SECONDS [ARGS...]
#       bench/server_capacity.py against demixd of build-dev (LABEL new) or
#       of the baseline (LABEL base), shipped model, CUDA; ARGS go to
#       server_capacity.py (e.g. --server-cpus 0-9 --client-cpus 10-15
#       --clients 6 --demixd-args "--service-threads 9"). Results in
#       $OUT/cap-LABEL-CODEC/ (rounds.jsonl, table.txt) and on stdout.
#
# Usage on the device: `bench/server_gpu.sh build && bench/server_gpu.sh cap
# new pcm16 1000,2000 15 --clients 6 ...`, carrying .debs and .carry.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
P=/tmp/demix-prefix
LIBDIRS=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread:$P/lib/x86_64-linux-gnu
OUTDIR=${OUT:-/tmp/server-gpu}
mkdir -p "$OUTDIR"

case "${1:-}" in
build)
  bench/gpu_check.sh --stages build /tmp/gpu-check || exit 1
  if [ -f .carry/base/CMakeLists.txt ] && [ ! -x /tmp/base-build/server/demixd ]; then
    echo "=== baseline build ($(date +%T))"
    bench/build_baseline.sh .carry/base /tmp/base-build demixd
  fi
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  nproc
  # threads per core: whether demixd's and loadgen's CPUs share physical
  # cores (per-CPU figures of two hyperthreads are not those of two cores)
  lscpu | grep -E 'Model name|Thread\(s\) per core|Core\(s\) per socket|Socket\(s\)|MHz'
  lscpu -e=CPU,CORE,SOCKET | tr '\n' ';'; echo
  ;;
cap)
  label=$2 codec=$3 sessions=$4 seconds=$5
  shift 5
  demixd=$ROOT/build-dev/server/demixd
  [ "$label" = base ] && demixd=/tmp/base-build/server/demixd
  [ -x "$demixd" ] || { echo "# $demixd is not built: skipping $label"; exit 0; }
  ulimit -n "$(ulimit -Hn)"
  LD_LIBRARY_PATH=$LIBDIRS python3 bench/server_capacity.py \
    --build build-dev --demixd "$demixd" --backend "${BACKEND:-cuda}" \
    --model "${MODEL:-models/default.safetensors}" --codec "$codec" \
    --sessions "$sessions" --seconds "$seconds" \
    --out "$OUTDIR/cap-$label-$codec" "$@"
  ;;
plan)
  # The whole capacity measurement of one lease (about 9 minutes): 15 s
  # rounds up the lists (each codec stops at its first round that does
  # not hold), the baseline and one service thread beside them, then 60 s
  # at the largest count that held for each codec.
  shift
  # PARTS: which of pcm16,opus,base,one,hold,soak,loops to run (default
  # all but soak and loops)
  parts=",${PARTS:-pcm16,opus,base,one,hold},"
  cpus=(--server-cpus "${SERVER_CPUS:-0-9}" --client-cpus "${CLIENT_CPUS:-10-15}"
        --loadgen-args "--threads ${CLIENT_THREADS:-6}")
  [[ $parts == *,pcm16,* ]] &&
    "$0" cap new pcm16 "${PCM:-1000,2000,3000,4000,6000}" 15 "${cpus[@]}" "$@" | grep -v '^{'
  ocpus=(--server-cpus "${OPUS_SERVER_CPUS:-0-12}" --client-cpus "${OPUS_CLIENT_CPUS:-13-15}"
         --loadgen-args "--threads ${OPUS_CLIENT_THREADS:-3}")
  [[ $parts == *,opus,* ]] &&
    "$0" cap new opus "${OPUS:-250,500,750,1000}" 15 "${ocpus[@]}" \
    --demixd-args "--opus-complexity ${OPUS_COMPLEXITY:-0}" "$@" | grep -v '^{'
  [[ $parts == *,base,* ]] &&
    "$0" cap base pcm16 "${BASE:-100,200}" 15 "${cpus[@]}" --keep-going "$@" | grep -v '^{'
  [[ $parts == *,one,* ]] &&
    "$0" cap one pcm16 "${ONE:-500,1000}" 15 "${cpus[@]}" --keep-going \
    --demixd-args "--service-threads 1" "$@" | grep -v '^{'
  # loops (not in the default PARTS): demixd --event-loop poll against
  # the default epoll, alternating, 15 s rounds of LOOPS_N PCM16 sessions
  # (default 2000,2500,3000) and LOOPS_OPUS Opus sessions (default 500,625)
  if [[ $parts == *,loops,* ]]; then
    for n in ${LOOPS_N:-2000 2500 3000}; do
      for loop in poll epoll; do
        "$0" cap "new-$loop" pcm16 "$n" 15 "${cpus[@]}" --keep-going \
          --demixd-args "--event-loop $loop" "$@" | grep '^| pcm16'
      done
    done
    for n in ${LOOPS_OPUS:-500 625}; do
      for loop in poll epoll; do
        "$0" cap "new-$loop" opus "$n" 15 "${ocpus[@]}" --keep-going \
          --demixd-args "--opus-complexity ${OPUS_COMPLEXITY:-0} --event-loop $loop" \
          "$@" | grep '^| opus'
      done
    done
  fi
  # soak (not in the default PARTS): SOAK_N PCM16 sessions for SOAK_S
  # seconds, SOAK_CHAOS of them misbehaving (demix loadgen --chaos), 1 %
  # of the good ones compared with a clean reference session; rounds.jsonl
  # keeps the chaos verdicts and demixd's resident size every 10 s
  [[ $parts == *,soak,* ]] &&
    "$0" cap soak pcm16 "${SOAK_N:-1000}" "${SOAK_S:-420}" "${cpus[@]}" \
    --loadgen-args "--threads ${CLIENT_THREADS:-6} --chaos ${SOAK_CHAOS:-0.25} --verify 0.01" \
    "$@" | grep -v '^{'
  for codec in pcm16 opus; do
    [[ $parts == *,hold,* ]] || continue
    [ -f "$OUTDIR/cap-new-$codec/rounds.jsonl" ] || continue
    n=$(python3 - "$OUTDIR/cap-new-$codec/rounds.jsonl" <<'PY'
import json, sys
held = [json.loads(l)["sessions"] for l in open(sys.argv[1]) if json.loads(l).get("held")]
print(max(held) if held else 0)
PY
)
    [ "$n" -gt 0 ] || continue
    if [ "$codec" = opus ]; then
      "$0" cap hold60 opus "$n" 60 "${ocpus[@]}" \
        --demixd-args "--opus-complexity ${OPUS_COMPLEXITY:-0}" "$@" | grep -v '^{'
    else
      "$0" cap hold60 pcm16 "$n" 60 "${cpus[@]}" "$@" | grep -v '^{'
    fi
  done
  ;;
*)
  sed -n '2,22p' "$0"
  exit 2
  ;;
esac
