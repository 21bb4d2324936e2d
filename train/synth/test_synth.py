"""Tests of the synthetic renderer: the MIDI codec, the arrangement
helpers, the sung-like expression, the soundfont subsetter and choice,
levels, and a whole render (twice, for reproducibility).

Run: python3 -m unittest discover -s train/synth  (needs numpy; the render
test needs fluidsynth and Debian's TimGM6mb soundfont, which
scripts/install-deps.sh installs; no data archives: the test writes its
own song and groove).
"""
import io
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arrange  # noqa: E402
import mixdown  # noqa: E402
import sf2  # noqa: E402
import smf  # noqa: E402
import soundfonts  # noqa: E402
import voice  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TIMGM6MB = "/usr/share/sounds/sf2/TimGM6mb.sf2"


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
        beat_phase, bar_phase = arrange.beat_grid(notes, division)
        self.assertEqual(beat_phase, phase)
        self.assertEqual(bar_phase % division, phase)

    def test_bass_line_uses_notes_below_middle_c_and_folds(self):
        piano = [smf.Note(0, 480, 52, 80), smf.Note(0, 480, 64, 80),
                 smf.Note(480, 960, 67, 80), smf.Note(960, 1440, 47, 80)]
        for pattern in ("follow", "quarters", "eighths", "sustain"):
            line = arrange.bass_line(piano, 480, 0, pattern,
                                    random.Random(1))
            self.assertTrue(line, pattern)
            self.assertTrue({n.pitch for n in line} <= {52, 47}, pattern)
        self.assertEqual(arrange.fold(52, arrange.BASS_LOW, arrange.BASS_HIGH),
                         40)
        self.assertEqual(arrange.fold(20, arrange.BASS_LOW, arrange.BASS_HIGH),
                         32)

    def test_drum_part_stays_in_its_window_at_the_song_tempo(self):
        # A one-bar groove at 100 bpm, kick on every beat.
        groove_notes = [smf.Note(b * 480, b * 480 + 60, 36, 100)
                        for b in range(4)] + [smf.Note(240, 260, 22, 80)]
        groove = smf.MidiFile(480, [[smf.tempo_event(0, 600000)]
                                    + smf.note_events(groove_notes, 9)], 0)
        notes, info = arrange.drum_part(groove, "straight", 600000, 8 * 480,
                                       480, random.Random(3))
        self.assertEqual(info["tempo_factor"], 1.0)
        kicks = sorted(n.start for n in notes if n.pitch == 36)
        self.assertEqual(kicks, [b * 480 for b in range(8)])
        self.assertIn(42, {n.pitch for n in notes})  # TD-11 22 -> GM 42
        self.assertNotIn(22, {n.pitch for n in notes})
        # Twice as fast a song plays the groove at half time.
        _, info = arrange.drum_part(groove, "straight", 300000, 8 * 480, 480,
                                   random.Random(3))
        self.assertEqual(info["tempo_factor"], 0.5)


