"""
reference.py - the PyTorch reference of HS-TasNet as docs/model-spec.md
(shared/docs/model-spec.md) defines it: the numerical truth that the C
engines are checked against, and the module that training (issue 6) uses.

Two forms of the same network live here:

* HSTasNet.forward(audio): the offline form over a whole signal, as used in
  training: causal left pad of H zeros, STFT frames (center=False, hop H,
  periodic Hann), both branches over every frame at once, overlap-add with
  the summed squared-window envelope for the spectral path and a windowed
  transposed convolution for the waveform path, then the pad is dropped.
  It can also return the per-frame intermediates of the first K frames
  (the "stages" of cpu/cpu_backend.h).
* Both forms end with the mixture-consistency projection that the engines
  add to model-spec.md (docs/model.md): per channel and sample,
  out_t += (x - sum_t out_t) / T, x being the input sample the output
  covers, so the T sources add up to the input. `mixture_consistency`
  (on by default; an attribute of the model, an argument of stream()) turns
  it off for measuring what it does.
* stream(model, audio): the streaming form, written straight from the
  spec's "One frame" section with plain tensor ops (hand-written LSTM cell
  and RMSNorm, no nn modules called), one hop at a time, as every C engine
  runs it. make_golden.py checks that the two forms agree (float64) before it
  writes any golden file.

State-dict names and shapes are exactly those of the spec's weights table,
so HSTasNet.to_safetensors() writes a file that demix_model_load() reads and
HSTasNet.from_safetensors() reads files of the hs-tasnet package.

Design notes:
* The Hann window is recomputed in the compute dtype on every call (the
  spec: "recompute, do not trust"); the `stft.window` and
  `conv_decode.window` buffers exist only so the state dict has the
  package's names.
* RMSNorm uses eps = float32 machine epsilon (2^-23) whatever the dtype,
  so a float64 run is the exact-arithmetic version of the float32 model.
* conv_decode.bias exists (it is in the package's state dict) but is not
  used, as the spec says.
* Safetensors are read and written with the `safetensors` package when it
  is importable, else with the small json+struct codec below.

Threads: plain PyTorch modules; no shared state.
"""

from __future__ import annotations

import json
import math
import struct

import torch
import torch.nn.functional as F
from torch import nn

# Stage names, in the order of cpu/cpu_backend.h's demix_cpu_stage.
STAGE_NAMES = (
    "spec_feat", "spec", "basis", "wave", "s1", "w1", "fused", "s2", "w2",
    "spec_mask", "wave_mask", "spec_out", "wave_out",
)

BRANCHES = (
    "pre_spec_branch", "pre_waveform_branch", "fusion_branch",
    "post_spec_branch", "post_waveform_branch",
)

DEFAULT_SOURCES = ("drums", "bass", "vocals", "other")

# RMSNorm epsilon: float32 machine epsilon, 2^-23, in every dtype.
RMS_EPS = torch.finfo(torch.float32).eps

# Floor of the overlap-add envelope (only reached where the window is 0).
ENVELOPE_FLOOR = 1e-11


