"""Read and write the WAV files between fluidsynth, opusenc and opusdec.

Standard library only: samples travel as array('f') of interleaved frames,
and every loop over samples is a C-level map/zip/sum, so a 30 s stereo
stem takes a fraction of a second.
"""
from __future__ import annotations

import struct
import sys
import wave
from array import array

_PCM = 1
_IEEE_FLOAT = 3
_EXTENSIBLE = 0xFFFE


def read_wav(path: str) -> tuple[array, int, int]:
    """(interleaved float samples in [-1, 1], channels, rate) of a 16-bit
    PCM or 32-bit float WAV file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, samples = 12, None, None
    while pos + 8 <= len(data):
        chunk_id = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise ValueError(f"{path}: fmt chunk of {len(body)} bytes")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH",
                                                            body[:16])
            if tag == _EXTENSIBLE and len(body) >= 26:
                (tag,) = struct.unpack("<H", body[24:26])  # sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            samples = body
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise ValueError(f"{path}: no fmt or no data chunk")
    tag, channels, rate, bits = fmt
    if tag == _IEEE_FLOAT and bits == 32:
        out = array("f")
        out.frombytes(samples[:len(samples) // 4 * 4])
    elif tag == _PCM and bits == 16:
        ints = array("h")
        ints.frombytes(samples[:len(samples) // 2 * 2])
        if sys.byteorder == "big":
            ints.byteswap()
        out = array("f", map((1.0 / 32768.0).__mul__, ints))
        return out, channels, rate
    else:
        raise ValueError(f"{path}: WAV format tag {tag} with {bits} bits "
                         "(only 16-bit PCM and 32-bit float are read)")
    if sys.byteorder == "big":
        out.byteswap()
    return out, channels, rate


def write_wav16(path: str, samples: array, channels: int, rate: int) -> None:
    """16-bit PCM WAV; samples must already lie within [-1, 1]."""
    ints = array("h", map(round, map(32767.0.__mul__, samples)))
    if sys.byteorder == "big":
        ints.byteswap()
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(ints.tobytes())


def peak(samples: array) -> float:
    if not samples:
        return 0.0
    return max(max(samples), -min(samples))


def active_rms(samples: array, channels: int, rate: int,
               block_s: float = 0.05, floor_db: float = -40.0) -> float:
    """RMS over the blocks whose level is within floor_db of the loudest
    block: the level of a part while it plays, so a sparse melody is not
    pushed up for its rests."""
    block = max(int(block_s * rate) * channels, 1)
    powers = []
    for i in range(0, len(samples), block):
        seg = samples[i:i + block]
        powers.append(sum(map(float.__mul__, seg, seg)) / len(seg))
    loudest = max(powers, default=0.0)
    if loudest <= 0.0:
        return 0.0
    threshold = loudest * 10.0 ** (floor_db / 10.0)
    active = [p for p in powers if p >= threshold]
    return (sum(active) / len(active)) ** 0.5


def limited(samples: array, channels: int, rate: int, threshold: float,
            block_s: float = 0.005, ramp_s: float = 0.05) -> array:
    """Peaks above threshold brought down to it, both channels alike.

    The gain is set at block boundaries: each boundary takes the lower of
    what its two neighbouring blocks need (so a block never exceeds the
    threshold), falls toward a peak and recovers after it at most 1 per
    ramp_s, and is interpolated linearly in between. A signal that never
    exceeds threshold comes back unchanged.
    """
    if peak(samples) <= threshold:
        return array("f", samples)
    block = max(int(block_s * rate), 1) * channels
    count = (len(samples) + block - 1) // block
    need = [min(1.0, threshold / max(peak(samples[b * block:(b + 1) *
                                                 block]), 1e-12))
            for b in range(count)]
    nodes = [min(need[max(k - 1, 0)], need[min(k, count - 1)])
             for k in range(count + 1)]
    step = block_s / ramp_s
    for k in range(1, count + 1):           # recovery after a peak
        nodes[k] = min(nodes[k], nodes[k - 1] + step)
    for k in range(count - 1, -1, -1):      # smooth fall before a peak
        nodes[k] = min(nodes[k], nodes[k + 1] + step)
    frames = block // channels
    gains = array("f")
    for b in range(count):
        g0, g1 = nodes[b], nodes[b + 1]
        n = min(block, len(samples) - b * block) // channels
        if g0 == g1 == 1.0:
            gains.extend([1.0] * (n * channels))
            continue
        for i in range(n):
            g = g0 + (g1 - g0) * i / frames
            gains.extend([g] * channels)
    return array("f", map(float.__mul__, samples, gains))


def scaled(samples: array, gain: float) -> array:
    return array("f", map(gain.__mul__, samples))


def mixed(stems: list) -> array:
    """Sample-wise sum of equal-length stems."""
    if len(stems) == 1:
        return array("f", stems[0])
    return array("f", map(sum, zip(*stems)))
