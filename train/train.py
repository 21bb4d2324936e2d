"""Train HS-TasNet (reference.py's HSTasNet, model-spec.md) at 48 kHz.

  python3 train/train.py --data DIR --out DIR [--minutes M] [--init F] ...

DIR holds packed data sets (audio_data.pack: <set>.npy + <set>.json); the
batch mix is chosen with --sets. Loss: L1 on the four source waveforms, as
the reference HS-TasNet trains, taken after the mixture-consistency
projection that the engines apply (docs/model.md; reference.HSTasNet's
forward does it by default), so the network learns through it; validation
measures the same projected output that the engines emit. Runs are bounded by wall time (--minutes,
validation and export included) because the GPU machine is lent by the
half hour; every --val-minutes the run validates (SDR per source on the
held-out split of audio_data.VALIDATION, whole tracks, streaming-exact
offline form), appends one line to OUT/log.jsonl, exports OUT/model.safetensors
(float16 storage, metadata below) and writes OUT/checkpoint.pt (float32
weights, optimiser, counters). A run continues an earlier one from either:
  --resume OUT/checkpoint.pt   (same machine: exact, optimiser included)
  --init models/NAME.safetensors --history models/NAME.train.jsonl
                               (a later session: the shipped float16 weights,
                                a fresh optimiser re-warmed over --warmup steps,
                                step and hour counters from the metadata)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from audio_data import RATE, SOURCES, StemBank, draw_batch  # noqa: E402
from reference import HSTasNet, load_safetensors  # noqa: E402
from sdr import sdr, summarise  # noqa: E402

# what each set is and its licence, for the exported file's metadata
SET_FACTS = {
    "musdb18-7s-train": ("MUSDB18 7-s train excerpts (84 of 94)",
                         "academic and non-commercial use only"),
    "everything-is-remixed": ("Everything is Remixed (4 of 5 songs)",
                              "CC0 1.0"),
    "lmms": ("LMMS demo projects (stems rendered by train/lmms_render.py)",
             "GPL-2+, Artistic-2.0, BSD-2-clause, CC BY-SA 3.0/4.0"),
    "teacher": ("Debian game music and Frets on Fire songs with pseudo-stems "
                "by HTDemucs v4 (train/teacher_stems.py)",
                "music GPL-2+, CC BY-SA 3.0, MIT; the teacher's weights are "
                "Meta's, for personal and research use only"),
    "synth": ("synthetic MIDI renders (train/synth)",
              "POP909 (MIT) and Groove MIDI (CC BY 4.0), rendered with the "
              "soundfonts MuseScore General (MIT), sf_GMbank (public "
              "domain), TimGM6mb (GPL-2+) and AVL Drumkits (CC BY-SA 3.0)"),
}


def set_facts(names) -> tuple[str, str]:
    """(what, licences) of the sets trained on, for the metadata."""
    facts = [SET_FACTS.get(n.rstrip("0123456789"), (n, "see train/DATA.md"))
             for n in names]
    facts = list(dict.fromkeys(facts))
    return ("; ".join(f[0] for f in facts),
            "; ".join(f"{f[0].split(' (')[0]}: {f[1]}" for f in facts))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="folder of packed sets")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--sets", default="musdb18-7s-train:0.5,"
                   "everything-is-remixed:0.3,lmms:0.2",
                   help="real sets, set:weight,... (their shares of the "
                   "real part of each batch; missing sets are skipped). "
                   "The teacher set (train/teacher_stems.py) is opt-in, "
                   "e.g. ...,teacher:0.1: at 0.3, with the synthetic "
                   "renders left out, vocals and other lost 1.2-1.4 dB "
                   "(train/cards/hstasnet-d256-48k.notes.md)")
    p.add_argument("--synth-weight", type=float, default=0.3,
                   help="share of batch items drawn from the synthetic sets "
                   "(synth*.npy in --data, train/synth/render.py), split "
                   "evenly among them; 0 leaves them out. Default 0.3: the "
                   "renders (hours) now far outnumber the real audio (38 "
                   "min), but they are General MIDI sounds and validation "
                   "is real music, so real items stay the majority")
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--val-minutes", type=float, default=2.0)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--basis", type=int, default=512)
    p.add_argument("--small", action="store_true")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--final-lr", type=float, default=0.1,
                   help="fraction of --lr reached at the end (cosine decay "
                   "over the last 30%% of the run's time)")
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--remix", type=float, default=0.5)
    p.add_argument("--cross", type=float, default=0.0,
                   help="fraction of items remixed across sets, each "
                   "source from a set where it sounds (instrumental sets "
                   "get voices; audio_data.draw_batch)")
    p.add_argument("--stretch", type=float, default=0.05)
    p.add_argument("--amp", choices=("bf16", "none"), default="bf16")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--init", help="start from these weights (safetensors)")
    p.add_argument("--history", help="earlier runs' log.jsonl to continue")
    p.add_argument("--resume", help="checkpoint.pt of this machine's run")
    p.add_argument("--name", default="hstasnet-d256-48k")
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop after this many steps (smoke tests)")
    p.add_argument("--val-tracks", type=int, default=0,
                   help="validate on the first N tracks only (smoke)")
    p.add_argument("--probe-batches", default="",
                   help="B1,B2,...: time training steps at these batch "
                   "sizes, write the fastest (items/s, step <= 0.6 s) to "
                   "OUT/batch, train nothing else and export nothing")
    return p.parse_args(argv)


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def set_weights(args, names):
    """[(set name, weight)] of the sets to train on: the real sets of
    --sets sharing 1 - --synth-weight by their weights, the synthetic sets
    (names starting with "synth") sharing --synth-weight evenly. Sets of
    names only (those present in --data)."""
    real = [(n, float(w)) for n, w in
            (item.split(":") for item in args.sets.split(","))
            if n in names]
    synth = sorted(n for n in names if n.startswith("synth"))
    if not 0 <= args.synth_weight <= 1:
        raise SystemExit("train: --synth-weight must lie in [0, 1]")
    if any(n.startswith("synth") for n, _ in real):
        raise SystemExit("train: synthetic sets take --synth-weight, not "
                         "--sets")
    share = args.synth_weight if synth and real else (1.0 if synth else 0.0)
    if share == 0:
        synth = []
    out = [(n, (1 - share) * w / sum(w for _, w in real)) for n, w in real]
    return out + [(n, share / len(synth)) for n in synth]


def load_banks(args, device):
    names = {f[:-4] for f in os.listdir(args.data) if f.endswith(".npy")}
    for item in args.sets.split(","):
        if item.split(":")[0] not in names:
            log(f"set {item.split(':')[0]}: {args.data}/"
                f"{item.split(':')[0]}.npy missing, skipped")
    banks, weights = [], []
    val_tracks = []
    for name, weight in set_weights(args, names):
        prefix = os.path.join(args.data, name)
        bank = StemBank(prefix, device)
        val = StemBank(prefix, device, validation=True, audio=bank.audio)
        log(f"set {name}: {len(bank.tracks)} training tracks "
            f"({bank.seconds / 60:.1f} min), {len(val.tracks)} validation "
            f"tracks ({val.seconds / 60:.1f} min), weight {weight:.3f}")
        if bank.tracks:
            banks.append(bank)
            weights.append(weight)
        # validation is real music only, never a render
        if not name.startswith("synth"):
            val_tracks += [(val, t) for t in val.tracks]
    if not banks:
        raise SystemExit("train: no training data found under " + args.data)
    return banks, weights, val_tracks


@torch.no_grad()
def validate(model, val_tracks, limit=0):
    """SDR per source and track over whole held-out tracks, float32."""
    model.eval()
    H = model.hop
    per_track = {}
    for bank, track in val_tracks[:limit or None]:
        ref = bank.track_audio(track)                     # [T, C, N]
        n = ref.shape[-1]
        mix = ref.sum(0, keepdim=True)
        pad = (-n) % H
        est = model(torch.nn.functional.pad(mix, (0, pad)))[0, ..., :n]
        per_track[track["name"]] = {
            s: sdr(ref[i], est[i]) for i, s in enumerate(SOURCES)}
    model.train()
    return per_track, summarise(per_track, SOURCES)


@torch.no_grad()
def initialise(model, mix):
    """Starting point for a fresh model (the spec fixes the network, not
    its initialisation):
    - spec_encode scaled so that its output has unit variance on real
      input: the spectral features are unnormalised DFT bins (tens of units
      for music at normal level), which would saturate the LSTM gates;
    - spectral masks start at 1/T for every source (bias), with small
      weights, so that the first outputs are the mixture split evenly
      rather than noise;
    - waveform masks start at zero, so the waveform path adds nothing until
      it has learnt something (its gradient is still non-zero: the basis
      is not zero)."""
    T = model.num_sources
    _, stages = model(mix, return_stages=mix.shape[-1] // model.hop)
    std = stages["spec"].std().item()
    model.spec_encode[1].weight.mul_(1.0 / max(std, 1e-6))
    model.spec_encode[1].bias.zero_()
    model.to_spec_masks[1].weight.mul_(0.1)
    model.to_spec_masks[1].bias.fill_(1.0 / T)
    model.to_waveform_masks[1].weight.zero_()
    model.to_waveform_masks[1].bias.zero_()
    log(f"init: spectral encoder output std {std:.2f} -> 1, masks 1/{T}, "
        "waveform masks 0")


def probe_batches(args, model, opt, banks, weights, length, gen, amp):
    """Seconds per training step for each batch size of --probe-batches
    (3 warm-up steps, then 10 timed). The LSTMs' time steps run one after
    another whatever the batch, so a larger batch can cost little more."""
    best, best_rate = None, 0.0
    cuda = next(model.parameters()).is_cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for batch in (int(b) for b in args.probe_batches.split(",")):
        for i in range(13):
            if i == 3:
                sync()
                t0 = time.time()
            targets = draw_batch(banks, weights, batch, length, gen,
                                 args.remix, args.stretch, args.cross)
            with amp:
                est = model(targets.sum(1))
            loss = (est.float() - targets).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        step = (time.time() - t0) / 10
        rate = batch / step
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
        log(f"probe: batch {batch}: {step:.3f} s/step, {rate:.0f} items/s, "
            f"peak GPU memory {peak:.1f} GiB")
        if step <= 0.6 and rate > best_rate:
            best, best_rate = batch, rate
    if best:
        with open(os.path.join(args.out, "batch"), "w") as f:
            f.write(f"{best}\n")
        log(f"probe: fastest batch {best} ({best_rate:.0f} items/s)")


def lr_at(args, step_in_run, elapsed):
    warm = min(1.0, (step_in_run + 1) / max(1, args.warmup))
    total = args.minutes * 60
    start = 0.7 * total
    if elapsed <= start or total <= 0:
        decay = 1.0
    else:
        t = min(1.0, (elapsed - start) / (total - start))
        decay = args.final_lr + (1 - args.final_lr) * 0.5 * \
            (1 + math.cos(math.pi * t))
    return args.lr * warm * decay


def export(model, path, args, sets, steps, hours, summary):
    """sets: the names of the sets trained on (for the metadata)."""
    med = summary["median"]
    meta = {
        "sample_rate": str(RATE),
        "sources": ",".join(SOURCES),
        "name": args.name,
        "description": f"HS-TasNet D={model.dim} NB={model.num_basis} "
                       f"{'small' if model.small else 'full'}, trained by "
                       "demixd train/train.py",
        "trained_on": set_facts(sets)[0],
        "license": "weights: non-commercial use only, as their MUSDB18 "
                   "training data (" + set_facts(sets)[1] +
                   "; authors in train/DATA.md)",
        "training_steps": str(steps),
        "training_hours": f"{hours:.4f}",
        "validation_sdr": json.dumps(
            {**{s: (None if v is None else round(v, 3))
                for s, v in med.items()},
             "mean": None if summary["mean"] is None
             else round(summary["mean"], 3)}),
    }
    tmp = path + ".tmp"
    model.to_safetensors(tmp, meta, dtype=torch.float16)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    # No cuDNN autotuning: every validation track has its own length, and
    # the first run (2026-12-02) spent 8 min in its first validation and
    # 2 min in its first step before training at 0.25 s/step.
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    base_steps, base_hours, history = 0, 0.0, []
    if args.init:
        model = HSTasNet.from_safetensors(args.init)
        _, meta = load_safetensors(args.init)
        base_steps = int(meta.get("training_steps", 0))
        base_hours = float(meta.get("training_hours", 0))
        log(f"init from {args.init}: {base_steps} steps, "
            f"{base_hours:.3f} h")
    else:
        model = HSTasNet(dim=args.dim, num_basis=args.basis,
                         small=args.small)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr,
                            betas=(0.9, 0.999), weight_decay=0.0)
    if args.resume:
        ck = torch.load(args.resume, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        base_steps, base_hours = ck["steps"], ck["hours"]
        log(f"resumed {args.resume}: {base_steps} steps, {base_hours:.3f} h")
    if args.history and os.path.exists(args.history):
        with open(args.history) as f:
            history = [json.loads(line) for line in f if line.strip()]
    log_path = os.path.join(args.out, "log.jsonl")
    with open(log_path, "w") as f:
        for rec in history:
            f.write(json.dumps(rec) + "\n")

    log(f"model: D={model.dim} NB={model.num_basis} small={model.small} "
        f"{model.num_parameters / 1e6:.2f} M parameters, device {device}")
    banks, weights, val_tracks = load_banks(args, device)
    length = int(args.seconds * RATE) // model.hop * model.hop
    if not args.init and not args.resume:
        initialise(model, draw_batch(banks, weights, 8, length, gen,
                                     args.remix, args.stretch,
                                     args.cross).sum(1))

    t0 = time.time()
    step, last_val, losses = 0, t0, []
    use_amp = args.amp == "bf16" and device.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else \
        contextlib.nullcontext()

    def checkpoint(final=False):
        elapsed = time.time() - t0
        hours = base_hours + elapsed / 3600
        steps = base_steps + step
        per_track, summary = validate(model, val_tracks, args.val_tracks)
        rec = {"steps": steps, "hours": round(hours, 5),
               "loss": sum(losses) / len(losses) if losses else None,
               "median": summary["median"], "mean": summary["mean"],
               "tracks": per_track, "final": final,
               "batch": args.batch, "seconds": args.seconds, "lr": args.lr,
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        med = " ".join(f"{s}={v:.2f}" if v is not None else f"{s}=n/a"
                       for s, v in summary["median"].items())
        log(f"validate step {steps} ({hours:.3f} h): {med} "
            f"mean={summary['mean']:.3f} dB, loss {rec['loss']}")
        export(model, os.path.join(args.out, "model.safetensors"), args,
               [b.name for b in banks], steps, hours, summary)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                    "steps": steps, "hours": hours},
                   os.path.join(args.out, "checkpoint.pt.tmp"))
        os.replace(os.path.join(args.out, "checkpoint.pt.tmp"),
                   os.path.join(args.out, "checkpoint.pt"))
        losses.clear()

    if args.probe_batches:
        probe_batches(args, model, opt, banks, weights, length, gen, amp)
        return
    if not args.init and not args.resume and not args.max_steps:
        checkpoint()   # step 0: the starting point of the curve
        last_val = time.time()
    while True:
        elapsed = time.time() - t0
        if elapsed >= args.minutes * 60 or \
                (args.max_steps and step >= args.max_steps):
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(args, step, elapsed)
        targets = draw_batch(banks, weights, args.batch, length, gen,
                             args.remix, args.stretch, args.cross)
        mix = targets.sum(1)
        with amp:
            est = model(mix)
        loss = (est.float() - targets).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        if step % 25 == 0 or step <= 3:
            lv = loss.item()
            if not math.isfinite(lv):
                raise SystemExit(f"train: loss is {lv} at step {step}")
            losses.append(lv)
            log(f"step {base_steps + step} loss {lv:.5f} grad {norm:.3f} "
                f"lr {opt.param_groups[0]['lr']:.2e} "
                f"{(time.time() - t0) / step:.3f} s/step")
        if time.time() - last_val >= args.val_minutes * 60:
            checkpoint()
            last_val = time.time()
    checkpoint(final=True)
    log("done")


if __name__ == "__main__":
    main()
