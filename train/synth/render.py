#!/usr/bin/env python3
"""Render synthetic multitrack training songs from MIDI (demixd issue 6).

Each track is a 20-30 s excerpt of one POP909 song arranged into the four
sources and rendered one source at a time with fluidsynth and a General
MIDI soundfont, then encoded to Ogg Opus (48 kHz stereo, 48 kbit/s):

  vocals  the MELODY track, on a voice-like program (choir, voice oohs,
          synth voice, voice lead; now and then a sax or flute);
  other   the BRIDGE and PIANO tracks, on piano, e-piano, organ, guitar,
          strings, pad or brass programs;
  bass    a line derived from the PIANO track's notes below middle C
          (the lowest one per beat, half beat, or per left-hand onset),
          folded into E1..G2, on a GM bass program (32-39);
  drums   a Groove MIDI Dataset performance (channel 10) in the song's
          tempo (half or double time when that is closer to the groove's
          own tempo), started on a bar of the song, looped or cut to fit.

The pitched parts are transposed by -3..+3 semitones. Stems are trimmed
to the excerpt length, levelled (active RMS to a random level per
source, peaks limited to CREST_MAX_DB above it), and scaled together so
that their sum peaks at MIX_CEILING (encoded again, lower, if the decoded
sum reaches DECODED_LIMIT); a stem that comes out silent is not written
(a missing file means a silent source, as in /work/shared/data).

Usage: render.py --out DIR --count N [--seed S] [--jobs J]
       render.py --check DIR     (decode every stem and print statistics)
Needs: fluidsynth, a GM soundfont (fluid-soundfont-gm or
timgm6mb-soundfont), opusenc/opusdec (opus-tools). Python standard
library only. The output is the same for the same seed, whatever --jobs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smf  # noqa: E402
import wavfile  # noqa: E402

SOURCES = ("drums", "bass", "vocals", "other")
RATE = 48000
CHANNELS = 2
BITRATE_KBPS = 48
FLUIDSYNTH_GAIN = 0.5      # output is float, so this only sets the scale
MIX_CEILING = 0.75         # peak of the stems' sum, headroom for Opus
DECODED_LIMIT = 0.9        # the same after Opus, checked by decoding
SILENCE_PEAK = 1e-4        # -80 dBFS: a stem this quiet is treated as absent
FADE_OUT_S = 0.02          # the cut at the excerpt end, made click-free
EXCERPT_S = (20.0, 30.0)
TRANSPOSE = (-3, 3)
BASS_LOW, BASS_HIGH = 28, 43   # E1 .. G2
MIDDLE_C = 60
DRUM_CHANNEL = 9               # "channel 10"

DATA = "/work/shared/data/midi"
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2",
              "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/sounds/sf2/default-GM.sf2")  # Debian alternative
SOUNDFONT_LICENCES = {
    "FluidR3_GM.sf2":
        "FluidR3_GM by Frank Wen: MIT (Debian fluid-soundfont-gm)",
    "TimGM6mb.sf2":
        "TimGM6mb by Tim Brechbill: GPL-2+ (Debian timgm6mb-soundfont)",
}
LICENCES = {
    "pop909": "POP909 (Wang et al., ISMIR 2020): MIT",
    "groove": "Groove MIDI Dataset (Gillick et al., ICML 2019): CC BY 4.0",
}

# (GM program, weight). Mostly voices for the melody, a few lead stand-ins.
VOCAL_PROGRAMS = [(52, 3), (53, 3), (54, 2), (85, 2),
                  (65, 0.5), (66, 0.5), (73, 0.5), (74, 0.5)]
BASS_PROGRAMS = [(32, 1), (33, 2), (34, 2), (35, 1), (36, 0.5), (37, 0.5),
                 (38, 1), (39, 1)]
FAMILIES = {
    "piano": [0, 1, 2, 3], "e-piano": [4, 5], "organ": [16, 17, 18, 19],
    "guitar": [24, 25, 26, 27, 28], "strings": [48, 49, 50, 51],
    "pad": [88, 89, 90, 91, 92, 94, 95], "brass": [61, 62, 63],
}
# The PIANO track is the dense accompaniment, BRIDGE the counter-lines.
PIANO_FAMILIES = [("piano", 4), ("e-piano", 2), ("guitar", 2), ("organ", 1),
                  ("strings", 0.5), ("pad", 0.5)]
BRIDGE_FAMILIES = [("strings", 2), ("pad", 2), ("brass", 1), ("guitar", 1),
                   ("piano", 1), ("e-piano", 1), ("organ", 1)]
DRUM_KITS = [(0, 4), (8, 2), (16, 2), (24, 1), (25, 1), (32, 2), (40, 1)]
BASS_PATTERNS = [("follow", 2), ("quarters", 2), ("eighths", 1),
                 ("sustain", 1)]
# Share of each drum note's distance from the grid that is kept.
DRUM_TIMING_KEEP = 0.5
# Roland TD-11 notes of the Groove MIDI Dataset that GM kits do not have.
GROOVE_TO_GM = {22: 42, 26: 46, 58: 43}
# Active-RMS level of each stem before the mix ceiling, dBFS, +- LEVEL_SPREAD.
LEVEL_DB = {"drums": -17.0, "bass": -19.0, "vocals": -18.0, "other": -19.0}
LEVEL_SPREAD_DB = 3.0
# A stem's peaks are limited to this far above its active RMS: the odd
# loud drum hit would otherwise set the mix ceiling and leave the whole
# track 10 dB quieter.
CREST_MAX_DB = 18.0

INSTALL_HINT = ("install with: apt-get install fluidsynth fluid-soundfont-gm "
                "opus-tools")


def weighted(rng: random.Random, table: list):
    items, weights = zip(*table)
    return rng.choices(items, weights=weights)[0]


# ------------------------------------------------------------ arrangement

@dataclass
class Part:
    """One source as MIDI: tempo map plus one channel per instrument."""
    tracks: list = field(default_factory=list)  # list of event lists
    notes: int = 0


@dataclass
class Arrangement:
    division: int
    end_tick: int
    parts: dict          # source -> Part (sources with notes only)
    info: dict           # manifest facts


def near_grid(tick: int, grid: int, phase: int, tol: int) -> bool:
    return (tick - phase + tol) % grid < 2 * tol


def beat_grid(notes: list, division: int) -> tuple[int, int]:
    """(beat phase, bar phase) in ticks of a POP909 song.

    POP909 notes sit on a beat grid whose origin is not tick 0 (the MIDI
    was aligned to a recording). The beat phase is the position, modulo a
    beat, that most onsets fall near (notes below middle C count double:
    chords and bass notes mark the beat); the bar (of four beats) starts on
    the beat where the lowest note most often changes (chord changes fall
    on downbeats).
    """
    tol = max(division // 32, 1)
    step = max(division // 96, 1)
    low = [n for n in notes if n.pitch < MIDDLE_C]
    weights = [0] * division
    for n in notes + low:
        weights[n.start % division] += 1
    window = max(range(0, division, step), key=lambda p: sum(
        weights[(p + d) % division] for d in range(-tol, tol + 1)))
    # The most common tick inside the best window, not the window's edge.
    beat_phase = max(((window + d) % division for d in range(-tol, tol + 1)),
                     key=lambda t: weights[t])
    lowest_per_beat = {}
    for n in low:
        if near_grid(n.start, division, beat_phase, tol):
            beat = (n.start - beat_phase + tol) // division
            lowest_per_beat[beat] = min(lowest_per_beat.get(beat, 999),
                                        n.pitch)
    changes = [0, 0, 0, 0]
    previous = None
    for beat in sorted(lowest_per_beat):
        pitch = lowest_per_beat[beat]
        if previous is not None and pitch % 12 != previous % 12:
            changes[beat % 4] += 1
        previous = pitch
    bar_beat = changes.index(max(changes))
    return beat_phase, (beat_phase + bar_beat * division) % (4 * division)


def feel(notes: list, division: int, beat_phase: int) -> str:
    """"triplet" when more onsets fall on beat thirds than on beat
    quarters and halves (swing, shuffle, 12/8), else "straight"."""
    tol = max(division // 24, 1)
    straight = sum(near_grid(n.start, division, beat_phase + division * k // 4,
                             tol) for n in notes for k in (1, 2, 3))
    triplet = sum(near_grid(n.start, division, beat_phase + division * k // 3,
                            tol) for n in notes for k in (1, 2))
    return "triplet" if triplet > straight else "straight"


def melody_coverage(melody: list, start: int, end: int) -> float:
    covered = sum(max(0, min(n.end, end) - max(n.start, start))
                  for n in melody)
    return covered / max(end - start, 1)


def choose_window(melody: list, song_end: int, bar_phase: int,
                  division: int, tempo: smf.TempoMap,
                  rng: random.Random) -> tuple[int, int, float] | None:
    """A bar-aligned window of EXCERPT_S seconds with a melody note in its
    first bar and melody sounding through much of it."""
    seconds = rng.uniform(*EXCERPT_S)
    song_s = tempo.seconds_at(song_end)
    bar = 4 * division
    candidates = []
    for start in range(bar_phase, song_end, bar):
        start_s = tempo.seconds_at(start)
        if start_s + seconds > song_s:
            break
        end = tempo.tick_at(start_s + seconds)
        enters = any(start <= n.start < start + bar for n in melody)
        candidates.append((start, end, enters,
                           melody_coverage(melody, start, end)))
    for min_cover, need_entry in ((0.4, True), (0.2, True), (0.05, False)):
        usable = [c for c in candidates
                  if c[3] >= min_cover and (c[2] or not need_entry)]
        if usable:
            start, end, _, _ = rng.choice(usable)
            return start, end, seconds
    return None


def cut(notes: list, start: int, end: int, transpose: int = 0) -> list:
    """Notes starting in [start, end), shifted to start at 0, ends clipped."""
    return [smf.Note(n.start - start, min(n.end, end) - start,
                     n.pitch + transpose, n.velocity, n.channel)
            for n in notes if start <= n.start < end]


def fold(pitch: int, low: int, high: int) -> int:
    while pitch > high:
        pitch -= 12
    while pitch < low:
        pitch += 12
    return pitch


def bass_line(piano: list, division: int, beat_phase: int, pattern: str,
              rng: random.Random) -> list:
    """A bass line from the piano's notes below middle C, in the song's
    ticks (untransposed, unfolded)."""
    low = sorted((n for n in piano if n.pitch < MIDDLE_C),
                 key=lambda n: n.start)
    if not low:
        return []
    tol = division // 8
    line = []
    if pattern == "follow":
        # The lowest note of each left-hand onset, held until the next one.
        clusters = []
        for n in low:
            if clusters and n.start - clusters[-1][0].start <= tol:
                clusters[-1].append(n)
            else:
                clusters.append([n])
        for i, cluster in enumerate(clusters):
            root = min(cluster, key=lambda n: n.pitch)
            end = root.end
            if i + 1 < len(clusters):
                end = min(end, clusters[i + 1][0].start - tol // 2)
            if end - root.start >= tol:
                line.append(smf.Note(root.start, end, root.pitch,
                                     root.velocity))
        return line
    step = division // 2 if pattern == "eighths" else division
    first = beat_phase + (low[0].start - beat_phase) // step * step
    last = max(n.end for n in low)
    grid = range(first, last, step)
    for g in grid:
        # The lowest note sounding on the step or struck in its first half.
        sounding = [n for n in low if n.start <= g + tol and n.end > g + tol
                    or g - tol <= n.start < g + step // 2]
        if not sounding:
            continue
        root = min(sounding, key=lambda n: n.pitch)
        length = step * (0.92 if pattern == "sustain" else
                         rng.uniform(0.55, 0.85))
        note = smf.Note(g, g + max(int(length), tol), root.pitch,
                        root.velocity)
        if pattern == "sustain" and line and line[-1].pitch == note.pitch \
                and line[-1].end >= g - step // 4:
            line[-1].end = note.end  # hold a repeated root
        else:
            line.append(note)
    return line


def tempo_factor(song_tempo_us: int, groove_us: int) -> float:
    """Groove beats per song beat: 1/2, 1 or 2, whichever puts the groove
    closest to the tempo it was played at."""
    return min((0.5, 1.0, 2.0), key=lambda k: abs(
        math.log(song_tempo_us / k / groove_us)))


def choose_groove(grooves: dict, song_tempo_us: int, song_feel: str,
                  rng: random.Random) -> str:
    """A groove of the song's feel (straight or triplet) that plays within
    20 % of its own tempo in this song (half or double time allowed);
    failing that, one of the 20 closest in tempo."""
    def mismatch(name):
        groove_us = grooves[name][1]
        k = tempo_factor(song_tempo_us, groove_us)
        return abs(math.log(song_tempo_us / k / groove_us))
    names = sorted(n for n in grooves if grooves[n][2] == song_feel) or \
        sorted(grooves)
    close = [n for n in names if mismatch(n) <= math.log(1.2)]
    if not close:
        close = sorted(names, key=mismatch)[:20]
    return rng.choice(close)


def drum_part(groove: smf.MidiFile, groove_feel: str, song_tempo_us: int,
              window_ticks: int, division: int,
              rng: random.Random) -> tuple[list, dict]:
    """The groove's notes placed in the window's ticks, in the song tempo.

    Groove beats map to song beats at a factor of 1/2, 1 or 2 (whichever
    puts the groove closest to its recorded tempo); a groove shorter than
    the window loops on whole bars, a longer one starts on a random bar.
    The drummers played to a click but not on it: the segment's median
    offset from its grid (sixteenths, or beat thirds for a triplet feel) is
    removed and what is left of each note's offset is scaled by
    DRUM_TIMING_KEEP, so the drums stay human but lock to the song's grid.
    """
    notes = [n for t in groove.tracks for n in smf.notes_of(t)]
    gdiv = groove.division
    groove_us = smf.TempoMap(groove).tempo_at(0)
    factor = tempo_factor(song_tempo_us, groove_us)
    needed = window_ticks / division * factor       # groove beats to play
    last = max(n.start for n in notes) / gdiv
    loop = max(4, math.ceil((last + 0.25) / 4) * 4)
    spare_bars = int((loop - needed) // 4)
    start_beat = 4 * rng.randint(0, spare_bars) if spare_bars > 0 else 0
    grid = 0.25 if groove_feel == "straight" else 1.0 / 3.0
    placed = []  # (groove beats from the window start, note)
    cycle = 0
    while cycle * loop - start_beat < needed:
        base = cycle * loop - start_beat
        placed += [(n.start / gdiv + base, n) for n in notes
                   if -grid <= n.start / gdiv + base < needed]
        cycle += 1
    offsets = sorted(q - round(q / grid) * grid for q, _ in placed)
    offset = offsets[len(offsets) // 2] if offsets else 0.0
    velocity_gain = rng.uniform(0.85, 1.1)
    out = []
    for q, n in placed:
        q -= offset
        nearest = round(q / grid) * grid
        q = nearest + DRUM_TIMING_KEEP * (q - nearest)
        if not 0 <= q < needed:
            continue
        tick = round(q / factor * division)
        length = min((n.end - n.start) / gdiv, 0.5) / factor * division
        pitch = GROOVE_TO_GM.get(n.pitch, n.pitch)
        velocity = min(127, max(1, round(n.velocity * velocity_gain)))
        out.append(smf.Note(tick, tick + max(int(length), division // 16),
                            pitch, velocity))
    return out, {"tempo_factor": factor, "start_beat": start_beat,
                 "loop_beats": loop if needed > loop - start_beat else None,
                 "groove_bpm": round(60e6 / groove_us, 2),
                 "offset_ms": round(offset * groove_us / 1000, 1)}


def controls(channel: int, program: int, pan: int, reverb: int,
             chorus: int) -> list:
    return [smf.Event(0, "program", channel, program),
            smf.Event(0, "control", channel, 7, 100),
            smf.Event(0, "control", channel, 10, pan),
            smf.Event(0, "control", channel, 91, reverb),
            smf.Event(0, "control", channel, 93, chorus)]


def arrange(song: smf.MidiFile, grooves: dict,
            rng: random.Random) -> Arrangement | None:
    """The four parts of a random window of song; grooves maps names to
    (parsed groove, its microseconds per beat, its feel)."""
    by_name = {smf.track_name(t).upper(): smf.notes_of(t)
               for t in song.tracks}
    melody = by_name.get("MELODY", [])
    bridge = by_name.get("BRIDGE", [])
    piano = by_name.get("PIANO", [])
    if not melody or not piano:
        return None
    division = song.division
    tempo = smf.TempoMap(song)
    beat_phase, bar_phase = beat_grid(melody + bridge + piano, division)
    song_end = max(n.end for n in melody + bridge + piano)
    window = choose_window(melody, song_end, bar_phase, division, tempo, rng)
    if window is None:
        return None
    start, end, seconds = window
    length = end - start
    transpose = rng.randint(*TRANSPOSE)
    tempo_events = tempo.events_between(start, end)
    parts = {}
    info = {"start_s": round(tempo.seconds_at(start), 3),
            "seconds": round(seconds, 3),
            "bpm": round(60e6 / tempo.tempo_at(start), 2),
            "transpose": transpose, "programs": {}}

    vocals = cut(melody, start, end, transpose)
    program = weighted(rng, VOCAL_PROGRAMS)
    parts["vocals"] = Part([tempo_events, controls(0, program,
                                                   rng.randint(58, 70),
                                                   rng.randint(30, 70),
                                                   rng.randint(0, 30))
                            + smf.note_events(vocals, 0)], len(vocals))
    info["programs"]["vocals"] = program

    pattern = weighted(rng, BASS_PATTERNS)
    near = [n for n in piano if n.end > start - division and n.start < end]
    line = bass_line(near, division, beat_phase, pattern, rng)
    bass = [smf.Note(n.start, n.end, fold(n.pitch, BASS_LOW, BASS_HIGH),
                     min(115, max(70, n.velocity + rng.randint(-5, 10))))
            for n in cut(line, start, end, transpose)]
    program = weighted(rng, BASS_PROGRAMS)
    parts["bass"] = Part([tempo_events, controls(0, program, 64,
                                                 rng.randint(0, 25), 0)
                          + smf.note_events(bass, 0)], len(bass))
    info["programs"]["bass"] = program
    info["bass_pattern"] = pattern

    other_tracks, other_notes, other_programs = [tempo_events], 0, {}
    pans = sorted((rng.randint(24, 56), rng.randint(72, 104)),
                  key=lambda _: rng.random())
    for channel, (name, notes, families) in enumerate(
            (("BRIDGE", bridge, BRIDGE_FAMILIES),
             ("PIANO", piano, PIANO_FAMILIES))):
        notes = cut(notes, start, end, transpose)
        program = rng.choice(FAMILIES[weighted(rng, families)])
        other_programs[name] = program
        if notes:
            other_tracks.append(controls(channel, program, pans[channel],
                                         rng.randint(30, 80),
                                         rng.randint(0, 50))
                                + smf.note_events(notes, channel))
            other_notes += len(notes)
    parts["other"] = Part(other_tracks, other_notes)
    info["programs"]["other"] = other_programs

    song_feel = feel(melody + bridge + piano, division, beat_phase)
    groove_name = choose_groove(grooves, tempo.tempo_at(start), song_feel,
                                rng)
    drums, groove_info = drum_part(grooves[groove_name][0],
                                   grooves[groove_name][2],
                                   tempo.tempo_at(start), length, division,
                                   rng)
    groove_info = {"file": groove_name, "feel": song_feel, **groove_info}
    kit = weighted(rng, DRUM_KITS)
    parts["drums"] = Part([tempo_events,
                           controls(DRUM_CHANNEL, kit, 64,
                                    rng.randint(20, 60), 0)
                           + smf.note_events(drums, DRUM_CHANNEL)],
                          len(drums))
    info["programs"]["drums"] = kit
    info["groove"] = groove_info
    info["notes"] = {s: p.notes for s, p in parts.items()}
    parts = {s: p for s, p in parts.items() if p.notes}
    return Arrangement(division, length, parts, info)


# ------------------------------------------------------------- rendering

def render_part(part: Part, division: int, end_tick: int, soundfont: str,
                workdir: str, name: str) -> wavfile.array:
    mid = os.path.join(workdir, name + ".mid")
    wav = os.path.join(workdir, name + ".wav")
    smf.write_midi(mid, smf.MidiFile(division, part.tracks, 1), end_tick)
    cmd = ["fluidsynth", "-ni", "-q", "-F", wav, "-r", str(RATE),
           "-g", str(FLUIDSYNTH_GAIN), "-O", "float", "-T", "wav",
           soundfont, mid]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.exists(wav):
        raise RuntimeError(f"fluidsynth failed on {mid} (exit "
                           f"{done.returncode}): {done.stderr.strip()}")
    samples, channels, rate = wavfile.read_wav(wav)
    if channels != CHANNELS or rate != RATE:
        raise RuntimeError(f"{wav}: {channels} channels at {rate} Hz, "
                           f"expected {CHANNELS} at {RATE}")
    return samples


def fit_length(samples, frames: int):
    """Trim or zero-pad to frames and fade the last FADE_OUT_S out."""
    n = frames * CHANNELS
    out = samples[:n]
    if len(out) < n:
        out.extend([0.0] * (n - len(out)))
    fade = int(FADE_OUT_S * RATE)
    for i in range(fade):
        g = (fade - i) / (fade + 1)
        j = (frames - fade + i) * CHANNELS
        for c in range(CHANNELS):
            out[j + c] *= g
    return out


def encode(samples, workdir: str, opus: str, serial: int) -> None:
    wav = os.path.join(workdir, "encode.wav")
    wavfile.write_wav16(wav, samples, CHANNELS, RATE)
    cmd = ["opusenc", "--quiet", "--bitrate", str(BITRATE_KBPS),
           "--serial", str(serial), wav, opus]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"opusenc failed on {wav} -> {opus} (exit "
                           f"{done.returncode}): {done.stderr.strip()}")


def decoded_mix_peak(track_dir: str, workdir: str) -> float:
    """Peak of the decoded stems' sum, or of any one stem if higher."""
    stems = [decode(os.path.join(track_dir, f), workdir)[0]
             for f in sorted(os.listdir(track_dir)) if f.endswith(".opus")]
    if not stems:
        return 0.0
    n = min(len(s) for s in stems)
    return max([wavfile.peak(wavfile.mixed([s[:n] for s in stems]))] +
               [wavfile.peak(s) for s in stems])