class LevelTest(unittest.TestCase):
    def sine(self, amplitude, seconds=0.5):
        t = np.arange(int(seconds * 48000)) / 48000
        x = amplitude * np.sin(2 * np.pi * 440 * t)
        return np.stack([x, x]).astype(np.float32)

    def test_limiter_caps_peaks_and_leaves_quiet_signals_alone(self):
        sine = self.sine(0.5)
        np.testing.assert_array_equal(mixdown.limited(sine, 0.6), sine)
        capped = mixdown.limited(sine, 0.25)
        self.assertLessEqual(mixdown.peak(capped), 0.25 + 1e-6)
        self.assertGreater(mixdown.peak(capped), 0.2)

    def test_active_rms_ignores_rests(self):
        x = np.concatenate([self.sine(0.1, 1.0), np.zeros((2, 48000),
                                                          np.float32)], 1)
        self.assertAlmostEqual(mixdown.active_rms(x), 0.1 / math.sqrt(2),
                               places=3)

    def test_fit_length_pads_and_fades(self):
        x = mixdown.fit_length(np.ones((2, 100), np.float32), 2000)
        self.assertEqual(x.shape, (2, 2000))
        self.assertEqual(x[0, 99], 1.0)
        self.assertEqual(x[0, 100], 0.0)
        y = mixdown.fit_length(np.ones((2, 5000), np.float32), 2000)
        self.assertEqual(y[0, 0], 1.0)
        self.assertLess(y[0, -1], 0.01)

    def test_equalise_boosts_its_band_only(self):
        t = np.arange(48000) / 48000
        x = np.stack([np.sin(2 * np.pi * 500 * t) +
                      np.sin(2 * np.pi * 4000 * t)] * 2).astype(np.float32)
        y = mixdown.equalise(x, [(500.0, 6.0, 0.5)], 0.0)
        spec_x, spec_y = np.abs(np.fft.rfft(x[0])), np.abs(np.fft.rfft(y[0]))
        self.assertAlmostEqual(20 * np.log10(spec_y[500] / spec_x[500]),
                               6.0, places=1)
        self.assertAlmostEqual(20 * np.log10(spec_y[4000] / spec_x[4000]),
                               0.0, places=1)

    def test_mix_never_clips_and_keeps_the_ratio(self):
        a, b = self.sine(0.8), self.sine(0.6)
        out, scale = mixdown.to_int16([a, b])
        total = out.astype(np.int32).sum(0) / 32768
        self.assertLessEqual(np.abs(total).max(), mixdown.MIX_CEILING + 1e-3)
        self.assertAlmostEqual(np.abs(out[0]).max() / np.abs(out[1]).max(),
                               0.8 / 0.6, places=3)


class VoiceTest(unittest.TestCase):
    def test_bends_stay_in_range_and_reset_after_each_note(self):
        tempo = smf.TempoMap(smf.MidiFile(480, [[smf.tempo_event(0,
                                                                 500000)]]))
        notes = [smf.Note(0, 960, 60, 90), smf.Note(960, 1200, 62, 90),
                 smf.Note(1440, 3360, 64, 90)]
        events = voice.expression(notes, tempo, 0, random.Random(5))
        bends = [e for e in events if e.kind == "pitch_bend"]
        values = [(e.b << 7 | e.a) - 8192 for e in bends]
        # +-(45 * 1.3 vibrato + 120 scoop + 4 sigma of 10 cents) of 200
        limit = (45 * 1.3 + 120 + 40) / voice.BEND_RANGE_CENTS * 8192
        self.assertLessEqual(max(abs(v) for v in values), limit)
        self.assertGreater(max(abs(v) for v in values), 0)
        for n in notes:      # back to pitch where each note ends
            self.assertIn(8192, [e.b << 7 | e.a for e in bends
                                 if e.tick == n.end], n)
        # the long note's vibrato swings both ways after its delay
        late = [v for e, v in zip(bends, values) if 1800 < e.tick < 3300]
        self.assertLess(min(late), max(late) - 100)
        again = voice.expression(notes, tempo, 0, random.Random(5))
        self.assertEqual(events, again)


def tiny_font(with_drums=True) -> bytes:
    """A SoundFont of two melodic presets (one on a stereo pair) and a drum
    kit, each sample a distinct ramp."""
    samples, smpl = [], bytearray()
    for i, (kind, link) in enumerate([(1, 0), (4, 2), (2, 1), (1, 0)]):
        start = len(smpl) // 2
        smpl += struct.pack("<100h", *[(i + 1) * 100 + k for k in
                                      range(100)]) + bytes(92)
        samples.append(sf2.Sample(f"s{i}".encode(), start, start + 100,
                                  start + 10, start + 90, 44100, 60, 0,
                                  link, kind))
    inst = [(b"mono", 0), (b"pair", 1), (b"kit", 3)]
    ibag = [(0, 0), (1, 0), (2, 0), (3, 0)]
    igen = [(sf2.GEN_SAMPLE_ID, 0), (sf2.GEN_SAMPLE_ID, 1),
            (sf2.GEN_SAMPLE_ID, 2), (sf2.GEN_SAMPLE_ID, 3)]
    phdr = [(b"Lead", 80, 0, 0, 0, 0, 0), (b"Pad", 88, 0, 1, 0, 0, 0)]
    pbag = [(0, 0), (1, 0)]
    pgen = [(sf2.GEN_INSTRUMENT, 0), (sf2.GEN_INSTRUMENT, 1)]
    if with_drums:
        phdr.append((b"Kit", 0, 0, 2, 0, 0, 0))
        pbag.append((2, 0))
        pgen.append((sf2.GEN_INSTRUMENT, 2))
    font = sf2.SoundFont(info=[(b"ifil", struct.pack("<HH", 2, 1)),
                               (b"INAM", b"tiny\0\0")],
                         smpl=bytes(smpl), phdr=phdr, pbag=pbag, pmod=[],
                         pgen=pgen, inst=inst, ibag=ibag, imod=[], igen=igen,
                         shdr=samples)
    return sf2.write(font)


