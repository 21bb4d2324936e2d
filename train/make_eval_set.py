"""Write the held-out validation split (audio_data.VALIDATION) as a
`demix eval` data set: DIR/<track>/mixture.wav and <source>.wav, 32-bit
float WAV at 48 kHz, the mixture the exact sum of the decoded stems (as in
training and in train.py's validation), silent sources left out.

  python3 train/make_eval_set.py DATA_ROOT OUT_DIR
  (DATA_ROOT: ../shared/data, or any folder with the same set folders)

Needs numpy and libopusfile (Debian: python3-numpy libopusfile0).
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from audio_data import RATE, SOURCES, VALIDATION, decode_opus  # noqa: E402


def write_float_wav(path, audio):
    """audio: float32 [C, N] -> WAVE_FORMAT_IEEE_FLOAT file."""
    c, n = audio.shape
    data = np.ascontiguousarray(audio.T, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, c, RATE, RATE * c * 4, c * 4, 32)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data))
                + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        f.write(b"data" + struct.pack("<I", len(data)) + data)


def main(argv):
    if len(argv) != 2:
        raise SystemExit(__doc__)
    root, out = argv
    for set_name, tracks in sorted(VALIDATION.items()):
        for track in sorted(tracks):
            folder = os.path.join(root, set_name, track)
            stems = {}
            for s in SOURCES:
                path = os.path.join(folder, s + ".opus")
                if os.path.exists(path):
                    stems[s] = decode_opus(path)
            if not stems:
                raise SystemExit(f"{folder}: no stems")
            n = max(x.shape[1] for x in stems.values())
            # int16 round trip: exactly what train.py validated on
            for s, x in stems.items():
                q = np.clip(np.round(x * 32767.0), -32768, 32767)
                y = np.zeros((2, n), dtype=np.float32)
                y[:, :x.shape[1]] = q / 32768.0
                stems[s] = y
            dest = os.path.join(out, track)
            os.makedirs(dest, exist_ok=True)
            write_float_wav(os.path.join(dest, "mixture.wav"),
                            sum(stems.values()))
            for s, y in stems.items():
                write_float_wav(os.path.join(dest, s + ".wav"), y)
            print(f"{dest}: {n / RATE:.1f} s, {', '.join(stems)}")


if __name__ == "__main__":
    main(sys.argv[1:])