@dataclass
class Task:
    index: int
    track_id: str
    song_id: str
    song: bytes
    groove_path: str
    seed: int
    out_dir: str
    soundfont: str


def render_track(task: Task) -> dict:
    """Arrange, render, level and encode one track; its manifest entry."""
    rng = random.Random(f"demixd-synth:{task.seed}:{task.index}")
    entry = {"id": task.track_id, "pop909": task.song_id}
    try:
        song = smf.parse_midi(task.song)
    except smf.MidiError as e:
        entry["error"] = f"pop909 {task.song_id}: {e}"
        return entry
    arrangement = arrange(song, grooves_of(task.groove_path), rng)
    if arrangement is None:
        entry["error"] = "no MELODY/PIANO notes or no usable window"
        return entry
    entry.update(arrangement.info)
    frames = round(arrangement.info["seconds"] * RATE)
    stems = {}
    with tempfile.TemporaryDirectory(prefix="demixd-synth-") as work:
        for source, part in arrangement.parts.items():
            samples = render_part(part, arrangement.division,
                                  arrangement.end_tick, task.soundfont, work,
                                  source)
            samples = fit_length(samples, frames)
            if wavfile.peak(samples) >= SILENCE_PEAK:
                stems[source] = samples
        gains = {}
        for source, samples in stems.items():
            rms = wavfile.active_rms(samples, CHANNELS, RATE)
            target = LEVEL_DB[source] + rng.uniform(-LEVEL_SPREAD_DB,
                                                    LEVEL_SPREAD_DB)
            gains[source] = 10.0 ** (target / 20.0) / rms
            stems[source] = wavfile.limited(
                wavfile.scaled(samples, gains[source]), CHANNELS, RATE,
                10.0 ** ((target + CREST_MAX_DB) / 20.0))
        loudest = 0.0
        if stems:
            loudest = max([wavfile.peak(wavfile.mixed(list(stems.values())))]
                          + [wavfile.peak(s) for s in stems.values()])
        ceiling = MIX_CEILING / loudest if loudest > MIX_CEILING else 1.0
        track_dir = os.path.join(task.out_dir, task.track_id)
        shutil.rmtree(track_dir, ignore_errors=True)
        os.makedirs(track_dir)
        # Opus keeps the sound, not the waveform: decoded peaks can exceed
        # the encoded ones by a few dB. Encode, decode, and encode again
        # lower until the decoded stems' sum stays below DECODED_LIMIT.
        for attempt in range(4):
            for source, samples in stems.items():
                serial = (task.seed * 100003 + task.index * 7 +
                          SOURCES.index(source)) % (1 << 31)
                encode(wavfile.scaled(samples, ceiling), work,
                       os.path.join(track_dir, source + ".opus"), serial)
            decoded_peak = decoded_mix_peak(track_dir, work)
            if decoded_peak < DECODED_LIMIT:
                break
            ceiling *= 0.9 * DECODED_LIMIT / decoded_peak
        else:
            raise RuntimeError(f"{track_dir}: decoded mixture still peaks at "
                               f"{decoded_peak:.3f} after {attempt + 1} "
                               "encodings")
    entry["sources"] = sorted(stems, key=SOURCES.index)
    entry["gain_db"] = {s: round(20 * math.log10(gains[s] * ceiling), 2)
                        for s in entry["sources"]}
    entry["decoded_mix_peak"] = round(decoded_peak, 4)
    entry["bytes"] = sum(os.path.getsize(os.path.join(track_dir, f))
                         for f in os.listdir(track_dir))
    return entry


