#!/usr/bin/env bash
# train/preflight.sh - the GPU machine's stages, run here on the CPU with a
# tiny network and a little data, before any device time is spent on them:
# packing (audio_data.py) and draw_batch's set mixing
# (test_audio_data.py), the synthetic render stage (gpu_train.sh render:
# the kit's own fluidsynth and libraries, a few short songs straight into
# the packed set), training steps on real and synthetic sets, validation
# (real tracks only), export, resume from the export, the batch probe, and
# the float64 stream-vs-offline check of the exported file. Minutes, not
# hours; no GPU.
#
# Needs (Debian): python3-torch python3-numpy libopusfile0, fluidsynth and
# sf3convert (kit.py), and the data in ../shared/data. The kit is the one
# `gpu_train.sh fetch` made (.carry/stage/kit), else built into WORKDIR.
# Usage: train/preflight.sh [WORKDIR]  (default /tmp/demix-preflight)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/demix-preflight}
PY=${PYTHON:-/usr/bin/python3}
rm -rf "$W" && mkdir -p "$W/src/everything-is-remixed" "$W/data"
# a little of each kind: 12 MUSDB excerpts (two of them validation) and
# one training plus the validation song of Everything is Remixed
mkdir -p "$W/src/musdb18-7s-train"
find ../shared/data/musdb18-7s-train -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | head -12 | while read -r t; do
  cp -r "../shared/data/musdb18-7s-train/$t" "$W/src/musdb18-7s-train/"
done
cp -r "../shared/data/musdb18-7s-train/Actions - Devil's Words" \
  "$W/src/musdb18-7s-train/"
cp -r ../shared/data/everything-is-remixed/{potassium,lithium,caesium} \
  "$W/src/everything-is-remixed/"
# two short LMMS demo projects (train/lmms_render.py): from .carry/lmms
# where that was rendered, else rendered now where lmms is installed
lmms_sample=(Greshz-CoolSnip "Crunk(Demo)")
if [ -d .carry/lmms/Greshz-CoolSnip ] && [ -d ".carry/lmms/Crunk(Demo)" ]; then
  mkdir -p "$W/src/lmms"
  for t in "${lmms_sample[@]}"; do cp -r ".carry/lmms/$t" "$W/src/lmms/"; done
elif command -v lmms >/dev/null && command -v opusenc >/dev/null; then
  $PY train/lmms_render.py --out "$W/src/lmms" --only "${lmms_sample[@]}"
else
  echo "preflight: no .carry/lmms and no lmms here: the lmms set is not exercised"
fi
# one track of the teacher's pseudo-stems (train/teacher_stems.py) where
# they were made
teacher_sample=$(find .carry/teacher -mindepth 1 -maxdepth 1 -type d \
  ! -name '*.tmp' 2>/dev/null | sort | head -1)
if [ -n "$teacher_sample" ]; then
  mkdir -p "$W/src/teacher" && cp -r "$teacher_sample" "$W/src/teacher/"
else
  echo "preflight: no .carry/teacher: the teacher set is not exercised"
fi
for set in "$W"/src/*; do
  $PY train/audio_data.py "$set" "$W/data/$(basename "$set")" 2
done
# the render stage as the GPU machine runs it, on a copy of the kit
if [ -d .carry/stage/kit ]; then
  cp -r .carry/stage/kit "$W/kit"
else
  $PY train/synth/kit.py "$W/kit" --cache .carry/debcache
fi
PATH=$(dirname "$PY"):$PATH KIT=$W/kit DATA=$W/data SEED=3 \
  train/gpu_train.sh render 0.02
test -s "$W/data/synth.npy"
# every set, the opt-in teacher set included (missing sets are skipped)
sets=musdb18-7s-train:0.4,everything-is-remixed:0.3,lmms:0.2,teacher:0.1
tiny=(--dim 16 --basis 32 --batch 4 --seconds 1 --amp none --warmup 5
      --val-tracks 3 --sets "$sets")
$PY train/train.py --data "$W/data" --out "$W/run1" "${tiny[@]}" --max-steps 12
# the continuation remixes across sets (--cross: voices over instrumental
# items); draw_batch's own tests first
(cd train && $PY -m unittest -q test_audio_data)
$PY train/train.py --data "$W/data" --out "$W/run2" "${tiny[@]}" --max-steps 6 \
  --init "$W/run1/model.safetensors" --history "$W/run1/log.jsonl" --cross 0.5
$PY train/train.py --data "$W/data" --out "$W/run3" "${tiny[@]}" \
  --init "$W/run1/model.safetensors" --probe-batches 2,4
test -s "$W/run3/batch"
$PY - "$W" <<'PYEOF'
import json, sys, torch
sys.path.insert(0, "train")
from reference import HSTasNet, stream, load_safetensors
w = sys.argv[1]
m = HSTasNet.from_safetensors(f"{w}/run2/model.safetensors").double()
_, meta = load_safetensors(f"{w}/run2/model.safetensors")
log = [json.loads(l) for l in open(f"{w}/run2/log.jsonl")]
assert int(meta["training_steps"]) == 18, meta["training_steps"]
assert len(log) == 2 and log[-1]["steps"] == 18, [r["steps"] for r in log]
# validation is real music only: no rendered track in the log
synth = json.load(open(f"{w}/data/synth.json"))
names = {t["name"] for t in synth["tracks"]}
assert names and all(not names & set(r["tracks"]) for r in log), log[-1]
# the metadata names the sets trained on and the teacher's licence
import os
assert "MUSDB18" in meta["trained_on"], meta["trained_on"]
if os.path.isdir(f"{w}/src/teacher"):
    assert "HTDemucs" in meta["trained_on"], meta["trained_on"]
    assert "personal and research use only" in meta["license"], meta["license"]
x = torch.randn(2, 512 * 8, dtype=torch.float64) * 0.1
H = m.hop
err = (stream(m, x)[..., H:] - m(x[None])[0][..., :-H]).abs().max().item()
assert err < 1e-9, err
print(f"preflight: ok (18 steps over two runs on {len(names)} rendered and "
      f"the real tracks, log of {len(log)} records, stream vs offline "
      f"{err:.1e})")
PYEOF