class SoundFontTest(unittest.TestCase):
    def test_write_then_parse_round_trips(self):
        data = tiny_font()
        self.assertEqual(sf2.presets(data), [(0, 0, "Kit"), (0, 80, "Lead"),
                                             (0, 88, "Pad")])
        self.assertEqual(len(sf2.parse(data).shdr), 5)   # and EOS

    def test_subset_keeps_the_pair_and_shifts_its_points(self):
        data = tiny_font()
        small = sf2.subset(data, {(0, 88), (0, 0)}, {(0, 0): (128, 0)})
        self.assertEqual(sf2.presets(small), [(0, 88, "Pad"),
                                              (128, 0, "Kit")])
        sf = sf2.parse(small)
        names = [s.name.rstrip(b"\0") for s in sf.shdr[:-1]]
        self.assertEqual(names, [b"s1", b"s2", b"s3"])   # s0 dropped
        left, right = sf.shdr[0], sf.shdr[1]
        self.assertEqual((left.link, right.link), (1, 0))
        for s, first in zip(sf.shdr[:-1], (200, 300, 400)):
            points = struct.unpack_from("<100h", sf.smpl, 2 * s.start)
            self.assertEqual(points[0], first)
            self.assertEqual(s.end - s.start, 100)
            self.assertEqual(s.loop_start - s.start, 10)
        with self.assertRaises(sf2.SoundFontError):
            sf2.subset(data, {(5, 5)})

    def test_odd_chunk_without_pad_byte_is_read(self):
        # some SF3 writers leave odd chunks unpadded (MuseScore General)
        data = bytearray(tiny_font())
        pos = data.index(b"INAM")
        data[pos + 4:pos + 8] = struct.pack("<I", 5)
        del data[pos + 8 + 5]                   # "tiny\0" + no pad
        list_pos = data.rindex(b"LIST", 0, pos)
        size = struct.unpack_from("<I", data, list_pos + 4)[0]
        struct.pack_into("<I", data, list_pos + 4, size - 1)
        struct.pack_into("<I", data, 4, len(data) - 8)
        self.assertEqual(len(sf2.presets(bytes(data))), 3)

    def test_catalogue_gives_only_presets_a_font_has(self):
        with tempfile.TemporaryDirectory() as kit:
            small = sf2.subset(tiny_font(), {(0, 80), (0, 88), (0, 0)},
                               {(0, 0): (128, 0)})
            with open(os.path.join(kit, "TimGM6mb.sf3"), "wb") as f:
                f.write(small)
            cat = soundfonts.Catalogue(kit)
            rng = random.Random(1)
            for _ in range(20):
                font, bank, program, family = cat.melodic(rng, "other",
                                                          "bridge")
                self.assertIn((bank, program), {(0, 80), (0, 88)})
                self.assertIn(family, ("lead", "pad"))
            self.assertEqual(cat.drums(rng)[1], 0)
            with self.assertRaises(SystemExit):   # no voice program there
                cat.melodic(rng, "vocals", "vocals")