def mix_consistent(est: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """docs/model.md's projection: est [..., T, C, N] moved so that its T
    sources add up to mix [..., C, N]: est_t + (mix - sum_t est_t) / T.
    The sum runs over the sources in order, as the C engines sum."""
    total = est[..., 0, :, :]
    for t in range(1, est.shape[-3]):
        total = total + est[..., t, :, :]
    return est + ((mix - total) / est.shape[-3]).unsqueeze(-3)


def hann(window: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Periodic Hann window w[n] = sin^2(pi n / W), computed in `dtype`."""
    n = torch.arange(window, dtype=torch.float64, device=device)
    return torch.sin(math.pi * n / window).square().to(dtype)


class RMSNorm(nn.Module):
    """x / sqrt(eps + mean(x^2)) * weight, eps = 2^-23 (model-spec.md step 6)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ms = x.square().mean(dim=-1, keepdim=True)
        return x / torch.sqrt(RMS_EPS + ms) * self.weight


class _Window(nn.Module):
    """Holds the `stft.window` buffer (periodic Hann), for the state dict."""

    def __init__(self, window: int):
        super().__init__()
        self.register_buffer("window", hann(window))


class WindowedConvTranspose1d(nn.ConvTranspose1d):
    """The waveform decoder: a transposed convolution whose filters are
    multiplied tap by tap by the periodic Hann window; no bias (the bias
    parameter exists for the state dict only)."""

    def __init__(self, in_channels: int, out_channels: int, window: int,
                 hop: int):
        super().__init__(in_channels, out_channels, window, stride=hop)
        self.register_buffer("window", hann(window))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        win = hann(self.kernel_size[0], x.dtype, x.device)
        return F.conv_transpose1d(x, self.weight * win, None,
                                  stride=self.stride)


class HSTasNet(nn.Module):
    """HS-TasNet, model-spec.md exactly.

    dim = D, num_basis = NB, small = one-layer LSTMs, summed fusion, no
    residuals; channels = C, window = W (hop H = W/2), num_sources = T.
    """

    def __init__(self, dim: int = 500, num_basis: int = 1500,
                 small: bool = False, channels: int = 2, window: int = 1024,
                 num_sources: int = 4):
        super().__init__()
        if window % 2:
            raise ValueError("window must be even")
        self.dim = dim
        self.num_basis = num_basis
        self.small = bool(small)
        self.channels = channels
        self.window = window
        self.hop = window // 2
        self.bins = window // 2 + 1
        self.num_sources = num_sources
        self.mixture_consistency = True   # docs/model.md; off to measure
        self.spec_features = channels * self.bins * 2
        self.lstm_layers = 1 if small else 2
        self.fusion_dim = dim if small else 2 * dim

        D, NB, S, T = dim, num_basis, self.spec_features, num_sources
        L, DF = self.lstm_layers, self.fusion_dim

        self.stft = _Window(window)
        self.spec_encode = nn.Sequential(nn.Identity(), nn.Linear(S, D))
        self.conv_encode = nn.Conv1d(channels, 2 * NB, window,
                                     stride=self.hop)
        self.basis_to_embed = nn.Sequential(nn.Conv1d(NB, D, 1))
        self.pre_spec_branch = nn.LSTM(D, D, L, batch_first=True)
        self.pre_waveform_branch = nn.LSTM(D, D, L, batch_first=True)
        self.fusion_branch = nn.LSTM(DF, DF, L, batch_first=True)
        self.post_spec_branch = nn.LSTM(D, D, L, batch_first=True)
        self.post_waveform_branch = nn.LSTM(D, D, L, batch_first=True)
        self.to_spec_masks = nn.Sequential(RMSNorm(D), nn.Linear(D, T * S))
        self.to_waveform_masks = nn.Sequential(RMSNorm(D),
                                               nn.Linear(D, T * NB))
        self.conv_decode = WindowedConvTranspose1d(NB, channels, window,
                                                   self.hop)

    # ------------------------------------------------------------ helpers

    def _residual(self, lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
        """R(x) = x + LSTM(x), or LSTM(x) in the small variant."""
        y, _ = lstm(x)
        return y if self.small else x + y

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ forward

    def forward(self, audio: torch.Tensor, return_stages: int = 0):
        """Offline form (training mode, causal left pad of H).

        audio: [B, C, N], N a positive multiple of H. Returns [B, T, C, N]
        where output sample j lines up with input sample j; with
        self.mixture_consistency (the default) the T sources of sample j
        add up to input sample j (docs/model.md). With
        return_stages = K > 0 also returns a dict of the first K frames'
        intermediates, stage name -> [B, K, ...] (shapes as
        cpu/cpu_backend.h; frame k = streaming step k).
        """
        B, C, N = audio.shape
        W, H, Fb = self.window, self.hop, self.bins
        D, NB, T, S = self.dim, self.num_basis, self.num_sources, \
            self.spec_features
        if C != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {C}")
        if N < H or N % H:
            raise ValueError(f"length {N} is not a positive multiple of {H}")
        K = N // H  # frames: (N + H - W) / H + 1
        win = hann(W, audio.dtype, audio.device)

        x = F.pad(audio, (H, 0))                      # [B, C, N+H]

        # 1. spectral features, (channel, bin, re/im), re/im fastest
        frames = x.unfold(-1, W, H)                   # [B, C, K, W]
        X = torch.fft.rfft(frames * win, dim=-1)      # [B, C, K, F]
        Xr = torch.view_as_real(X).permute(0, 2, 1, 3, 4)  # [B, K, C, F, 2]
        spec_feat = Xr.reshape(B, K, S)

        # 2. spectral encoder
        spec = self.spec_encode(spec_feat)            # [B, K, D]

        # 3. waveform encoder: a | g, gated
        ag = self.conv_encode(x)                      # [B, 2NB, K]
        a, g = ag.chunk(2, dim=1)
        basis = torch.relu(a) * torch.sigmoid(g)      # [B, NB, K]

        # 4. basis -> embedding
        wave = self.basis_to_embed(basis).transpose(1, 2)  # [B, K, D]

        # 5. trunk
        s1 = self._residual(self.pre_spec_branch, spec)
        w1 = self._residual(self.pre_waveform_branch, wave)
        u = s1 + w1 if self.small else torch.cat((s1, w1), dim=-1)
        v = self._residual(self.fusion_branch, u)     # [B, K, DF]
        if self.small:
            vs, vw = v, v
        else:
            vs, vw = v[..., :D], v[..., D:]
        s2 = self._residual(self.post_spec_branch, vs + spec)
        w2 = self._residual(self.post_waveform_branch, vw + wave)

        # 6. spectral masks (no activation), (ch, bin, re/im, source)
        ms = self.to_spec_masks(s2)                   # [B, K, T*S]
        Y = Xr.unsqueeze(-1) * ms.view(B, K, C, Fb, 2, T)
        Y = Y.permute(0, 1, 5, 2, 3, 4).contiguous()  # [B, K, T, C, F, 2]

        # 7. per-frame inverse: y = w * irfft(Y), then overlap-add / envelope
        y = torch.fft.irfft(torch.view_as_complex(Y), n=W, dim=-1) * win
        # y: [B, K, T, C, W]; W = 2H so frame k's halves land on hops k, k+1
        first = y[..., :H].permute(0, 2, 3, 1, 4).reshape(B, T, C, N)
        second = y[..., H:].permute(0, 2, 3, 1, 4).reshape(B, T, C, N)
        pad = first.new_zeros(B, T, C, H)
        ola = torch.cat((first, pad), -1) + torch.cat((pad, second), -1)
        w2sq = win.square()
        zero = win.new_zeros(H)
        env = torch.cat((w2sq[:H].repeat(K), zero)) + \
            torch.cat((zero, w2sq[H:].repeat(K)))
        spec_audio = ola / env.clamp(min=ENVELOPE_FLOOR)   # [B, T, C, N+H]

        # 8. waveform masks (source, basis), windowed transposed conv
        mw = self.to_waveform_masks(w2)               # [B, K, T*NB]
        masked = basis.unsqueeze(1) * \
            mw.view(B, K, T, NB).permute(0, 2, 3, 1)  # [B, T, NB, K]
        wave_audio = self.conv_decode(masked.reshape(B * T, NB, K))
        wave_audio = wave_audio.view(B, T, C, N + H)

        # 9. sum, drop the causal pad; then the projection onto the input
        out = (spec_audio + wave_audio)[..., H:]
        if self.mixture_consistency:
            out = mix_consistent(out, audio)

        if not return_stages:
            return out

        k = min(int(return_stages), K)
        wdec = self.conv_decode.weight * win          # [NB, C, W]
        z = torch.einsum("btnk,ncw->bktcw", masked[..., :k], wdec)
        stages = {
            "spec_feat": spec_feat[:, :k],
            "spec": spec[:, :k],
            "basis": basis[..., :k].transpose(1, 2),
            "wave": wave[:, :k],
            "s1": s1[:, :k],
            "w1": w1[:, :k],
            "fused": v[:, :k],
            "s2": s2[:, :k],
            "w2": w2[:, :k],
            "spec_mask": ms[:, :k],
            "wave_mask": mw[:, :k],
            "spec_out": y[:, :k],
            "wave_out": z,
        }
        return out, stages

    # ------------------------------------------------------- safetensors

    def to_safetensors(self, path: str, metadata: dict | None = None,
                       dtype: torch.dtype = torch.float32) -> None:
        """Write the state dict as safetensors (spec names), float32 or,
        for shipping, float16 storage (the engines widen on load)."""
        meta = {"sample_rate": "44100",
                "sources": ",".join(DEFAULT_SOURCES[:self.num_sources])}
        meta.update(metadata or {})
        sd = {k: v.detach().to("cpu", torch.float32).contiguous()
              for k, v in self.state_dict().items()}
        save_safetensors(path, sd, meta, dtype)

    @classmethod
    def from_safetensors(cls, path: str) -> "HSTasNet":
        """Build a model whose hyper-parameters are read from the tensor
        shapes (model-spec.md) and load its weights (float32)."""
        sd, _ = load_safetensors(path)
        D, S = sd["spec_encode.1.weight"].shape
        NB2, C, W = sd["conv_encode.weight"].shape
        small = "pre_spec_branch.weight_ih_l1" not in sd
        T = sd["to_spec_masks.1.weight"].shape[0] // S
        model = cls(dim=D, num_basis=NB2 // 2, small=small, channels=C,
                    window=W, num_sources=T)
        if model.spec_features != S:
            raise ValueError(f"spec_encode.1.weight has {S} inputs, "
                             f"expected {model.spec_features}")
        own = model.state_dict()
        for name in ("stft.window", "conv_decode.window"):
            sd.pop(name, None)  # recomputed, never trusted
        for name in list(sd):
            if name not in own:
                sd.pop(name)    # unknown extras are ignored
        missing = [n for n in own if n not in sd and not n.endswith("window")
                   and n != "conv_decode.bias"]
        if missing:
            raise ValueError(f"missing tensor {missing[0]}")
        model.load_state_dict({k: v.float() for k, v in sd.items()},
                              strict=False)
        return model


# ------------------------------------------------------------- streaming

@torch.no_grad()
def stream(model: HSTasNet, audio: torch.Tensor, stages: int = 0,
           mixture_consistency: bool | None = None):
    """The spec's "One frame" section, hop by hop, from the raw weights.

    audio: [C, N], N a multiple of H. Runs N/H steps from zero state and
    returns the emitted hops concatenated, [T, C, N]: hop k of the result
    covers input samples [(k-1)H, kH) (latency W), and with
    mixture_consistency (default: the model's attribute) its T sources
    add up to them (docs/model.md). With stages = K also
    returns the first K steps' intermediates, name -> [K, ...].
    Computes in audio's dtype (float64 for the golden files).
    """
    if mixture_consistency is None:
        mixture_consistency = model.mixture_consistency
    p = {k: v.to(audio.dtype) for k, v in model.state_dict().items()}
    C, N = audio.shape
    W, H, Fb = model.window, model.hop, model.bins
    D, NB, T, S = model.dim, model.num_basis, model.num_sources, \
        model.spec_features
    L, small = model.lstm_layers, model.small
    if N % H:
        raise ValueError(f"length {N} is not a multiple of {H}")
    dt, dev = audio.dtype, audio.device
    w = hann(W, dt, dev)
    env = w[:H].square() + w[H:].square()

    def linear(name, x):
        wt = p[name + ".weight"]
        return wt.reshape(wt.shape[0], -1) @ x + p[name + ".bias"]

    def rms(name, x):
        return x / torch.sqrt(RMS_EPS + x.square().mean()) * p[name]

    hid = {b: [torch.zeros(model.fusion_dim if b == "fusion_branch" else D,
                           dtype=dt, device=dev) for _ in range(2 * L)]
           for b in BRANCHES}

    def lstm(branch, x):
        st = hid[branch]
        inp = x
        for k in range(L):
            h, c = st[2 * k], st[2 * k + 1]
            gates = (p[f"{branch}.weight_ih_l{k}"] @ inp
                     + p[f"{branch}.bias_ih_l{k}"]
                     + p[f"{branch}.weight_hh_l{k}"] @ h
                     + p[f"{branch}.bias_hh_l{k}"])
            i, f, g, o = gates.chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            st[2 * k], st[2 * k + 1] = h, c
            inp = h
        return inp if small else x + inp

    past = torch.zeros(C, H, dtype=dt, device=dev)
    tail_spec = torch.zeros(T, C, H, dtype=dt, device=dev)
    tail_wave = torch.zeros(T, C, H, dtype=dt, device=dev)
    wdec = p["conv_decode.weight"]                    # [NB, C, W]
    out = torch.zeros(T, C, N, dtype=dt, device=dev)
    rec = {name: [] for name in STAGE_NAMES}

    for k in range(N // H):
        x = audio[:, k * H:(k + 1) * H]
        frame = torch.cat((past, x), dim=-1)          # [C, W]
        past = x
        X = torch.fft.rfft(frame * w, dim=-1)         # 1. [C, F]
        Xr = torch.view_as_real(X)                    # [C, F, 2]
        spec_feat = Xr.reshape(S)
        spec = linear("spec_encode.1", spec_feat)     # 2.
        ag = linear("conv_encode", frame.reshape(C * W))  # 3.
        basis = torch.relu(ag[:NB]) * torch.sigmoid(ag[NB:])
        wave = linear("basis_to_embed.0", basis)      # 4.
        s1 = lstm("pre_spec_branch", spec)            # 5.
        w1 = lstm("pre_waveform_branch", wave)
        u = s1 + w1 if small else torch.cat((s1, w1))
        v = lstm("fusion_branch", u)
        vs, vw = (v, v) if small else (v[:D], v[D:])
        s2 = lstm("post_spec_branch", vs + spec)
        w2 = lstm("post_waveform_branch", vw + wave)
        ms = linear("to_spec_masks.1", rms("to_spec_masks.0.weight", s2))
        Y = Xr.unsqueeze(-1) * ms.view(C, Fb, 2, T)   # 6. [C, F, 2, T]
        Y = Y.permute(3, 0, 1, 2).contiguous()        # [T, C, F, 2]
        y = w * torch.fft.irfft(torch.view_as_complex(Y), n=W, dim=-1)  # 7.
        mw = linear("to_waveform_masks.1",
                    rms("to_waveform_masks.0.weight", w2))       # 8.
        m = basis * mw.view(T, NB)                    # [T, NB]
        z = torch.einsum("tn,ncw->tcw", m, wdec) * w  # [T, C, W]
        hop = (tail_spec + y[..., :H]) / env + tail_wave + z[..., :H]  # 9.
        tail_spec, tail_wave = y[..., H:], z[..., H:]
        if mixture_consistency:                       # onto frame[:, :H]
            hop = mix_consistent(hop, frame[:, :H])
        out[..., k * H:(k + 1) * H] = hop
        if k < stages:
            for name, val in zip(STAGE_NAMES, (spec_feat, spec, basis, wave,
                                               s1, w1, v, s2, w2, ms, mw, y,
                                               z)):
                rec[name].append(val)
    if not stages:
        return out
    return out, {n: torch.stack(v) for n, v in rec.items()}


def offline_from_stream(model: HSTasNet, audio: torch.Tensor) -> torch.Tensor:
    """The offline output [T, C, N] computed with stream(): one zero hop fed
    at the end, the first emitted hop dropped. Equal to forward() except the
    last H samples (model-spec.md "offline equivalence")."""
    H = model.hop
    padded = torch.cat((audio, audio.new_zeros(audio.shape[0], H)), dim=-1)
    return stream(model, padded)[..., H:]


# ----------------------------------------------------------- safetensors

_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2),
           "BF16": (torch.bfloat16, 2), "F64": (torch.float64, 8)}


def save_safetensors(path: str, tensors: dict, metadata: dict | None = None,
                     dtype: torch.dtype = torch.float32):
    """Write tensors (name -> tensor) as float32 or float16 with string
    metadata. float16 refuses values it cannot hold rather than writing
    infinities."""
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"unsupported storage dtype {dtype}")
    limit = torch.finfo(dtype).max
    for k, v in tensors.items():
        if v.numel() and float(v.detach().abs().max()) > limit:
            raise ValueError(f"{k}: values beyond {dtype}'s range")
    tensors = {k: v.detach().to("cpu", dtype).contiguous()
               for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        save_file = None
    if save_file is not None:
        save_file(tensors, path, metadata=meta)
        return
    header, blobs, offset = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, t in tensors.items():
        blob = _tensor_bytes(t)
        header[name] = {"dtype": "F16" if t.dtype == torch.float16
                        else "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def load_safetensors(path: str):
    """Read a safetensors file: (name -> float32 tensor, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    base = 8 + n
    out = {}
    for name, ent in header.items():
        dtype, size = _DTYPES[ent["dtype"]]
        begin, end = ent["data_offsets"]
        count = math.prod(ent["shape"])
        if end - begin != count * size:
            raise ValueError(f"{name}: data size does not match its shape")
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=dtype) if count else \
            torch.zeros(0, dtype=dtype)
        out[name] = t.reshape(ent["shape"]).float()
    return out, meta


def _tensor_bytes(t: torch.Tensor) -> bytes:
    half = t.dtype == torch.float16
    try:
        return t.numpy().astype("<f2" if half else "<f4").tobytes()
    except (ImportError, RuntimeError):
        flat = t.reshape(-1).tolist()
        return struct.pack(f"<{len(flat)}{'e' if half else 'f'}", *flat)
