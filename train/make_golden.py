"""
make_golden.py - write the golden files that tests/golden/test_golden.c
checks the CPU engine against (style.md section 8, link (a)).

For the full and the small variant it builds a tiny random HS-TasNet
(D = 24, NB = 40, stereo, W = 1024, T = 4) with a fixed seed, writes it as a
float32 model file, and computes in float64 on the CPU, from exactly the
float32 weights and the float32 input that the C test reads:

    tiny[_small].safetensors          the model (metadata sample_rate, sources,
                                      name, license)
    tiny[_small]_golden.safetensors   "input" [C, N] (64 hops of music-like
                                      audio), "output" [T, C, N] (the offline
                                      forward, with the mixture-consistency
                                      projection of docs/model.md, as the
                                      engines emit), "stage.<name>" [K, ...] for the
                                      first K = 4 frames (cpu_backend.h names)

Before writing anything it checks itself (and stops on failure):
  * the offline forward equals reference.stream(), the spec's frame-by-frame
    form, to 1e-10 (float64), output and every stage;
  * the output's sources add up to the input to 1e-10 (the projection);
  * the written model file reads back to the same weights and output.
It also prints how far a float32 PyTorch run is from the float64 truth, the
error floor that float32 engines can be expected to reach.

Run on a machine with PyTorch (no GPU needed): scripts/make_golden.sh.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import (STAGE_NAMES, HSTasNet, load_safetensors,  # noqa: E402
                       offline_from_stream, save_safetensors, stream)

SAMPLE_RATE = 44100
SOURCES = "drums,bass,vocals,other"
SELF_CHECK_TOL = 1e-10


def music(num_samples: int, channels: int, gen: torch.Generator,
          sample_rate: int = SAMPLE_RATE, peak: float = 0.8) -> torch.Tensor:
    """Music-like test audio [C, N] (float64): decaying harmonic notes
    (a bass line and chord tones, panned), kicks and noise bursts."""
    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
    dur = num_samples / sample_rate
    out = torch.zeros(channels, num_samples, dtype=torch.float64)

    def note(onset, midi, tau, amp, pan, harmonics):
        f0 = 440.0 * 2.0 ** ((midi - 69) / 12)
        dt = t - onset
        on = (dt >= 0).double()
        dt = dt.clamp(min=0)
        env = on * (1 - torch.exp(-dt / 0.004)) * torch.exp(-dt / tau)
        tone = torch.zeros_like(t)
        for h in range(1, harmonics + 1):
            if h * f0 >= 0.45 * sample_rate:
                break
            phase = 2 * math.pi * float(rand(1))
            tone += float(rand(1)) / h ** 1.3 * \
                torch.sin(2 * math.pi * h * f0 * dt + phase)
        for ch in range(channels):
            gain = pan if ch == 0 else 1 - pan
            out[ch] += amp * gain * env * tone

    for i in range(4):        # bass line
        note(i * dur / 4, 36 + int(rand(1) * 12), 0.3, 0.9, 0.5, 6)
    for _ in range(10):       # chord / melody tones
        note(float(rand(1)) * 0.8 * dur, 55 + int(rand(1) * 30),
             0.05 + 0.4 * float(rand(1)), 0.4 + 0.4 * float(rand(1)),
             0.2 + 0.6 * float(rand(1)), 10)
    for i in range(3):        # kicks: falling-pitch sine
        dt = t - (i * dur / 3 + 0.01)
        on = (dt >= 0).double()
        dt = dt.clamp(min=0)
        kick = on * torch.sin(2 * math.pi * 50 * dt +
                              12 * (1 - torch.exp(-dt / 0.02))) * \
            torch.exp(-dt / 0.12)
        out += 1.2 * kick
    for _ in range(8):        # snares / hats: decaying noise bursts
        onset = float(rand(1)) * 0.9 * dur
        dt = t - onset
        on = (dt >= 0).double()
        env = on * torch.exp(-dt.clamp(min=0) / (0.005 + 0.05 * float(rand(1))))
        noise = torch.randn(channels, num_samples, generator=gen,
                            dtype=torch.float64)
        if float(rand(1)) < 0.5:  # hat: first difference = brighter
            noise = torch.diff(noise, dim=-1, prepend=noise[:, :1])
        out += 0.5 * env * noise
    return out * (peak / out.abs().max())


def build_model(seed: int, small: bool, dim: int, num_basis: int) -> HSTasNet:
    """A tiny model at PyTorch's default init (nonzero biases), with RMSNorm
    gains drawn around 1 so every tensor matters, and the decoder filters
    scaled up (x16) so that the waveform path weighs about as much as the
    spectral path in the output (at default init it is ~3% of it, and an
    end-to-end comparison would see its errors 30 times less)."""
    torch.manual_seed(seed)
    model = HSTasNet(dim=dim, num_basis=num_basis, small=small)
    with torch.no_grad():
        for norm in (model.to_spec_masks[0], model.to_waveform_masks[0]):
            norm.weight.copy_(1 + 0.25 * torch.randn(dim))
        model.conv_decode.weight.mul_(16.0)
    return model.float().eval()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


def make_pair(out_dir: str, stem: str, small: bool, seed: int, hops: int,
              frames: int, dim: int, num_basis: int,
              model_file: str | None = None) -> bool:
    """Golden pair for a tiny random model, or with model_file for that
    existing model (the shipped one): only <stem>_golden is written."""
    t0 = time.time()
    if model_file:
        model = HSTasNet.from_safetensors(model_file)
        small, dim, num_basis = model.small, model.dim, model.num_basis
    else:
        model = build_model(seed, small, dim, num_basis)
    H, C, T = model.hop, model.channels, model.num_sources
    N = hops * H
    variant = "small" if small else "full"
    print(f"== {stem}: {variant} D={dim} NB={num_basis} L={model.lstm_layers}"
          f" DF={model.fusion_dim} params={model.num_parameters}"
          f" N={N} K={frames} seed={seed}")

    gen = torch.Generator().manual_seed(seed + 1)
    audio32 = music(N, C, gen).float()               # what the C test reads
    x = audio32.double()

    m64 = copy.deepcopy(model).double()              # exact float32 weights
    with torch.no_grad():
        out, st = m64(x[None], return_stages=frames)
    out = out[0]
    st = {k: v[0] for k, v in st.items()}
    ok = True

    # --- self-check 1: offline form == the spec's streaming form
    padded = torch.cat((x, x.new_zeros(C, H)), dim=-1)  # one zero hop
    s_out, s_st = stream(m64, padded, stages=frames)
    s_out = s_out[..., H:]
    err = rel(s_out[..., :N - H], out[..., :N - H])
    mx = float((s_out[..., :N - H] - out[..., :N - H]).abs().max())
    print(f"  self-check stream vs offline: output rel {err:.3e} "
          f"max abs {mx:.3e} (|out| max {float(out.abs().max()):.3f})")
    ok &= err <= SELF_CHECK_TOL
    worst = max((rel(s_st[n], st[n]), n) for n in STAGE_NAMES)
    print(f"  self-check stream vs offline: worst stage {worst[1]} "
          f"rel {worst[0]:.3e}")
    ok &= worst[0] <= SELF_CHECK_TOL
    err2 = rel(offline_from_stream(m64, x)[..., :N - H], out[..., :N - H])
    ok &= err2 <= SELF_CHECK_TOL
    err_mix = rel(out.sum(0), x)
    print(f"  self-check sources sum to the input: rel {err_mix:.3e}")
    ok &= err_mix <= SELF_CHECK_TOL
    for n in STAGE_NAMES:
        assert st[n].shape[0] == frames, n
    if not ok:
        print("  SELF-CHECK FAILED: not writing", stem)
        return False

    # --- what float32 arithmetic gives (the floor for float32 engines)
    with torch.no_grad():
        out32, st32 = model(audio32[None], return_stages=frames)
    errs = " ".join(f"{n}={rel(st32[n][0].double(), st[n]):.1e}"
                    for n in STAGE_NAMES)
    print(f"  float32 torch vs float64 truth: output "
          f"{max(rel(out32[0, t].double(), out[t]) for t in range(T)):.2e}"
          f" (worst source); stages {errs}")

    # --- write the model and check it reads back
    model_path = model_file or os.path.join(out_dir, f"{stem}.safetensors")
    if not model_file:
        model.to_safetensors(model_path, {
            "sample_rate": str(SAMPLE_RATE), "sources": SOURCES,
            "name": f"{stem} ({variant} HS-TasNet, D={dim}, NB={num_basis}, "
                    f"random weights, seed {seed})",
            "description": "golden-test model made by train/make_golden.py",
            "license": "CC0-1.0"})
    back = HSTasNet.from_safetensors(model_path)
    sd0, sd1 = model.state_dict(), back.state_dict()
    same = all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    with torch.no_grad():
        out_back = back.double()(x[None])[0]
    err3 = rel(out_back, out)
    print(f"  model file: {os.path.getsize(model_path)} bytes, weights "
          f"{'identical' if same else 'DIFFER'}, reloaded output rel {err3:.1e}")
    if not same or err3 > 1e-12 or back.small != small:
        print("  READ-BACK FAILED")
        return False

    # --- write the golden file
    golden = {"input": audio32, "output": out.float()}
    for n in STAGE_NAMES:
        golden[f"stage.{n}"] = st[n].float()
    golden_path = os.path.join(out_dir, f"{stem}_golden.safetensors")
    save_safetensors(golden_path, golden, {
        "model": os.path.basename(model_path), "frames": str(frames),
        "hops": str(hops), "seed": str(seed),
        "mixture_consistency": "1",
        "generator": "train/make_golden.py (float64 truth)",
        "license": "CC0-1.0"})
    g, _ = load_safetensors(golden_path)
    assert torch.equal(g["input"], audio32)
    print(f"  golden file: {os.path.getsize(golden_path)} bytes; shapes "
          + " ".join(f"{k}{list(v.shape)}" for k, v in g.items()
                     if k in ("input", "output", "stage.spec_out")))
    print(f"  {time.time() - t0:.1f} s")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data"))
    ap.add_argument("--seed", type=int, default=20240227)
    ap.add_argument("--hops", type=int, default=64)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--dim", type=int, default=24)
    ap.add_argument("--num-basis", type=int, default=40)
    ap.add_argument("--model", help="write only <name>_golden for this "
                    "existing model file (e.g. the shipped one)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    try:
        import safetensors  # noqa: F401
        print("safetensors package:", safetensors.__version__)
    except ImportError:
        print("safetensors package: absent, using reference.py's codec")
    print("torch", torch.__version__)
    ok = True
    if args.model:
        stem = os.path.basename(args.model).rsplit(".", 1)[0]
        ok &= make_pair(args.out, stem, False, args.seed, args.hops,
                        args.frames, 0, 0, model_file=args.model)
    else:
        for stem, small, seed in (("tiny", False, args.seed),
                                  ("tiny_small", True, args.seed + 100)):
            ok &= make_pair(args.out, stem, small, seed, args.hops,
                            args.frames, args.dim, args.num_basis)
    print("ALL OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
