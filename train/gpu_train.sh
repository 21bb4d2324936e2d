#!/usr/bin/env bash
# train/gpu_train.sh - training on the lent GPU machine, in stages that fit
# its limits (starts bare, 64 MiB carried per call, 10 min per command,
# 30 min held; a setsid process outlives the call that starts it):
#
#   fetch     (here) gather what a session carries: the real Opus stems
#             (../shared/data, and .carry/lmms and .carry/teacher where
#             train/lmms_render.py and train/teacher_stems.py made them),
#             the libopusfile .debs and, unless SYNTH=0, the synthetic-
#             render kit (train/synth/kit.py: fluidsynth and its libraries,
#             five soundfonts subset to what the renderer plays, the MIDI
#             archives) into one tar, cut into parts that each fit one call
#             beside the tree: .carry/calls/K/ for call K (it prints how
#             many: 22 MiB each beside a 40 MiB tree)
#   stash     copy this call's part to $PARTS; once all parts are there,
#             check the sum and unpack into $STAGE (real/, debs/, kit/)
#   render H  render H hours of synthetic songs on all cores into
#             $DATA/synth.{npy,json} (train/synth/render.py; seed $SEED,
#             else the shipped model's step count: new songs each session)
#   prepare   unpack the carried libopusfile and decode every real set in
#             $STAGE/real into packed int16 sets in $DATA (audio_data.py)
#   smoke     30 training steps, a validation on 2 tracks, an export, a
#             float64 check that the exported file streams exactly as the
#             offline form computes (reference.stream), and unless BATCH
#             is set a probe of the step time at batch 64, 128, 256 (the
#             fastest goes to start)
#   start M   start train.py for M minutes with setsid, continuing from
#             models/$NAME.safetensors and its .train.jsonl when they exist
#             (batches: --synth-weight 0.3 synthetic, the rest real);
#             TRAIN_ARGS adds train.py options, e.g. TRAIN_ARGS="--cross
#             0.3 --sets musdb18-7s-train:0.4,...,teacher:0.1" (smoke
#             takes them too)
#   status    the tail of the running log
#   collect   wait for the run to end (at most $WAIT s), then copy the model
#             (in 15 MB parts: $OUT returns files of at most 16 MiB), the
#             log and the curve figure to $OUT
#   cudacheck while the run trains (niced; the GPU is shared for a few
#             minutes): build the CUDA engine and demix with the carried
#             .debs (bench/gpu_check.sh build,test: the CUDA-vs-CPU parity
#             tests), write the validation split as a `demix eval` set
#             and evaluate models/$NAME.safetensors on it with the CUDA
#             and the CPU engines (evalcuda)
#             (with SERVER=1 also bench/gpu_check.sh's server stage: demixd
#             on the GPU under demix loadgen, PCM and Opus, codec threads
#             1 and 8, about 4 minutes; it shares the GPU with the run)
#   evalcuda  `demix eval --backend cuda` and `--backend cpu` of the run's
#             model.safetensors (after collect) or else the shipped file
#   golden    the golden file of the run's model (make_golden.py, float64)
#   pack      everything in $OUT but the model's parts and the curve into
#             small.tar ($OUT returns at most 8 files)
#
# The machine is given back 30 s after a call ends, and the setsid run with
# it: keep a call in flight (status after a sleep, then collect) for the
# whole run. The tree itself is 40 MiB (the shipped model); the bundle
# was 92 MiB (real stems 43 MB, kit 52 MB: 4 calls) before the lmms (60 MB)
# and teacher (about 1.2 MB a minute) sets; with them, SYNTH=0 leaves the
# kit out (and the render stage with it) to keep the calls few, and the
# last data call runs `stash prepare smoke start M`. One session (30 min
# of device time), as first planned:
#   calls 1-3, carry .carry/calls/K:                               stash
#   call 4, carry .carry/calls/4:             stash render 3 prepare
#   call 5:                                   smoke start M
#   call 6, carry .debs (bench/gpu_check.sh --fetch-debs):   cudacheck
#   calls:  sleep 500; status ... then WAIT=560 collect evalcuda
# with M about 15 minutes. Expected (not yet measured there): calls 1-3
# about 1.5 minutes of device time with the machine's start; render 3 h
# 3-4 minutes on 16 cores (0.25-0.29 CPU-s per second of audio here),
# prepare 0.5, smoke 1.5; render writes 8.3 GB to /tmp and the set takes
# 8.3 GB of GPU memory. (2026-12-02, before the renders: the data calls,
# prepare and smoke took 3.5 minutes with the start, cudacheck 1.5 beside
# the run, collect and evalcuda 1 after it.) If call 4 nears its 10
# minutes, render fewer hours. Measured 2026-12-07 on an H200 (teacher
# set, renders, no LMMS: LOCAL_SETS=teacher, 225 MiB in 11 calls): each
# warm stash call 5 s; render 3 h 270 s (0.39 CPU-s per second of audio);
# prepare 35 s; smoke 40 s; then 16 minutes of training at 0.56-0.60
# s/step; collect, evalcuda, golden and pack 40 s after the run. With the
# first call's start that was 25 of the 30 minutes (3 more went to a
# failed start). The next session continues from
# models/$NAME.safetensors (float16 weights, optimiser re-warmed) and
# appends to models/$NAME.train.jsonl.
#
# Usage: train/gpu_train.sh STAGE [ARG] [STAGE [ARG]...]
# Here, once per session: train/gpu_train.sh fetch, then train/preflight.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NAME=${NAME:-hstasnet-d256-48k}
DATA=${DATA:-/tmp/demix-data}
STAGE=${STAGE:-/tmp/demix-stage}  # the carried bundle, unpacked
SRC=$STAGE/real                   # Opus stems: <set>/<track>/<source>.opus
KIT=${KIT:-$STAGE/kit}            # train/synth/kit.py's kit
PARTS=${PARTS:-/tmp/demix-parts}  # bundle parts gathered over the calls
RUN=${RUN:-/tmp/demix-run}
PREFIX=/tmp/opus-prefix
LIMIT=$((64 * 1024 * 1024))       # what one call carries, the tree included
export PYTHONUNBUFFERED=1
export DEMIX_OPUSFILE=$PREFIX/usr/lib/x86_64-linux-gnu/libopusfile.so.0
export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

