"""Levels and mix of rendered stems (numpy).

Stems are float32 arrays [channels, frames]. A track's sources are each
set to an active-RMS level (the level while the part plays, so a sparse
melody is not pushed up for its rests), their peaks limited to a crest
above that (one loud drum hit must not make the whole track quiet), and
scaled together so that their sum peaks at MIX_CEILING; then stored as
int16 with the sum still below full scale.
"""
from __future__ import annotations

import numpy as np

RATE = 48000
FADE_OUT_S = 0.02          # the cut at the excerpt end, made click-free
SILENCE_PEAK = 1e-4        # -80 dBFS: a stem this quiet is treated as absent
MIX_CEILING = 0.9          # peak of the stems' sum after mixing
INT16_SCALE = 32767.0


def fit_length(x: np.ndarray, frames: int) -> np.ndarray:
    """Trim or zero-pad [C, N] to frames and fade the last FADE_OUT_S out."""
    out = np.zeros((x.shape[0], frames), dtype=np.float32)
    n = min(frames, x.shape[1])
    out[:, :n] = x[:, :n]
    fade = min(int(FADE_OUT_S * RATE), frames)
    out[:, frames - fade:] *= np.arange(fade, 0, -1, dtype=np.float32) / \
        (fade + 1)
    return out


def peak(x: np.ndarray) -> float:
    return float(np.abs(x).max()) if x.size else 0.0


def active_rms(x: np.ndarray, block_s: float = 0.05,
               floor_db: float = -40.0) -> float:
    """RMS over the blocks within floor_db of the loudest block."""
    block = max(int(block_s * RATE), 1)
    n = x.shape[1] // block * block
    if n == 0:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    power = np.square(x[:, :n], dtype=np.float64).reshape(
        x.shape[0], -1, block).mean(axis=(0, 2))
    loudest = power.max()
    if loudest <= 0.0:
        return 0.0
    return float(np.sqrt(power[power >= loudest * 10 ** (floor_db / 10)]
                         .mean()))


def limited(x: np.ndarray, threshold: float, block_s: float = 0.005,
            ramp_s: float = 0.05) -> np.ndarray:
    """Peaks above threshold brought down to it, all channels alike.

    The gain is set at block boundaries: each takes the lower of what its
    two neighbouring blocks need (so no block exceeds the threshold), falls
    toward a peak and recovers after it at most 1 per ramp_s, and is
    interpolated linearly in between. A signal that never exceeds the
    threshold comes back unchanged.
    """
    if peak(x) <= threshold:
        return x.copy()
    block = max(int(block_s * RATE), 1)
    frames = x.shape[1]
    count = -(-frames // block)
    padded = np.zeros((x.shape[0], count * block), dtype=np.float32)
    padded[:, :frames] = np.abs(x)
    block_peak = padded.reshape(x.shape[0], count, block).max(axis=(0, 2))
    need = np.minimum(1.0, threshold / np.maximum(block_peak, 1e-12))
    nodes = np.minimum(need[np.maximum(np.arange(count + 1) - 1, 0)],
                       need[np.minimum(np.arange(count + 1), count - 1)])
    step = block_s / ramp_s
    for k in range(1, count + 1):           # recovery after a peak
        nodes[k] = min(nodes[k], nodes[k - 1] + step)
    for k in range(count - 1, -1, -1):      # smooth fall before a peak
        nodes[k] = min(nodes[k], nodes[k + 1] + step)
    gain = np.interp(np.arange(frames) / block, np.arange(count + 1), nodes)
    return (x * gain[None, :]).astype(np.float32)


def equalise(x: np.ndarray, peaks: list, tilt_db_per_octave: float
             ) -> np.ndarray:
    """A fixed (zero-phase) equaliser applied in the frequency domain:
    bell-shaped gains (centre Hz, gain dB, bandwidth in octaves) on a log
    frequency axis, plus a tilt around 1 kHz capped at +-12 dB."""
    n = x.shape[1]
    freqs = np.fft.rfftfreq(n, 1.0 / RATE)
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    gain_db = np.clip(tilt_db_per_octave * octaves, -12.0, 12.0)
    for centre, db, width in peaks:
        d = np.log2(np.maximum(freqs, 20.0) / centre) / (width / 2)
        gain_db = gain_db + db * np.exp(-np.log(2) * d * d)  # db/2 at +-w/2
    spectrum = np.fft.rfft(x, axis=1) * (10 ** (gain_db / 20))[None, :]
    return np.fft.irfft(spectrum, n=n, axis=1).astype(np.float32)


def level(x: np.ndarray, target_db: float, crest_db: float
          ) -> tuple[np.ndarray, float]:
    """(x at active RMS target_db dBFS with peaks limited crest_db above
    it, the gain applied before limiting)."""
    rms = active_rms(x)
    gain = 10 ** (target_db / 20) / rms
    return limited(x * gain, 10 ** ((target_db + crest_db) / 20)), gain


def to_int16(stems: list) -> tuple[np.ndarray, float]:
    """Stems [C, N] scaled together so that neither their sum nor any one
    of them peaks above MIX_CEILING, as int16 [T, C, N]; and the scale."""
    loudest = max([peak(np.sum(stems, axis=0))] + [peak(s) for s in stems])
    scale = MIX_CEILING / loudest if loudest > MIX_CEILING else 1.0
    out = np.stack([np.round(s * (scale * INT16_SCALE)) for s in stems])
    return np.clip(out, -32768, 32767).astype(np.int16), scale