# ------------------------------------------------------------- the corpus

def read_tar(path: str) -> dict:
    """name -> bytes of every .mid member of a tar archive."""
    out = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".mid"):
                out[member.name] = tar.extractfile(member).read()
    if not out:
        raise SystemExit(f"{path}: no .mid files in the archive")
    return out


_GROOVES: dict = {}


def grooves_of(path: str) -> dict:
    """name -> (parsed groove, microseconds per beat, feel) of the 4/4
    grooves of the archive at path that hold at least two bars of notes;
    read once per process."""
    if path not in _GROOVES:
        usable = {}
        for name, data in read_tar(path).items():
            if "_4-4" not in name:
                continue
            midi = smf.parse_midi(data)
            notes = [n for t in midi.tracks for n in smf.notes_of(t)]
            if notes and max(n.start for n in notes) >= 7 * midi.division:
                usable[name] = (midi, smf.TempoMap(midi).tempo_at(0),
                                feel(notes, midi.division, 0))
        if not usable:
            raise SystemExit(f"{path}: no 4/4 groove of two bars or more")
        _GROOVES[path] = usable
    return _GROOVES[path]


def find_soundfont(requested: str | None) -> str | None:
    if requested:
        return requested if os.path.isfile(requested) else None
    return next((p for p in SOUNDFONTS if os.path.isfile(p)), None)


