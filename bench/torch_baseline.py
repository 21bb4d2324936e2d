"""
torch_baseline.py - the per-hop step of model-spec.md in PyTorch, batched
over B streams, as the baseline for the CUDA engine (bench/gpu_check.sh runs
both in one device call, so each figure has its ratio measured side by side).

The step is what demixd's CUDA engine does per hop: B new hops in (from
pinned host memory), the whole frame for B rows with per-stream state (past
hop, h and c of the five two-layer LSTMs, both overlap tails) gathered and
scattered by slot index, B x T output hops out (to pinned host memory),
one synchronisation. Two modes: eager, and the same step captured as one
CUDA graph. TF32 is on for matmuls and cuDNN (torch's fast float32).

Weights are random at PyTorch's default initialisation; full size D=500,
NB=1500 unless told otherwise. Prints one machine-readable line per figure:
RESULT engine=torch mode=eager|graph B=... median_ms=... p99_ms=...
device_ms=... (device_ms: the step alone, timed with CUDA events, no host
copies).

Usage: python3 bench/torch_baseline.py [--sizes 1,16,64,256,1024,4096]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn


class Step(nn.Module):
    def __init__(self, slots: int, D=500, NB=1500, C=2, W=1024, T=4):
        super().__init__()
        self.D, self.NB, self.C, self.W, self.T = D, NB, C, W, T
        self.H, self.Fb = W // 2, W // 2 + 1
        self.S = C * self.Fb * 2
        S, H = self.S, self.H
        self.spec_encode = nn.Linear(S, D)
        self.conv_encode = nn.Linear(C * W, 2 * NB)
        self.basis_to_embed = nn.Linear(NB, D)
        self.pre_spec = nn.LSTM(D, D, 2)
        self.pre_wave = nn.LSTM(D, D, 2)
        self.fusion = nn.LSTM(2 * D, 2 * D, 2)
        self.post_spec = nn.LSTM(D, D, 2)
        self.post_wave = nn.LSTM(D, D, 2)
        self.gain_s = nn.Parameter(torch.ones(D))
        self.gain_w = nn.Parameter(torch.ones(D))
        self.spec_masks = nn.Linear(D, 4 * S)
        self.wave_masks = nn.Linear(D, 4 * NB)
        self.conv_decode = nn.Parameter(
            torch.empty(NB, C * W).uniform_(-1 / math.sqrt(C * W),
                                            1 / math.sqrt(C * W)))
        n = torch.arange(W, dtype=torch.float64)
        win = torch.sin(math.pi * n / W).square().float()
        self.register_buffer("win", win)
        self.register_buffer("env", win[:H].square() + win[H:].square())
        # per-slot state, slot-indexed like the engine's
        self.register_buffer("past", torch.zeros(slots, C, H))
        self.lstms = [self.pre_spec, self.pre_wave, self.fusion,
                      self.post_spec, self.post_wave]
        for i, l in enumerate(self.lstms):
            hid = l.hidden_size
            self.register_buffer(f"h{i}", torch.zeros(2, slots, hid))
            self.register_buffer(f"c{i}", torch.zeros(2, slots, hid))
        self.register_buffer("tail_spec", torch.zeros(slots, T, C, H))
        self.register_buffer("tail_wave", torch.zeros(slots, T, C, H))

    def _lstm(self, i, x, idx):
        h, c = getattr(self, f"h{i}"), getattr(self, f"c{i}")
        y, (h2, c2) = self.lstms[i](x.unsqueeze(0),
                                    (h[:, idx], c[:, idx]))
        h.index_copy_(1, idx, h2)
        c.index_copy_(1, idx, c2)
        return x + y[0]

    @staticmethod
    def _rms(x, g):
        eps = torch.finfo(torch.float32).eps
        return x / torch.sqrt(eps + x.square().mean(-1, keepdim=True)) * g

    def forward(self, x, idx):
        B = x.shape[0]
        D, NB, C, W, T, H, Fb, S = (self.D, self.NB, self.C, self.W, self.T,
                                    self.H, self.Fb, self.S)
        frame = torch.cat((self.past[idx], x), -1)           # [B, C, W]
        self.past.index_copy_(0, idx, x)
        X = torch.fft.rfft(frame * self.win, dim=-1)         # [B, C, F]
        Xr = torch.view_as_real(X)                           # [B, C, F, 2]
        spec = self.spec_encode(Xr.reshape(B, S))
        a, g = self.conv_encode(frame.reshape(B, C * W)).split(NB, -1)
        basis = torch.relu(a) * torch.sigmoid(g)
        wave = self.basis_to_embed(basis)
        s1 = self._lstm(0, spec, idx)
        w1 = self._lstm(1, wave, idx)
        v = self._lstm(2, torch.cat((s1, w1), -1), idx)
        s2 = self._lstm(3, v[:, :D] + spec, idx)
        w2 = self._lstm(4, v[:, D:] + wave, idx)
        ms = self.spec_masks(self._rms(s2, self.gain_s))
        Y = Xr.unsqueeze(-1) * ms.view(B, C, Fb, 2, T)
        Y = Y.permute(0, 4, 1, 2, 3).contiguous()            # [B, T, C, F, 2]
        y = torch.fft.irfft(torch.view_as_complex(Y), n=W, dim=-1) * self.win
        mw = self.wave_masks(self._rms(w2, self.gain_w)).view(B, T, NB)
        m = basis.unsqueeze(1) * mw                          # [B, T, NB]
        z = (m.reshape(B * T, NB) @ self.conv_decode).view(B, T, C, W) \
            * self.win
        ts, tw = self.tail_spec[idx], self.tail_wave[idx]
        out = (ts + y[..., :H]) / self.env + tw + z[..., :H]
        self.tail_spec.index_copy_(0, idx, y[..., H:])
        self.tail_wave.index_copy_(0, idx, z[..., H:])
        return out                                           # [B, T, C, H]


def stats(times):
    t = sorted(times)
    return t[len(t) // 2], t[int(0.99 * (len(t) - 1))]


@torch.no_grad()
def bench(B, iters, dim, basis, modes):
    dev = torch.device("cuda")
    torch.manual_seed(B)
    step = Step(B, dim, basis).to(dev).eval()
    C, H, T = step.C, step.H, step.T
    x_host = (torch.rand(B, C, H) - 0.5).pin_memory()
    out_host = torch.empty(B, T, C, H).pin_memory()
    x_dev = torch.empty(B, C, H, device=dev)
    idx = torch.arange(B, device=dev)
    results = []
    for mode in modes:
        run = None
        if mode == "eager":
            def run_eager():
                x_dev.copy_(x_host, non_blocking=True)
                o = step(x_dev, idx)
                out_host.copy_(o, non_blocking=True)
            run = run_eager
            device_fn = lambda: step(x_dev, idx)  # noqa: E731
        else:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    step(x_dev, idx)
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    static_out = step(x_dev, idx)
            except Exception as exc:  # report, go on with the other figures
                print(f"# B={B} graph capture failed: {exc}")
                continue

            def run_graph():
                x_dev.copy_(x_host, non_blocking=True)
                graph.replay()
                out_host.copy_(static_out, non_blocking=True)
            run = run_graph
            device_fn = graph.replay
        for _ in range(max(3, iters // 10)):
            run()
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        med, p99 = stats(times)
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        reps = min(iters, 50)
        e0.record()
        for _ in range(reps):
            device_fn()
        e1.record()
        torch.cuda.synchronize()
        dev_ms = e0.elapsed_time(e1) / reps
        line = (f"RESULT engine=torch mode={mode} B={B} median_ms={med:.4f} "
                f"p99_ms={p99:.4f} device_ms={dev_ms:.4f}")
        print(line, flush=True)
        results.append(line)
    del step
    torch.cuda.empty_cache()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,16,64,256,1024,4096")
    ap.add_argument("--modes", default="eager,graph")
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--dim", type=int, default=500)
    ap.add_argument("--basis", type=int, default=1500)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"TF32 on", flush=True)
    for tok in args.sizes.split(","):
        B = int(tok)
        iters = args.iters or (200 if B <= 256 else 100 if B <= 1024 else 50)
        bench(B, iters, args.dim, args.basis, args.modes.split(","))


if __name__ == "__main__":
    main()
