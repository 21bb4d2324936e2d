"""Write the model card models/<name>.md from the model file's metadata and
its training log (train.py's log.jsonl), so that every figure in the card
is the one the run measured.

  python3 train/model_card.py models/NAME.safetensors models/NAME.train.jsonl \
      [--notes FILE]  > models/NAME.md

Standard library only (reads the safetensors header itself). --notes adds a
hand-written section (what limits the model, what would move it most).
"""
import argparse
import json
import os
import struct

SOURCES = ("drums", "bass", "vocals", "other")


def header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
    return head.pop("__metadata__", {}), head


def fmt(v):
    return "n/a" if v is None else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("log")
    ap.add_argument("--notes")
    args = ap.parse_args()
    meta, tensors = header(args.model)
    with open(args.log) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    recs = [r for r in recs if r.get("mean") is not None]
    last = recs[-1]
    params = 0
    for name, t in tensors.items():
        if name.endswith(".window"):
            continue
        count = 1
        for d in t["shape"]:
            count *= d
        params += count
    d, s = tensors["spec_encode.1.weight"]["shape"]
    nb = tensors["conv_encode.weight"]["shape"][0] // 2
    small = "pre_spec_branch.weight_ih_l1" not in tensors
    name = meta.get("name", os.path.basename(args.model))
    size = os.path.getsize(args.model)
    out = []
    w = out.append
    w(f"# {name}\n")
    w(f"HS-TasNet (model-spec.md), D={d}, NB={nb}, "
      f"{'small (1-layer LSTMs)' if small else 'full (2-layer LSTMs)'}, "
      f"{params / 1e6:.2f} M parameters, float16 storage "
      f"({size / 1e6:.1f} MB), {meta.get('sample_rate')} Hz stereo, sources "
      f"{meta.get('sources')}. Latency 1024 samples "
      f"({1024 / int(meta.get('sample_rate', 48000)) * 1000:.1f} ms).\n")
    w("## Validation SDR\n")
    w("Held-out split (never trained on, `train/audio_data.py` VALIDATION): "
      "10 MUSDB18 7-second train excerpts and the song 'lithium' of "
      "Everything is Remixed, whole tracks, mixture = sum of the decoded "
      "Opus stems. SDR = 10 log10(sum s^2 / sum (s - s_hat)^2) per source "
      "and track (`demix eval`'s definition), median over tracks; a silent "
      "reference is left out.\n")
    # batch and peak learning rate of the run a line belongs to (the
    # first run's lines predate these fields: it ran train.py's defaults)
    w("| steps | GPU hours | batch | peak lr | " + " | ".join(SOURCES)
      + " | mean |")
    w("| --- | --- | --- | --- | " + " | ".join("---" for _ in SOURCES)
      + " | --- |")
    for r in recs:
        w(f"| {r['steps']} | {r['hours']:.3f} | {r.get('batch', 64)} | "
          f"{r.get('lr', 5e-4):g} | "
          + " | ".join(fmt(r["median"].get(x)) for x in SOURCES)
          + f" | {fmt(r['mean'])} |")
    w("")
    w(f"Final: mean {fmt(last['mean'])} dB after {last['steps']} steps and "
      f"{last['hours']:.2f} GPU hours (NVIDIA H200). Target of issue 6: "
      "4.65 dB (the paper's HS-TasNet on MUSDB18, trained on 10 h of it).\n")
    w(f"![validation SDR against training time]({name}.curve.png)\n")
    w("Per track at the end:\n")
    w("| track | " + " | ".join(SOURCES) + " |")
    w("| --- | " + " | ".join("---" for _ in SOURCES) + " |")
    for track, v in sorted(last["tracks"].items()):
        w(f"| {track} | " + " | ".join(fmt(v.get(x)) for x in SOURCES)
          + " |")
    w("")
    w("## Training\n")
    w(f"- Code: `train/train.py` (this commit), stages on the GPU machine "
      "`train/gpu_train.sh`.\n"
      f"- Steps: {meta.get('training_steps')}; GPU hours: "
      f"{float(meta.get('training_hours', 0)):.2f} (wall time on one H200, "
      "validation included).\n"
      "- Loss: L1 on the four source waveforms (the reference's loss), "
      "AdamW, bf16 autocast, gradient clip 5, cosine decay over the last "
      "30% of each run.\n"
      f"- Batches: {last.get('batch', 64)} items of "
      f"{last.get('seconds', 4.0):g} s (in the latest run), each item's four "
      "sources taken from one "
      "track or (p = 0.5) from four random tracks of one set, random gain "
      "-9..+3 dB per source, random channel swap, and (p = 0.5) a joint "
      "pitch/tempo change of up to 5% by resampling.\n"
      f"- Trained on: {meta.get('trained_on')}.\n")
    w("## Data and licences\n")
    w("- MUSDB18 (Rafii et al. 2017): 84 of the 94 7-second train excerpts; "
      "academic and non-commercial use only.\n"
      "- Everything is Remixed: hydrogen, potassium, rubidium, caesium "
      "(lithium is validation); CC0 1.0.\n"
      "- Synthetic renders (`train/synth/`, `train/DATA.md`) of POP909 "
      "(MIT) and the Groove MIDI Dataset (CC BY 4.0), where the run's log "
      "lists the set: before 2026-12-07 with the FluidR3 GM soundfont "
      "(MIT); since, rendered on the GPU machine with MuseScore General "
      "(MIT), sf_GMbank (public domain), TimGM6mb (GPL-2+) and the AVL "
      "Drumkits (CC BY-SA 3.0).\n"
      f"- Licence (the file's metadata): {meta.get('license')}.\n")
    w("## Intended use\n")
    w("Real-time demixing of music for previews, practice and karaoke in "
      "demixd and `demix separate`; a starting point for further training "
      "(`train/gpu_train.sh` continues from this file). Not for commercial "
      "use (MUSDB18's terms), and not a production-quality separator at "
      "this SDR: expect bleed between stems, most of all in bass and "
      "other.\n")
    if args.notes:
        with open(args.notes) as f:
            w(f.read())
    print("\n".join(out))


if __name__ == "__main__":
    main()