def check_tools(soundfont: str | None, requested: str | None) -> None:
    missing = [t for t in ("fluidsynth", "opusenc", "opusdec")
               if not shutil.which(t)]
    problems = [f"{t} not found on PATH" for t in missing]
    if soundfont is None:
        problems.append(f"soundfont {requested} not found" if requested else
                        "no GM soundfont at " + " or ".join(SOUNDFONTS))
    if problems:
        raise SystemExit("render.py: " + "; ".join(problems) + "\n" +
                         INSTALL_HINT)


def render_corpus(args) -> None:
    soundfont = find_soundfont(args.soundfont)
    check_tools(soundfont, args.soundfont)
    songs = read_tar(args.pop909)
    grooves_of(args.groove)  # fail early on a bad archive
    song_names = sorted(songs)
    rng = random.Random(f"demixd-synth:{args.seed}:songs")
    order = song_names[:]
    rng.shuffle(order)
    tasks = []
    for i in range(args.count):
        name = order[i % len(order)]
        song_id = os.path.splitext(os.path.basename(name))[0]
        tasks.append(Task(i, f"s{args.seed}-{i:04d}-pop909-{song_id}",
                          song_id, songs[name], args.groove, args.seed,
                          args.out, soundfont))
    os.makedirs(args.out, exist_ok=True)
    entries = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for entry in pool.map(render_track, tasks):
            entries.append(entry)
            status = entry.get("error") or (
                f"{entry['seconds']:.1f} s, {','.join(entry['sources'])}, "
                f"{entry['bytes'] / 1024:.0f} KiB")
            print(f"{entry['id']}: {status}", flush=True)
    done = [e for e in entries if "error" not in e]
    total_bytes = sum(e["bytes"] for e in done)
    manifest = {
        "what": "synthetic multitrack excerpts rendered from MIDI by "
                "train/synth/render.py",
        "seed": args.seed, "count": args.count,
        "rate": RATE, "channels": CHANNELS, "codec": "Ogg Opus",
        "bitrate_kbps": BITRATE_KBPS, "mix_ceiling": MIX_CEILING,
        "decoded_limit": DECODED_LIMIT,
        "soundfont": os.path.basename(os.path.realpath(soundfont)),
        "licences": {**LICENCES, "soundfont": SOUNDFONT_LICENCES.get(
            os.path.basename(os.path.realpath(soundfont)),
            "see the soundfont's package")},
        "pop909": os.path.basename(args.pop909),
        "groove": os.path.basename(args.groove),
        "total_seconds": round(sum(e["seconds"] for e in done), 3),
        "total_bytes": total_bytes,
        "tracks": done,
        "failed": [e for e in entries if "error" in e],
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"{len(done)} tracks, {manifest['total_seconds'] / 60:.1f} min, "
          f"{total_bytes / 2**20:.2f} MiB in {args.out}"
          + (f"; {len(entries) - len(done)} failed" if len(done) <
             len(entries) else ""))


