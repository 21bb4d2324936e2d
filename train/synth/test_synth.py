"""Tests of the MIDI codec, the arrangement helpers and the limiter.

Run: python3 -m unittest discover -s train/synth  (standard library only;
needs neither fluidsynth nor the data archives).
"""
import math
import os
import random
import struct
import sys
import unittest
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import render  # noqa: E402
import smf  # noqa: E402
import wavfile  # noqa: E402


def chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">I", len(body)) + body


class MidiReadTest(unittest.TestCase):
    def test_type0_running_status_velocity_zero_and_sysex(self):
        body = bytes([
            0x00, 0xFF, 0x51, 0x03, 0x07, 0xA1, 0x20,   # tempo 500000
            0x00, 0xC1, 0x35,                           # program 53, ch 2
            0x00, 0x91, 60, 100,                        # note on ch 2
            0x10, 64, 90,                               # running status
            0x20, 60, 0,                                # on vel 0 = off
            0x00, 0xF0, 0x02, 0x7E, 0xF7,               # sysex
            0x08, 0x81, 64, 0x40,                       # note off
            0x00, 0xFF, 0x2F, 0x00])
        data = chunk(b"MThd", struct.pack(">HHH", 0, 1, 96)) + \
            chunk(b"MTrk", body)
        midi = smf.parse_midi(data)
        self.assertEqual((midi.format, midi.division), (0, 96))
        notes = smf.notes_of(midi.tracks[0])
        self.assertEqual([(n.start, n.end, n.pitch, n.velocity, n.channel)
                          for n in notes],
                         [(0, 48, 60, 100, 1), (16, 56, 64, 90, 1)])
        programs = [e.a for e in midi.tracks[0] if e.kind == "program"]
        self.assertEqual(programs, [53])
        self.assertEqual(smf.TempoMap(midi).tempo_at(0), 500000)

    def test_data_byte_without_running_status_is_an_error(self):
        data = chunk(b"MThd", struct.pack(">HHH", 0, 1, 96)) + \
            chunk(b"MTrk", bytes([0x00, 60, 100]))
        with self.assertRaises(smf.MidiError):
            smf.parse_midi(data)

    def test_truncated_track_is_an_error(self):
        data = chunk(b"MThd", struct.pack(">HHH", 1, 1, 96)) + \
            b"MTrk" + struct.pack(">I", 100) + bytes([0x00, 0x90, 60])
        with self.assertRaises(smf.MidiError):
            smf.parse_midi(data)


class MidiWriteTest(unittest.TestCase):
    def test_round_trip_keeps_notes_programs_and_tempo(self):
        notes = [smf.Note(0, 120, 60, 80), smf.Note(120, 240, 60, 81),
                 smf.Note(100, 700, 43, 90)]
        tracks = [[smf.tempo_event(0, 600000), smf.tempo_event(480, 400000)],
                  [smf.Event(0, "program", 3, 33)]
                  + smf.note_events(notes, 3)]
        data = smf.encode_midi(smf.MidiFile(480, tracks, 1), end_tick=960)
        back = smf.parse_midi(data)
        got = smf.notes_of(back.tracks[1])
        self.assertEqual([(n.start, n.end, n.pitch, n.velocity, n.channel)
                          for n in got],
                         [(0, 120, 60, 80, 3), (100, 700, 43, 90, 3),
                          (120, 240, 60, 81, 3)])
        self.assertEqual(smf.encode_midi(back, end_tick=960), data)
        # The repeated note's off and on at tick 120 keep their order.
        tempo = smf.TempoMap(back)
        self.assertAlmostEqual(tempo.seconds_at(480), 0.6)
        self.assertAlmostEqual(tempo.seconds_at(960), 1.0)
        self.assertEqual(tempo.tick_at(1.0), 960)

    def test_running_status_shrinks_the_file(self):
        notes = [smf.Note(i * 10, i * 10 + 5, 60 + i, 100) for i in range(8)]
        data = smf.encode_midi(smf.MidiFile(96, [smf.note_events(notes, 0)],
                                            0))
        # 16 events, offs written as velocity-0 ons: one status byte.
        self.assertEqual(data.count(bytes([0x90])), 1)


