"""What the mixture-consistency projection (docs/model.md) does to SDR.

  python3 train/consistency_sdr.py MODEL DATA_ROOT [--threads N]

Runs MODEL (a safetensors file) with reference.HSTasNet's offline form over
every track of the validation split (audio_data.VALIDATION, decoded from
DATA_ROOT's Opus stems exactly as training packs them: int16, then / 32768)
once, with the projection off, and scores the same raw estimate four ways
with sdr.py (per source and track, medians, their mean, as training
validates and `demix eval` reports):

  raw       the network's output, the sources not adding up to the input
  uniform   est_t + r / T, r = mix - sum_t est_t (what the engines do)
  sample    est_t + r * est_t^2 / sum_u est_u^2, per sample and channel
  hop       est_t + r * E_t / sum_u E_u, E_t the energy of source t in the
            512-sample hop and channel the sample lies in (what a streaming
            engine could do hop by hop; Wisdom et al., "Differentiable
            consistency constraints for improved deep speech enhancement",
            ICASSP 2019, weight by estimated source power)

and prints one table (and, with --json, a machine-readable line). The
weighted forms fall back to uniform where every source is silent. Karaoke
(the page's preset, every source but vocals): for each track, the SDR of
the unprocessed mixture and of each form's drums + bass + other against
the true accompaniment.

Threads: one process; torch's intra-op threads (--threads).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from audio_data import SOURCES, VALIDATION, _decode_track  # noqa: E402
from reference import HSTasNet, mix_consistent  # noqa: E402
from sdr import sdr, summarise  # noqa: E402

HOP_SAMPLES = 512
TINY = 1e-20


def weighted(est: torch.Tensor, mix: torch.Tensor,
             power: torch.Tensor) -> torch.Tensor:
    """est [T, C, N] + the residual shared by weights power / sum(power)
    ([T, C, N]); uniform where the powers sum to ~0."""
    total = power.sum(0, keepdim=True)
    T = est.shape[0]
    share = torch.where(total > TINY, power / total.clamp(min=TINY),
                        torch.full_like(power, 1.0 / T))
    return est + share * (mix - est.sum(0)).unsqueeze(0)


def hop_power(est: torch.Tensor) -> torch.Tensor:
    """Energy of each source per hop and channel, spread over the hop."""
    T, C, N = est.shape
    pad = (-N) % HOP_SAMPLES
    e = torch.nn.functional.pad(est, (0, pad)).square()
    e = e.reshape(T, C, -1, HOP_SAMPLES).sum(-1, keepdim=True)
    return e.expand(-1, -1, -1, HOP_SAMPLES).reshape(T, C, -1)[..., :N]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("data_root")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = HSTasNet.from_safetensors(args.model).eval()
    model.mixture_consistency = False
    H = model.hop
    forms = ("raw", "uniform", "sample", "hop")
    per_form = {f: {} for f in forms}
    residual_db = {f: [] for f in forms}
    karaoke = {}
    t0 = time.time()
    for set_name, names in sorted(VALIDATION.items()):
        for name in sorted(names):
            folder = os.path.join(args.data_root, set_name, name)
            ref = torch.from_numpy(_decode_track(folder)).float() / 32768.0
            n = ref.shape[-1]
            mix = ref.sum(0)
            with torch.no_grad():
                est = model(torch.nn.functional.pad(
                    mix, (0, (-n) % H))[None])[0, ..., :n]
            outs = {"raw": est, "uniform": mix_consistent(est, mix),
                    "sample": weighted(est, mix, est.square()),
                    "hop": weighted(est, mix, hop_power(est))}
            vocals = SOURCES.index("vocals")
            accomp = mix - ref[vocals]
            karaoke[name] = {"mixture": sdr(accomp, mix)}
            for f, o in outs.items():
                per_form[f][name] = {s: sdr(ref[i], o[i])
                                     for i, s in enumerate(SOURCES)}
                karaoke[name][f] = sdr(accomp, o.sum(0) - o[vocals])
                r = (mix - o.sum(0)).double().square().sum()
                residual_db[f].append(
                    10 * torch.log10(r / mix.double().square().sum()).item())
            print(f"{name}: {n / 48000:.1f} s, raw residual "
                  f"{residual_db['raw'][-1]:.1f} dB, "
                  + ", ".join(f"{f} {per_form[f][name]['vocals'] or 0:.2f}"
                              for f in forms) + " (vocals SDR)",
                  file=sys.stderr)
    summary = {f: summarise(per_form[f], SOURCES) for f in forms}
    print(f"{len(per_form['raw'])} validation tracks, "
          f"{time.time() - t0:.0f} s; SDR in dB (median over tracks per "
          "source, mean of the medians); residual = 10 log10(|mix - sum "
          "est|^2 / |mix|^2), worst track")
    print(f"{'form':8} " + " ".join(f"{s:>7}" for s in SOURCES)
          + f" {'mean':>7} {'residual':>9}")
    for f in forms:
        m = summary[f]["median"]
        print(f"{f:8} " + " ".join(f"{m[s]:7.3f}" for s in SOURCES)
              + f" {summary[f]['mean']:7.3f} {max(residual_db[f]):9.1f}")
    print("karaoke (drums + bass + other against the true "
          "accompaniment), dB:")
    print(f"{'track':46} {'mixture':>8} " +
          " ".join(f"{f:>8}" for f in forms))
    for name, k in karaoke.items():
        print(f"{name:46} {k['mixture']:8.2f} " +
              " ".join(f"{k[f]:8.2f}" for f in forms))
    if args.json:
        print(json.dumps({"model": os.path.basename(args.model),
                          "summary": summary,
                          "worst_residual_db": {f: max(v) for f, v in
                                                residual_db.items()},
                          "per_track": per_form, "karaoke": karaoke}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
