"""Arrangement of one synthetic training song: which notes each part plays.

A track is a 20-30 s excerpt of one POP909 song (MIDI tracks MELODY,
BRIDGE, PIANO) arranged into the four sources, one instrument per part:

  vocals  the MELODY track, on a voice program, with sung-like pitch and
          level movement (voice.py);
  other   the BRIDGE and PIANO tracks, two instruments panned apart;
  bass    a line derived from the PIANO track's notes below middle C (the
          lowest one per beat, half beat, or per left-hand onset), folded
          into E1..G2;
  drums   a Groove MIDI Dataset performance (channel 10) in the song's
          tempo (half or double time when that is closer to the groove's
          own tempo), started on a bar of the song, looped or cut to fit.

The pitched parts are transposed by -3..+3 semitones. Each instrument then
gets its soundfont, preset, pan, reverb and chorus (soundfonts.py): every
random choice comes from the one generator the caller passes, so a track
is a function of its seed. Python standard library only.
"""
from __future__ import annotations

import math
import random
import tarfile
from dataclasses import dataclass, field

import smf
import soundfonts
import voice

EXCERPT_S = (20.0, 30.0)
TRANSPOSE = (-3, 3)
BASS_LOW, BASS_HIGH = 28, 43   # E1 .. G2
MIDDLE_C = 60
DRUM_CHANNEL = 9               # "channel 10"
BASS_PATTERNS = [("follow", 2), ("quarters", 2), ("eighths", 1),
                 ("sustain", 1)]
# Share of each drum note's distance from the grid that is kept.
DRUM_TIMING_KEEP = 0.5
# Roland TD-11 notes of the Groove MIDI Dataset that GM kits do not have.
GROOVE_TO_GM = {22: 42, 26: 46, 58: 43}
# Share of melodies given a formant-like colour (voice.formant_eq).
VOCAL_EQ_ODDS = 0.8

weighted = soundfonts.weighted


@dataclass
class Instrument:
    """One part on one soundfont preset: rendered alone, then summed into
    its source."""
    source: str          # drums, bass, vocals, other
    part: str            # vocals, bass, piano, bridge, drums
    notes: list          # smf.Note in window ticks
    font: str = ""       # soundfonts.Font.name
    bank: int = 0
    program: int = 0
    family: str = ""
    channel: int = 0
    pan: int = 64
    reverb: int = 40
    chorus: int = 0
    gain_db: float = 0.0   # relative level inside its source
    expression: list = field(default_factory=list)  # extra smf.Event
    eq: dict | None = None  # mixdown.equalise arguments, applied after

    def describe(self) -> dict:
        return {"part": self.part, "font": self.font, "bank": self.bank,
                "program": self.program, "family": self.family,
                "notes": len(self.notes), "pan": self.pan,
                "reverb": self.reverb, "chorus": self.chorus,
                "gain_db": round(self.gain_db, 2),
                **({"eq": self.eq} if self.eq else {})}


@dataclass
class Arrangement:
    division: int
    end_tick: int
    tempo_events: list
    instruments: list    # Instrument, those with notes only
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



def controls(ins: Instrument) -> list:
    """Bank, program and mixer controls at tick 0."""
    c = ins.channel
    out = []
    if c != DRUM_CHANNEL:
        out.append(smf.Event(0, "control", c, 0, ins.bank))
    out += [smf.Event(0, "program", c, ins.program),
            smf.Event(0, "control", c, 7, 100),
            smf.Event(0, "control", c, 10, ins.pan),
            smf.Event(0, "control", c, 91, ins.reverb),
            smf.Event(0, "control", c, 93, ins.chorus)]
    return out


def part_events(ins: Instrument) -> list:
    """The instrument's MIDI events (without the tempo map)."""
    return controls(ins) + ins.expression + \
        smf.note_events(ins.notes, ins.channel)


def voice_instrument(ins: Instrument, catalogue, rng: random.Random):
    """Soundfont and preset of a pitched part."""
    font, bank, program, family = catalogue.melodic(rng, ins.source,
                                                    ins.part)
    ins.font, ins.bank, ins.program, ins.family = font.name, bank, \
        program, family


def arrange(song: smf.MidiFile, grooves: dict, catalogue,
            rng: random.Random) -> Arrangement | None:
    """The instruments of a random window of song; grooves maps names to
    (parsed groove, its microseconds per beat, its feel); catalogue is a
    soundfonts.Catalogue."""
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
    window_tempo = smf.TempoMap(smf.MidiFile(division, [tempo_events], 1))
    info = {"start_s": round(tempo.seconds_at(start), 3),
            "seconds": round(seconds, 3),
            "bpm": round(60e6 / tempo.tempo_at(start), 2),
            "transpose": transpose}
    instruments = []

    vocals = Instrument("vocals", "vocals", cut(melody, start, end, transpose),
                        pan=rng.randint(58, 70), reverb=rng.randint(30, 80),
                        chorus=rng.randint(0, 30))
    voice_instrument(vocals, catalogue, rng)
    vocals.expression = voice.expression(vocals.notes, window_tempo,
                                         vocals.channel, rng)
    if rng.random() < VOCAL_EQ_ODDS:
        vocals.eq = voice.formant_eq(rng)
    instruments.append(vocals)

    pattern = weighted(rng, BASS_PATTERNS)
    near = [n for n in piano if n.end > start - division and n.start < end]
    line = bass_line(near, division, beat_phase, pattern, rng)
    bass = Instrument("bass", "bass", [
        smf.Note(n.start, n.end, fold(n.pitch, BASS_LOW, BASS_HIGH),
                 min(115, max(70, n.velocity + rng.randint(-5, 10))))
        for n in cut(line, start, end, transpose)],
        reverb=rng.randint(0, 25))
    voice_instrument(bass, catalogue, rng)
    instruments.append(bass)
    info["bass_pattern"] = pattern

    pans = sorted((rng.randint(24, 56), rng.randint(72, 104)),
                  key=lambda _: rng.random())
    for i, (name, notes) in enumerate((("bridge", bridge),
                                       ("piano", piano))):
        ins = Instrument("other", name, cut(notes, start, end, transpose),
                         pan=pans[i], reverb=rng.randint(30, 80),
                         chorus=rng.randint(0, 50),
                         gain_db=rng.uniform(-4.0, 2.0) if name == "bridge"
                         else 0.0)
        voice_instrument(ins, catalogue, rng)
        instruments.append(ins)

    song_feel = feel(melody + bridge + piano, division, beat_phase)
    groove_name = choose_groove(grooves, tempo.tempo_at(start), song_feel,
                                rng)
    drum_notes, groove_info = drum_part(grooves[groove_name][0],
                                        grooves[groove_name][2],
                                        tempo.tempo_at(start), length,
                                        division, rng)
    font, kit = catalogue.drums(rng)
    drum_notes = [smf.Note(n.start, n.end, font.drum_keys.get(n.pitch,
                                                              n.pitch),
                           n.velocity) for n in drum_notes]
    drums = Instrument("drums", "drums", drum_notes, font=font.name,
                       bank=soundfonts.DRUM_BANK, program=kit,
                       family="kit", channel=DRUM_CHANNEL,
                       reverb=rng.randint(20, 60))
    instruments.append(drums)
    info["groove"] = {"file": groove_name, "feel": song_feel, **groove_info}
    info["instruments"] = [i.describe() for i in instruments]
    return Arrangement(division, length, tempo_events,
                       [i for i in instruments if i.notes], info)


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