class ArrangementTest(unittest.TestCase):
    def test_beat_grid_finds_an_offset_phase(self):
        division, phase = 480, 37
        notes = []
        for beat in range(64):
            start = phase + beat * division
            pitch = 48 if beat % 4 == 0 else 50 + beat % 3
            notes.append(smf.Note(start, start + 400, pitch, 80))
            notes.append(smf.Note(start + 240, start + 300, 72, 60))
        beat_phase, bar_phase = render.beat_grid(notes, division)
        self.assertEqual(beat_phase, phase)
        self.assertEqual(bar_phase % division, phase)

    def test_bass_line_uses_notes_below_middle_c_and_folds(self):
        piano = [smf.Note(0, 480, 52, 80), smf.Note(0, 480, 64, 80),
                 smf.Note(480, 960, 67, 80), smf.Note(960, 1440, 47, 80)]
        for pattern in ("follow", "quarters", "eighths", "sustain"):
            line = render.bass_line(piano, 480, 0, pattern,
                                    random.Random(1))
            self.assertTrue(line, pattern)
            self.assertTrue({n.pitch for n in line} <= {52, 47}, pattern)
        self.assertEqual(render.fold(52, render.BASS_LOW, render.BASS_HIGH),
                         40)
        self.assertEqual(render.fold(20, render.BASS_LOW, render.BASS_HIGH),
                         32)

    def test_drum_part_stays_in_its_window_at_the_song_tempo(self):
        # A one-bar groove at 100 bpm, kick on every beat.
        groove_notes = [smf.Note(b * 480, b * 480 + 60, 36, 100)
                        for b in range(4)] + [smf.Note(240, 260, 22, 80)]
        groove = smf.MidiFile(480, [[smf.tempo_event(0, 600000)]
                                    + smf.note_events(groove_notes, 9)], 0)
        notes, info = render.drum_part(groove, "straight", 600000, 8 * 480,
                                       480, random.Random(3))
        self.assertEqual(info["tempo_factor"], 1.0)
        kicks = sorted(n.start for n in notes if n.pitch == 36)
        self.assertEqual(kicks, [b * 480 for b in range(8)])
        self.assertIn(42, {n.pitch for n in notes})  # TD-11 22 -> GM 42
        self.assertNotIn(22, {n.pitch for n in notes})
        # Twice as fast a song plays the groove at half time.
        _, info = render.drum_part(groove, "straight", 300000, 8 * 480, 480,
                                   random.Random(3))
        self.assertEqual(info["tempo_factor"], 0.5)


class LevelTest(unittest.TestCase):
    def test_limiter_caps_peaks_and_leaves_quiet_signals_alone(self):
        sine = array("f", [0.5 * math.sin(2 * math.pi * 440 * i / 48000)
                           for i in range(24000) for _ in (0, 1)])
        self.assertEqual(wavfile.limited(sine, 2, 48000, 0.6), sine)
        capped = wavfile.limited(sine, 2, 48000, 0.25)
        self.assertLessEqual(wavfile.peak(capped), 0.25 + 1e-6)
        self.assertGreater(wavfile.peak(capped), 0.2)

    def test_active_rms_ignores_rests(self):
        tone = [0.1 * math.sin(2 * math.pi * 100 * i / 48000)
                for i in range(48000)]
        with_rest = array("f", [v for v in tone + [0.0] * 48000
                                for _ in (0, 1)])
        rms = wavfile.active_rms(with_rest, 2, 48000)
        self.assertAlmostEqual(rms, 0.1 / math.sqrt(2), places=3)


if __name__ == "__main__":
    unittest.main()
