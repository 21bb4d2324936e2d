"""Tests of teacher_stems.py's window choice and stem arithmetic.

Run: python3 -m unittest discover -s train -p 'test_teacher*.py'
(numpy only; needs neither the teacher nor the Debian music packages).
"""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import teacher_stems as T  # noqa: E402

RATE = T.TEACHER_RATE


def track(loud_seconds, total_seconds):
    """Quiet noise with loud stretches at the given (start, end) seconds."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((total_seconds * RATE, 2)).astype(np.float32)
    x *= 0.001
    for a, b in loud_seconds:
        x[a * RATE:b * RATE] *= 300
    return x


class LoudestWindows(unittest.TestCase):
    def test_finds_the_loud_stretches_in_order(self):
        x = track([(100, 140), (20, 60)], 200)
        self.assertEqual(T.loudest_windows(x, 2, 40),
                         [20 * RATE, 100 * RATE])

    def test_windows_do_not_overlap(self):
        x = track([(50, 90)], 200)
        a, b = T.loudest_windows(x, 2, 40)
        self.assertEqual(a % RATE, 0)
        self.assertGreaterEqual(b - a, 40 * RATE)
        self.assertIn(50 * RATE, (a, b))

    def test_a_short_file_is_one_window_from_the_start(self):
        self.assertEqual(T.loudest_windows(track([], 30), 2, 40), [0])

    def test_windows_lie_inside_the_file_and_apart(self):
        starts = T.loudest_windows(track([], 200), 5, 40)
        self.assertTrue(1 <= len(starts) <= 5)
        self.assertTrue(all(a + 40 * RATE <= 200 * RATE for a in starts))
        self.assertTrue(all(b - a >= 40 * RATE
                            for a, b in zip(starts, starts[1:])))

    def test_silence_gives_no_window(self):
        x = np.zeros((200 * RATE, 2), np.float32)
        self.assertEqual(T.loudest_windows(x, 2, 40), [])


class Resample(unittest.TestCase):
    def test_a_sine_keeps_its_frequency_and_level(self):
        t = np.arange(48000 * 2) / 48000
        x = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2, 1).astype(np.float32)
        y = T.resample(x, 48000, RATE)
        self.assertEqual(len(y), 2 * RATE)
        t2 = np.arange(len(y)) / RATE
        ref = np.sin(2 * np.pi * 1000 * t2)
        mid = slice(RATE // 4, -RATE // 4)
        self.assertLess(np.abs(y[mid, 0] - ref[mid]).max(), 1e-3)

    def test_the_same_rate_is_untouched(self):
        x = np.ones((10, 2), np.float32)
        self.assertIs(T.resample(x, RATE, RATE), x)


class StemArithmetic(unittest.TestCase):
    def test_residual_of_stems_that_add_up_is_tiny(self):
        rng = np.random.default_rng(2)
        parts = {s: rng.standard_normal((1000, 2)).astype(np.float32)
                 for s in T.TEACHER_SOURCES}
        x = sum(parts.values())
        self.assertLess(T.residual_of(x, parts), -100)

    def test_residual_of_a_tenth_missing_is_minus_20_db(self):
        x = np.ones((1000, 2), np.float32)
        parts = {"drums": 0.9 * x, "bass": 0 * x, "other": 0 * x,
                 "vocals": 0 * x}
        self.assertAlmostEqual(T.residual_of(x, parts), -20.0, places=4)

    def test_stems_that_miss_the_mixture_are_not_kept(self):
        x = np.ones((1000, 2), np.float32)
        close = {"drums": 0.9 * x, "bass": 0 * x, "other": 0 * x,
                 "vocals": 0 * x}                    # -20 dB: kept
        self.assertIsNone(T.teacher_missed(x, close))
        off = {"drums": -0.5 * x, "bass": 0 * x, "other": 0 * x,
               "vocals": 0 * x}                      # +3.5 dB: not kept
        self.assertIn("miss the mixture by 3.5 dB", T.teacher_missed(x, off))

    def test_guitar_goes_to_other_cut_or_padded(self):
        stems = {s: np.zeros((10, 2), np.float32) for s in T.TEACHER_SOURCES}
        T.add_to_other(stems, np.ones((4, 2), np.float32))
        np.testing.assert_array_equal(stems["other"][:4], 1)
        np.testing.assert_array_equal(stems["other"][4:], 0)
        T.add_to_other(stems, np.ones((30, 2), np.float32))
        self.assertEqual(stems["other"].shape, (10, 2))
        self.assertEqual(float(stems["drums"].sum()), 0)


if __name__ == "__main__":
    unittest.main()
