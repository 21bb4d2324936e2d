"""Training audio: decode the Opus stems, pack them, draw augmented batches.

The GPU machine has PyTorch and numpy but no audio decoder, so the stems
travel as the Ogg Opus files of ../shared/data and are decoded there with a
carried libopusfile through ctypes (`decode_opus`). `pack` turns a folder of
track folders (one `<source>.opus` per source present, a missing file means
a silent source) into one int16 array [T, C, total] plus a JSON index, so
that a whole data set sits in GPU memory and a batch is drawn without any
host work (`StemBank`, `draw_batch`).

The validation split is fixed here (`VALIDATION`) and never trained on:
10 MUSDB18 excerpts spread over the alphabet and one whole song.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

SOURCES = ("drums", "bass", "vocals", "other")
RATE = 48000
CHANNELS = 2

# A source whose int16 peak over a whole track is at most this is silent
# there (about -60 dBFS).
SILENT_PEAK = 32

# Held out: never trained on, reported as validation SDR.
VALIDATION = {
    "musdb18-7s-train": {
        "Actions - Devil's Words", "AvaLuna - Waterduct",
        "Cnoc An Tursa - Bannockburn", "Flags - 54",
        "James May - Dont Let Go", "Leaf - Wicked", "Music Delta - Disco",
        "Remember December - C U Next Time",
        "Sweet Lights - You Let Me Down",
        "Traffic Experiment - Once More (With Feeling)",
    },
    "everything-is-remixed": {"lithium"},
}


# Tracks whose stems do not follow the four-source split: in these songs
# the bass lines sit inside synth parts, so inside `other`, and `bass` is
# missing (../shared/data/README.md). Their silent `bass` and their
# bass-holding `other` would teach that bass sometimes belongs to other, so
# only the sources listed here are used, as donors to remixed items.
PARTIAL_SOURCES = {
    ("everything-is-remixed", "hydrogen"): ("drums", "vocals"),
    ("everything-is-remixed", "rubidium"): ("drums", "vocals"),
    ("everything-is-remixed", "caesium"): ("drums", "vocals"),
}


def usable_sources(track: dict) -> tuple:
    return PARTIAL_SOURCES.get((track["set"], track["name"]), SOURCES)


# ------------------------------------------------------------ decoding

_opusfile = None


def _libopusfile():
    """libopusfile, from the carried prefix (DEMIX_OPUSFILE) or the system."""
    global _opusfile
    if _opusfile is None:
        path = os.environ.get("DEMIX_OPUSFILE") or \
            ctypes.util.find_library("opusfile") or "libopusfile.so.0"
        lib = ctypes.CDLL(path)
        lib.op_open_file.restype = ctypes.c_void_p
        lib.op_open_file.argtypes = [ctypes.c_char_p,
                                     ctypes.POINTER(ctypes.c_int)]
        lib.op_pcm_total.restype = ctypes.c_int64
        lib.op_pcm_total.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.op_read_float_stereo.restype = ctypes.c_int
        lib.op_read_float_stereo.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int]
        lib.op_free.argtypes = [ctypes.c_void_p]
        _opusfile = lib
    return _opusfile


def decode_opus(path: str) -> np.ndarray:
    """Decode an Ogg Opus file to float32 [2, N] at 48 kHz (mono is
    duplicated by op_read_float_stereo)."""
    lib = _libopusfile()
    err = ctypes.c_int(0)
    handle = lib.op_open_file(path.encode(), ctypes.byref(err))
    if not handle:
        raise ValueError(f"{path}: not a readable Ogg Opus file "
                         f"(opusfile error {err.value})")
    try:
        total = lib.op_pcm_total(handle, -1)
        if total < 0:
            raise ValueError(f"{path}: cannot read its length")
        out = np.zeros((total + 5760) * 2, dtype=np.float32)
        done = 0
        while done < total:
            want = (out.size - 2 * done)
            ptr = out[2 * done:].ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            got = lib.op_read_float_stereo(handle, ptr, want)
            if got < 0:
                raise ValueError(f"{path}: decode error {got} at sample "
                                 f"{done}")
            if got == 0:
                break
            done += got
        return out[:2 * done].reshape(done, 2).T.copy()
    finally:
        lib.op_free(handle)


def _decode_track(folder: str) -> np.ndarray:
    """One track folder -> int16 [T, C, N]; missing sources are zeros."""
    stems = {}
    for i, name in enumerate(SOURCES):
        path = os.path.join(folder, name + ".opus")
        if os.path.exists(path):
            stems[i] = decode_opus(path)
    if not stems:
        raise ValueError(f"{folder}: no source files")
    n = max(s.shape[1] for s in stems.values())
    out = np.zeros((len(SOURCES), CHANNELS, n), dtype=np.int16)
    for i, s in stems.items():
        out[i, :, :s.shape[1]] = np.clip(np.round(s * 32767.0),
                                         -32768, 32767)
    return out


def track_folders(root: str) -> list[str]:
    """Folders under root that hold at least one <source>.opus, sorted."""
    found = []
    for dirpath, _, files in os.walk(root):
        if any(f[:-5] in SOURCES for f in files if f.endswith(".opus")):
            found.append(dirpath)
    return sorted(found)


def pack(root: str, out_prefix: str, jobs: int = 8) -> dict:
    """Decode every track under root into out_prefix.npy (int16 [T, C,
    total]) and out_prefix.json (tracks: name, set, start, length)."""
    folders = track_folders(root)
    if not folders:
        raise ValueError(f"{root}: no track folders with .opus stems")
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        tracks = list(pool.map(_decode_track, folders))
    total = sum(t.shape[2] for t in tracks)
    audio = np.zeros((len(SOURCES), CHANNELS, total), dtype=np.int16)
    index, start = [], 0
    for folder, t in zip(folders, tracks):
        n = t.shape[2]
        audio[:, :, start:start + n] = t
        index.append({"name": os.path.basename(folder),
                      "set": os.path.basename(os.path.dirname(folder)),
                      "start": start, "length": n})
        start += n
    np.save(out_prefix + ".npy", audio)
    meta = {"root": root, "rate": RATE, "sources": list(SOURCES),
            "tracks": index}
    with open(out_prefix + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv=None):
    """python3 audio_data.py SRC_ROOT OUT_PREFIX [JOBS]: pack one set."""
    import sys
    argv = argv or sys.argv[1:]
    if len(argv) not in (2, 3):
        raise SystemExit(main.__doc__)
    meta = pack(argv[0], argv[1], int(argv[2]) if len(argv) == 3 else 8)
    seconds = sum(t["length"] for t in meta["tracks"]) / RATE
    print(f"{argv[1]}: {len(meta['tracks'])} tracks, {seconds / 60:.1f} min")


def is_validation(track: dict) -> bool:
    return track["name"] in VALIDATION.get(track["set"], ())


# ------------------------------------------------------------ sampling

class StemBank:
    """One packed data set on the GPU, split into training and validation
    tracks. Audio stays int16 on the device (2 bytes a sample)."""

    def __init__(self, prefix: str, device, validation: bool = False,
                 audio=None):
        """audio: the tensor of another bank of the same set, to share."""
        import torch
        with open(prefix + ".json") as f:
            meta = json.load(f)
        self.name = os.path.basename(prefix)
        self.tracks = [t for t in meta["tracks"]
                       if is_validation(t) == validation]
        if audio is None:
            audio = torch.from_numpy(np.load(prefix + ".npy")).to(device)
        self.audio = audio
        self.seconds = sum(t["length"] for t in self.tracks) / RATE
        # sampling weights (track length, 0 where a source is not usable):
        # per source for remixed items, all four for one-track items
        lengths = torch.tensor([float(t["length"]) for t in self.tracks])
        ok = torch.tensor([[s in usable_sources(t) for s in SOURCES]
                           for t in self.tracks], dtype=torch.float)
        ok = ok.reshape(len(self.tracks), len(SOURCES))
        self.source_weights = (lengths[:, None] * ok).T.contiguous()
        self.whole_weights = lengths * ok.prod(dim=1)
        # where each source sounds at all (a missing source file packs as
        # silence: an instrumental track's vocals): a cross-set item
        # (draw_batch's `cross`) takes a source only from such tracks
        sounding = torch.tensor(
            [[int(audio[i, :, t["start"]:t["start"] + t["length"]]
                  .abs().max()) > SILENT_PEAK for i in range(len(SOURCES))]
             for t in self.tracks], dtype=torch.float)
        sounding = sounding.reshape(len(self.tracks), len(SOURCES))
        self.sounding_weights = self.source_weights * sounding.T

    def track_audio(self, track: dict):
        """float32 [T, C, N] of one whole track."""
        s = track["start"]
        return self.audio[:, :, s:s + track["length"]].float() / 32768.0


def draw_batch(banks, weights, batch: int, length: int, gen, remix: float,
               stretch: float, cross: float = 0.0):
    """A batch of `length` samples per item: targets [B, T, C, length].

    Each item takes its bank by `weights`; with probability `remix` each
    source comes from its own random track of that bank (remixing across
    songs), else all from one track; tracks are drawn by length, among
    those whose source is usable (PARTIAL_SOURCES). With probability
    `cross` (taken first) an item is remixed across sets: each source
    comes from a bank drawn by `weights` among those where it sounds, and
    from a track of that bank where it does, so that instrumental sets
    get voices laid over them and every set's parts meet every other's.
    Each source gets a random gain
    (-9..+3 dB), a random channel swap, and with probability 0.5 an item
    is resampled by a factor in [1 - stretch, 1 + stretch] (a cheap joint
    pitch and tempo change, by linear interpolation). A mixture that would
    clip is scaled down with its sources.
    """
    import torch
    import torch.nn.functional as F
    device = banks[0].audio.device
    T, C = len(SOURCES), CHANNELS
    w = torch.tensor(weights, dtype=torch.float)
    which = torch.multinomial(w, batch, replacement=True, generator=gen)
    # per source, the banks where it sounds somewhere, by weight
    sounding = torch.tensor([[wt if float(bk.sounding_weights[t].sum()) > 0
                              else 0.0 for bk, wt in zip(banks, weights)]
                             for t in range(T)])
    # read a little extra so that stretching never runs out of samples
    span = int(length * (1 + stretch)) + 2
    out = torch.empty(batch, T, C, span, device=device)

    def offset(track):
        return torch.randint(0, max(1, track["length"] - span), (1,),
                             generator=gen).item()

    for b in range(batch):
        bank = banks[int(which[b])]
        across = cross > 0 and torch.rand(1, generator=gen).item() < cross
        one = not across and \
            torch.rand(1, generator=gen).item() >= remix and \
            bank.whole_weights.sum() > 0
        if one:
            tr = bank.tracks[torch.multinomial(bank.whole_weights, 1,
                                               generator=gen).item()]
            off = offset(tr)
            parts = [(bank, tr, off)] * T
        else:
            picks = []
            for t in range(T):
                bk = bank
                if across and sounding[t].sum() > 0:
                    bk = banks[torch.multinomial(sounding[t], 1,
                                                 generator=gen).item()]
                pool = bk.sounding_weights[t] if across else \
                    bk.source_weights[t]
                if pool.sum() <= 0:
                    pool = bk.source_weights[t]
                picks.append((bk, bk.tracks[torch.multinomial(
                    pool, 1, generator=gen).item()]))
            parts = [(bk, tr, offset(tr)) for bk, tr in picks]
        for t, (bk, tr, off) in enumerate(parts):
            seg = bk.audio[t, :, tr["start"] + off:
                           tr["start"] + min(off + span, tr["length"])]
            n = seg.shape[1]
            out[b, t, :, :n] = seg.float() / 32768.0
            if n < span:
                out[b, t, :, n:] = 0
    # gains, channel swaps
    gains = 10 ** (torch.empty(batch, T, 1, 1).uniform_(
        -9, 3, generator=gen) / 20)
    out *= gains.to(device)
    swap = (torch.rand(batch, T, generator=gen) < 0.5).to(device)
    out = torch.where(swap[..., None, None], out.flip(2), out)
    # stretch: resample [span] -> [length] with a random factor per item
    factors = 1 + (torch.rand(batch, generator=gen) * 2 - 1) * stretch
    factors = torch.where(torch.rand(batch, generator=gen) < 0.5, factors,
                          torch.ones(batch))
    pos = torch.arange(length, dtype=torch.float)[None, :] * factors[:, None]
    grid_x = (pos / (span - 1)) * 2 - 1                  # [B, length]
    grid = torch.stack((grid_x, torch.zeros_like(grid_x)), -1)  # [B, L, 2]
    grid = grid[:, None].to(device)                      # [B, 1, L, 2]
    flat = out.reshape(batch, T * C, 1, span)
    out = F.grid_sample(flat, grid, mode="bilinear", align_corners=True)
    out = out.reshape(batch, T, C, length)
    peak = out.sum(1).abs().amax(dim=(1, 2)).clamp(min=1e-9)
    scale = torch.where(peak > 0.99, 0.99 / peak, torch.ones_like(peak))
    return out * scale[:, None, None, None]


if __name__ == "__main__":
    main()