# ----------------------------------------------------------------- check

def decode(opus: str, workdir: str):
    wav = os.path.join(workdir, "check.wav")
    done = subprocess.run(["opusdec", "--quiet", "--float", "--rate",
                           str(RATE), opus, wav], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"opusdec failed on {opus}: {done.stderr}")
    samples, channels, _ = wavfile.read_wav(wav)
    return samples, channels


def db(x: float) -> float:
    return 20 * math.log10(x) if x > 0 else -math.inf


def check_corpus(root: str) -> int:
    """Decode every stem under root; print duration, peak and active RMS per
    source, the mixture peak per track, and totals. Non-zero when a track
    has stems of unequal length or a clipping mixture."""
    if not shutil.which("opusdec"):
        raise SystemExit("render.py: opusdec not found on PATH\n" +
                         INSTALL_HINT)
    tracks = sorted(d for d in os.listdir(root)
                    if os.path.isdir(os.path.join(root, d)))
    bad = 0
    per_source = {s: [] for s in SOURCES}
    mix_peaks, seconds = [], 0.0
    with tempfile.TemporaryDirectory(prefix="demixd-check-") as work:
        for track in tracks:
            stems, lengths, line = {}, set(), []
            for source in SOURCES:
                path = os.path.join(root, track, source + ".opus")
                if not os.path.exists(path):
                    line.append(f"{source} -")
                    continue
                samples, channels = decode(path, work)
                stems[source] = samples
                lengths.add(len(samples) // channels)
                pk = wavfile.peak(samples)
                rms = wavfile.active_rms(samples, channels, RATE)
                per_source[source].append((pk, rms))
                line.append(f"{source} {db(pk):5.1f}/{db(rms):5.1f}")
            if not stems:
                print(f"{track}: no stems")
                bad += 1
                continue
            n = min(lengths) * CHANNELS
            mix = wavfile.peak(wavfile.mixed([s[:n] for s in
                                              stems.values()]))
            mix_peaks.append(mix)
            seconds += min(lengths) / RATE
            flags = []
            if len(lengths) != 1:
                flags.append(f"UNEQUAL LENGTHS {sorted(lengths)}")
            if mix >= 1.0:
                flags.append("MIX CLIPS")
            bad += bool(flags)
            print(f"{track}: {min(lengths) / RATE:6.2f} s  "
                  f"peak/activeRMS dBFS: {'  '.join(line)}  "
                  f"mix peak {db(mix):5.1f} {' '.join(flags)}")
    print(f"\n{len(tracks)} tracks, {seconds / 60:.2f} min")
    for source, values in per_source.items():
        if values:
            pks = sorted(db(p) for p, _ in values)
            rms = sorted(db(r) for _, r in values)
            print(f"{source:6s}: in {len(values):3d} tracks, peak dBFS "
                  f"{pks[0]:.1f}..{pks[-1]:.1f}, active RMS dBFS "
                  f"{rms[0]:.1f}..{rms[-1]:.1f} "
                  f"(median {rms[len(rms) // 2]:.1f})")
        else:
            print(f"{source:6s}: in no track")
    if mix_peaks:
        print(f"mixture peak dBFS {db(min(mix_peaks)):.1f}.."
              f"{db(max(mix_peaks)):.1f}; problem tracks: {bad}")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="output folder (track folders and "
                        "manifest.json)")
    parser.add_argument("--count", type=int, default=10,
                        help="number of tracks (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1,
                        help="tracks rendered at once (default 1)")
    parser.add_argument("--pop909", default=os.path.join(DATA,
                                                         "pop909.tar.xz"))
    parser.add_argument("--groove", default=os.path.join(DATA,
                                                         "groove.tar.xz"))
    parser.add_argument("--soundfont", help="GM .sf2 (default: "
                        + ", else ".join(SOUNDFONTS) + ")")
    parser.add_argument("--check", metavar="DIR",
                        help="decode the stems under DIR and print "
                        "statistics instead of rendering")
    args = parser.parse_args()
    if args.check:
        return check_corpus(args.check)
    if not args.out:
        parser.error("--out DIR is required (or --check DIR)")
    if args.count < 1 or args.jobs < 1:
        parser.error("--count and --jobs must be at least 1")
    render_corpus(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