def tiny_song() -> bytes:
    """A POP909-like song: MELODY, BRIDGE, PIANO over 40 bars at 100 bpm."""
    d = 480
    melody = [smf.Note(b * 2 * d, b * 2 * d + int(1.8 * d), 67 + b % 5, 90)
              for b in range(80)]
    bridge = [smf.Note(b * 4 * d, b * 4 * d + 3 * d, 72, 70)
              for b in range(40)]
    piano = [smf.Note(b * d, b * d + d - 40, p, 80)
             for b in range(160) for p in ((48 if b % 8 < 4 else 43), 64)]
    tracks = [[smf.tempo_event(0, 600000)]]
    for name, notes in (("MELODY", melody), ("BRIDGE", bridge),
                        ("PIANO", piano)):
        tracks.append([smf.Event(0, "meta", a=smf.META_TRACK_NAME,
                                 data=name.encode())] +
                      smf.note_events(notes, 0))
    return smf.encode_midi(smf.MidiFile(d, tracks, 1))


def tiny_groove() -> bytes:
    d = 480
    notes = [smf.Note(b * d, b * d + 60, 36 if b % 2 == 0 else 38, 100)
             for b in range(16)]
    notes += [smf.Note(b * d // 2, b * d // 2 + 30, 42, 70)
              for b in range(32)]
    return smf.encode_midi(smf.MidiFile(d, [[smf.tempo_event(0, 600000)] +
                                            smf.note_events(notes, 9)], 0))


def tar_of(path: str, members: dict) -> None:
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@unittest.skipUnless(shutil.which("fluidsynth") and
                     os.path.exists(TIMGM6MB),
                     "needs fluidsynth and timgm6mb-soundfont "
                     "(scripts/install-deps.sh)")
class RenderTest(unittest.TestCase):
    def test_render_is_reproducible_and_packed(self):
        with tempfile.TemporaryDirectory() as work:
            kit = os.path.join(work, "kit")
            os.makedirs(os.path.join(kit, "sf"))
            os.makedirs(os.path.join(kit, "midi"))
            font = soundfonts.FONTS[2]          # TimGM6mb, subset as kit.py
            with open(TIMGM6MB, "rb") as f:
                data = f.read()
            keep = {(b, p) for b, p, _ in sf2.presets(data)
                    if font.wanted(b, p)}
            # fluidsynth reads SF2 and SF3 alike, whatever the file name
            with open(os.path.join(kit, "sf", font.name), "wb") as f:
                f.write(sf2.subset(data, keep))
            tar_of(os.path.join(kit, "midi", "pop909.tar.xz"),
                   {"POP909/001/001.mid": tiny_song(),
                    "POP909/002/002.mid": tiny_song()})
            tar_of(os.path.join(kit, "midi", "groove.tar.xz"),
                   {"groove/drummer1/1_rock_100_beat_4-4.mid":
                    tiny_groove()})
            outs = []
            for jobs in (1, 2):
                prefix = os.path.join(work, f"j{jobs}", "synth")
                subprocess.run([sys.executable,
                                os.path.join(HERE, "render.py"),
                                "--pack", prefix, "--count", "2",
                                "--seed", "7", "--jobs", str(jobs),
                                "--kit", kit], check=True,
                               capture_output=True)
                with open(prefix + ".json") as f:
                    meta = json.load(f)
                outs.append((np.load(prefix + ".npy"), meta))
            (a, meta), (b, meta_b) = outs
            np.testing.assert_array_equal(a, b)
            self.assertEqual(meta["tracks"], meta_b["tracks"])
            self.assertEqual(len(meta["tracks"]), 2)
            self.assertEqual(a.shape[:2], (4, 2))
            self.assertEqual(a.shape[2], sum(t["length"]
                                             for t in meta["tracks"]))
            for t in meta["tracks"]:
                self.assertEqual(t["set"], "synth")
                self.assertEqual(t["sources"], list(mixdown_sources()))
                seg = a[:, :, t["start"]:t["start"] + t["length"]]
                for s in range(4):
                    self.assertGreater(np.abs(seg[s]).max(), 300, (t, s))
                mix = np.abs(seg.astype(np.int32).sum(0)).max() / 32768
                self.assertLessEqual(mix, mixdown.MIX_CEILING + 1e-3)
                self.assertGreater(mix, 0.5)


def mixdown_sources():
    return ("drums", "bass", "vocals", "other")


if __name__ == "__main__":
    unittest.main()
