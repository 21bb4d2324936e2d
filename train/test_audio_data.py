"""Tests of audio_data.draw_batch's set mixing (needs torch: run by
train/preflight.sh, which needs it anyway, not by ctest, whose machine has
no torch).

Two small packed sets are written here: "band" (every source sounds) and
"instrumental" (vocals silent in every track, as an instrumental set's
missing vocals file packs). The band's sources are constants, the
instrumental set's alternate in sign sample by sample, so a drawn source
says which set it came from whatever its random gain (no stretching).
"""
import json
import os
import tempfile
import unittest

import numpy as np
import torch

from audio_data import SOURCES, StemBank, draw_batch

LENGTH = 4800
TRACK = 48000
VOCALS, DRUMS = SOURCES.index("vocals"), SOURCES.index("drums")


def write_set(folder, name, alternating, silent=()):
    sign = np.where(np.arange(TRACK) % 2, -1, 1) if alternating else 1
    tracks, audio = [], []
    for k in range(3):
        a = np.zeros((len(SOURCES), 2, TRACK), dtype=np.int16)
        for i, s in enumerate(SOURCES):
            if s not in silent:
                a[i] = (1000 + 100 * i) * sign
        audio.append(a)
        tracks.append({"name": f"{name}{k}", "set": name,
                       "start": k * TRACK, "length": TRACK})
    np.save(os.path.join(folder, name + ".npy"), np.concatenate(audio, 2))
    with open(os.path.join(folder, name + ".json"), "w") as f:
        json.dump({"tracks": tracks}, f)
    return StemBank(os.path.join(folder, name), "cpu")


def origin(source):
    """"silent", "band" or "instrumental": one drawn source [C, LENGTH]."""
    if float(source.abs().max()) == 0:
        return "silent"
    return "instrumental" if float(source[0, 0] * source[0, 1]) < 0 \
        else "band"


class DrawTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.band = write_set(cls.dir.name, "band", False)
        cls.inst = write_set(cls.dir.name, "instrumental", True,
                             silent=("vocals",))
        cls.banks = [cls.band, cls.inst]

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_silent_source_is_known(self):
        self.assertEqual(float(self.inst.sounding_weights[VOCALS].sum()), 0)
        self.assertGreater(float(self.inst.source_weights[VOCALS].sum()), 0)
        self.assertGreater(float(self.band.sounding_weights[VOCALS].sum()),
                           0)

    def test_without_cross_items_keep_their_set(self):
        gen = torch.Generator().manual_seed(3)
        x = draw_batch(self.banks, [0.5, 0.5], 64, LENGTH, gen,
                       remix=0.5, stretch=0.0)
        kinds = [(origin(x[b, DRUMS]), origin(x[b, VOCALS]))
                 for b in range(64)]
        self.assertEqual(set(kinds), {("band", "band"),
                                      ("instrumental", "silent")})

    def test_cross_lays_voices_over_every_item(self):
        gen = torch.Generator().manual_seed(4)
        x = draw_batch(self.banks, [0.2, 0.8], 64, LENGTH, gen,
                       remix=0.5, stretch=0.0, cross=1.0)
        self.assertEqual({origin(x[b, VOCALS]) for b in range(64)},
                         {"band"})
        drums = [origin(x[b, DRUMS]) for b in range(64)]
        # drums by the sets' weights (0.2 : 0.8)
        self.assertGreater(drums.count("instrumental"), 32)
        self.assertGreater(drums.count("band"), 2)

    def test_same_seed_same_batch(self):
        a = draw_batch(self.banks, [0.5, 0.5], 8, LENGTH,
                       torch.Generator().manual_seed(9), 0.5, 0.05, 0.3)
        b = draw_batch(self.banks, [0.5, 0.5], 8, LENGTH,
                       torch.Generator().manual_seed(9), 0.5, 0.05, 0.3)
        self.assertTrue(torch.equal(a, b))


if __name__ == "__main__":
    unittest.main()