say() { printf '=== %s (%s)\n' "$*" "$(date +%T)"; }

fetch() {
  # Here: everything the session carries, as one tar stream cut into parts
  # that each fit one call beside the tree (.carry/calls/K/bundle.K-1).
  local stage=.carry/stage
  rm -rf "$stage" .carry/calls
  mkdir -p "$stage/debs" "$stage/real"
  (cd "$stage/debs" && apt-get download libopusfile0 libopus0 libogg0)
  cp -r ../shared/data/musdb18-7s-train ../shared/data/everything-is-remixed \
    "$stage/real/"
  # sets made here, where their scripts made them: the LMMS demo projects'
  # stems and the teacher's pseudo-stems of Debian game music; LOCAL_SETS
  # names those to carry (default both), to keep a session's calls few
  local set made
  for set in lmms:train/lmms_render.py teacher:train/teacher_stems.py; do
    made=${set#*:}; set=${set%%:*}
    if [[ " ${LOCAL_SETS-lmms teacher} " != *" $set "* ]]; then
      echo "fetch: .carry/$set left out (LOCAL_SETS)"
    elif [ -d ".carry/$set" ]; then
      mkdir -p "$stage/real/$set"
      cp -r ".carry/$set"/*/ "$stage/real/$set/"
    else
      echo "fetch: no .carry/$set ($made --out .carry/$set): the set stays out"
    fi
  done
  # SYNTH=0: no synthetic-render kit (52 MB, three calls' worth) and no
  # render stage this session
  if [ "${SYNTH:-1}" != 0 ]; then
    python3 train/synth/kit.py "$stage/kit" --cache .carry/debcache
  fi
  local tree part total n k sum
  tree=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- |
    tail -1 | cut -f1)
  # spare: for files that appear in the tree before the calls
  part=$((LIMIT - tree - ${SPARE_KIB:-512} * 1024))
  tar -C "$stage" -cf .carry/bundle.tar .
  total=$(stat -c %s .carry/bundle.tar)
  sum=$(sha256sum .carry/bundle.tar | cut -d' ' -f1)
  n=$(((total + part - 1) / part))
  mkdir -p .carry/calls
  # three-digit suffixes (a bundle of 290 MB is 13 parts), renamed to
  # bundle.K-1 as stash reads them
  split -b "$part" -d -a 3 .carry/bundle.tar .carry/calls/bundle.
  for ((k = 0; k < n; k++)); do
    mkdir -p ".carry/calls/$((k + 1))"
    mv ".carry/calls/bundle.$(printf %03d "$k")" \
      ".carry/calls/$((k + 1))/bundle.$k"
    printf 'parts %d\nsha256 %s\n' "$n" "$sum" >".carry/calls/$((k + 1))/bundle.txt"
  done
  rm .carry/bundle.tar
  du -sh "$stage"/* .carry/calls/*
  echo "fetch: tree $((tree / 1048576)) MiB, bundle $((total / 1048576)) MiB" \
    "in $n parts of at most $((part / 1048576)) MiB: call K = 1..$n carries" \
    ".carry/calls/K and runs stash"
}

stash() {
  # the carried bundle parts, over several calls, gathered outside the tree
  # (/tmp survives between calls while the machine is held); unpacked into
  # $STAGE once all are there
  say stash
  mkdir -p "$PARTS"
  local d n have sum k
  for d in .carry/calls/*/; do
    [ -d "$d" ] && cp "$d"bundle.* "$PARTS/"
  done
  [ -f "$PARTS/bundle.txt" ] || { echo "stash: no bundle part carried"; return 1; }
  if [ -d "$SRC" ]; then echo "stash: already unpacked in $STAGE"; return; fi
  n=$(awk '/^parts/ {print $2}' "$PARTS/bundle.txt")
  have=$(find "$PARTS" -name 'bundle.[0-9]*' | wc -l)
  if [ "$have" -lt "$n" ]; then echo "stash: $have of $n parts"; return; fi
  for ((k = 0; k < n; k++)); do cat "$PARTS/bundle.$k"; done >"$PARTS/bundle.tar"
  sum=$(sha256sum "$PARTS/bundle.tar" | cut -d' ' -f1)
  if [ "$sum" != "$(awk '/^sha256/ {print $2}' "$PARTS/bundle.txt")" ]; then
    echo "stash: the $n parts do not add up to the bundle fetch made"; return 1
  fi
  mkdir -p "$STAGE"
  tar -C "$STAGE" -xf "$PARTS/bundle.tar"
  rm -f "$PARTS"/bundle.[0-9]* "$PARTS/bundle.tar"
  du -sh "$STAGE"/*
}

render() {
  # $1 hours of synthetic songs into $DATA/synth.{npy,json}, on every core.
  # Seed: $SEED, else the shipped model's step count, so that each session
  # renders new songs and the set's JSON says which.
  local hours=$1 seed=${SEED:-}
  say "render $hours h"
  if [ -f "$DATA/synth.npy" ]; then echo "render: $DATA/synth.npy exists"; return; fi
  if [ ! -d "$KIT" ]; then echo "render: no kit carried (fetch with SYNTH=0)"; return; fi
  if [ -z "$seed" ] && [ -f "models/$NAME.safetensors" ]; then
    seed=$(python3 -c 'import sys; sys.path.insert(0, "train")
from reference import load_safetensors
print(load_safetensors(sys.argv[1])[1].get("training_steps", 0))' \
      "models/$NAME.safetensors")
  fi
  # processes: $JOBS, else the cores, at most the lent machine's 16 (a
  # sandbox may report the host's)
  local jobs=${JOBS:-$(nproc)}
  [ "$jobs" -gt 16 ] && [ -z "${JOBS:-}" ] && jobs=16
  python3 train/synth/kit.py "$KIT" --unpack
  mkdir -p "$DATA"
  python3 train/synth/render.py --pack "$DATA/synth" --hours "$hours" \
    --seed "${seed:-0}" --kit "$KIT" --jobs "$jobs"
  df -h "$DATA" | tail -1
}

prepare() {
  say prepare
  for f in "$STAGE"/debs/*.deb; do dpkg -x "$f" $PREFIX; done
  mkdir -p "$DATA"
  local set
  for set in "$SRC"/*; do
    [ -d "$set" ] || continue
    local name; name=$(basename "$set")
    if [ -f "$DATA/$name.npy" ]; then echo "$name: already packed"; continue; fi
    python3 train/audio_data.py "$set" "$DATA/$name" 16
  done
  ls -la "$DATA"
}

# The --init/--history options of train.py when a shipped model exists, in
# the array INIT_ARGS (empty otherwise), and $TRAIN_ARGS split into the
# array EXTRA_ARGS.
init_args() {
  read -r -a EXTRA_ARGS <<<"${TRAIN_ARGS:-}"
  INIT_ARGS=()
  if [ -f "models/$NAME.safetensors" ]; then
    INIT_ARGS=(--init "models/$NAME.safetensors" --history "models/$NAME.train.jsonl")
  fi
}

smoke() {
  say smoke
  init_args
  rm -rf /tmp/demix-smoke
  python3 train/train.py --data "$DATA" --out /tmp/demix-smoke \
    --max-steps 30 --val-tracks 2 --minutes 5 "${INIT_ARGS[@]}" \
    "${EXTRA_ARGS[@]}"
  mkdir -p "$RUN"
  # the batch probe (BATCH=N skips it: 128 was the fastest within the
  # step-time limit on 2026-12-02 and nothing since changed the step)
  if [ -z "${BATCH:-}" ]; then
    python3 train/train.py --data "$DATA" --out "$RUN" \
      --probe-batches 64,128,256 "${INIT_ARGS[@]}"
  fi
  python3 - <<'EOF'
import sys, torch
sys.path.insert(0, "train")
from reference import HSTasNet, stream, load_safetensors
m = HSTasNet.from_safetensors("/tmp/demix-smoke/model.safetensors").double()
_, meta = load_safetensors("/tmp/demix-smoke/model.safetensors")
x = torch.randn(2, 512 * 12, dtype=torch.float64) * 0.1
off = m(x[None])[0]
st = stream(m, x)
# streaming output k covers input hop k-1: shift by one hop (model-spec.md)
H = m.hop
err = (st[..., H:] - off[..., :-H]).abs().max().item()
print("export metadata:", {k: meta[k] for k in sorted(meta)})
print(f"stream vs offline, float64, exported weights: max |err| = {err:.3e}")
assert err < 1e-9, err
EOF
}

start() {
  local minutes=$1
  say "start $minutes min"
  mkdir -p "$RUN"
  # batch: $BATCH, else what the smoke stage's probe found fastest
  local batch=${BATCH:-$(cat "$RUN/batch" 2>/dev/null || echo 64)}
  # peak learning rate: $LR, else 2e-4 when continuing from a shipped file
  # (the second run re-warmed to train.py's 5e-4 and fell from 2.89 to
  # 2.64 dB before climbing back; a 1e-4 run after it gained 0.11 dB in
  # 3 minutes), train.py's default for a fresh model
  local lr=${LR:-}
  [ -z "$lr" ] && [ -f "models/$NAME.safetensors" ] && lr=2e-4
  echo "batch $batch, lr ${lr:-default}"
  init_args
  setsid nohup python3 train/train.py --data "$DATA" --out "$RUN" \
    --minutes "$minutes" --batch "$batch" ${lr:+--lr "$lr"} "${INIT_ARGS[@]}" \
    "${EXTRA_ARGS[@]}" >"$RUN/train.log" 2>&1 </dev/null &
  sleep 45
  tail -n 20 "$RUN/train.log"
}

status() { tail -n 30 "$RUN/train.log"; }

cudacheck() {
  say cudacheck
  local out=${OUT:-$ROOT/.carry/out}
  mkdir -p "$out/gpucheck"
  nice -n 10 bench/gpu_check.sh --stages build,test${SERVER:+,server} \
    "$out/gpucheck" || true
  python3 train/make_eval_set.py "$SRC" /tmp/evalset
  evalcuda
}

evalcuda() {
  say evalcuda
  local out=${OUT:-$ROOT/.carry/out} model=models/$NAME.safetensors
  [ -f "$RUN/collected" ] && model=$RUN/model.safetensors
  local demix=$ROOT/build-dev/tools/demix P=/tmp/demix-prefix
  [ -x "$demix" ] || { echo "evalcuda: no $demix (run cudacheck)"; return; }
  local libs=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread:$P/lib/x86_64-linux-gnu
  local tag; tag=$(basename "$(dirname "$model")")
  for be in cuda cpu; do
    echo "# demix eval --backend $be --model $model"
    # the CPU run in fp32, the reference (its default is bf16 on CPUs with
    # AVX512-BF16); CUDA in its default fast mode
    local prec=(); [ "$be" = cpu ] && prec=(--precision fp32)
    LD_LIBRARY_PATH=$libs timeout 240 "$demix" eval --backend "$be" "${prec[@]}" \
      --threads 8 --model "$model" --json /tmp/evalset \
      >"$out/eval-$tag-$be.json" 2>>"$out/eval-$tag.err" \
      || { echo "rc $?"; tail -5 "$out/eval-$tag.err"; }
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["engine"][:60], {k: round(v, 4) for k, v in d["median"].items()},
      "mean", round(d["mean"], 4))' "$out/eval-$tag-$be.json" 2>&1 | tail -3
  done
}

collect() {
  say collect
  local wait=${WAIT:-560} t=0
  while ! grep -q '^.* done$' "$RUN/train.log" 2>/dev/null; do
    if [ $t -ge "$wait" ]; then echo "collect: still running"; break; fi
    sleep 10; t=$((t + 10))
  done
  tail -n 15 "$RUN/train.log"
  local out=${OUT:-$ROOT/.carry/out}
  mkdir -p "$out"
  cp "$RUN/model.safetensors" "$out/$NAME.safetensors"
  cp "$RUN/log.jsonl" "$out/$NAME.train.jsonl"
  cp "$RUN/train.log" "$out/train.log"
  python3 train/plot_curve.py "$RUN/log.jsonl" "$out/$NAME.curve.png" \
    "$NAME: validation SDR (10 MUSDB18 excerpts + 1 song)"
  # files come back from $OUT only up to 16 MiB each, and at most 8 of
  # them (collect's 5 and evalcuda's 3 fill that): split the model, print
  # the parts' sums; here: cat NAME.safetensors.part* > models/NAME.safetensors
  (cd "$out" && split -b 15000000 -d "$NAME.safetensors" \
     "$NAME.safetensors.part" && rm "$NAME.safetensors" &&
   sha256sum "$NAME".safetensors.part*)
  touch "$RUN/collected"
  ls -la "$out"
}

golden() {
  # the run's model's golden file (tests/golden/test_golden.c checks the
  # CPU engine against it; needed when the model is shipped), computed in
  # float64 by the PyTorch reference from the exported weights
  say golden
  local out=${OUT:-$ROOT/.carry/out} src=/tmp/demix-golden
  mkdir -p "$src" "$out"
  cp "$RUN/model.safetensors" "$src/$NAME.safetensors"
  python3 train/make_golden.py --model "$src/$NAME.safetensors" --hops 32 \
    --frames 2 --out "$src"
  cp "$src/${NAME}_golden.safetensors" "$out/"
}

pack() {
  # $OUT returns at most 8 files: all but the model's parts and the curve
  # go into one tar (here: tar -xf small.tar)
  say pack
  local out=${OUT:-$ROOT/.carry/out}
  (cd "$out" && find . -maxdepth 1 -type f ! -name '*.part*' ! -name '*.png' \
     ! -name small.tar -printf '%f\n' | tar -cf small.tar --remove-files -T - &&
   ls -la)
}

while [ $# -gt 0 ]; do
  stage=$1; shift
  case $stage in
    fetch|stash|prepare|smoke|status|collect|cudacheck|evalcuda|golden|pack) $stage ;;
    start|render) $stage "$1"; shift ;;
    *) echo "gpu_train.sh: unknown stage $stage" >&2; exit 2 ;;
  esac
done
