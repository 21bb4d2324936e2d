"""Sung-like movement for the melody ("vocals") of a synthetic song.

GM voice presets (choir aahs, voice oohs, synth voice, solo vox) hold one
static vowel at a fixed pitch: nothing like a singer. What MIDI can add,
and what this module writes as pitch-bend and expression (CC 11) events:
  - vibrato that starts after a delay into each long note and fades in
    (rate 4.5-6.5 Hz, depth 15-45 cents: a singer's range);
  - scoops: some notes start below pitch and glide up (30-120 cents over
    40-120 ms);
  - intonation: each note a few cents off;
  - dynamics: a level per note and a swell on long notes.
Each track draws its own singer's style (rates, depths, odds), each note
its own values. `formant_eq` draws a fixed spectral colour per track
(two resonances in the vowel-formant ranges and a tilt), which mixdown.py
applies to the rendered stem: some timbre variety between tracks that
share a preset. None of it makes words: no consonants, no lyrics, no
breaths. Standard library only.
"""
from __future__ import annotations

import math
import random

import smf

BEND_RANGE_CENTS = 200          # set by RPN 0 below: +-2 semitones
STEP_S = 0.01                   # pitch-bend curve resolution


def _bend(channel: int, tick: int, cents: float) -> smf.Event:
    value = 8192 + round(cents / BEND_RANGE_CENTS * 8192)
    value = min(16383, max(0, value))
    return smf.Event(tick, "pitch_bend", channel, value & 0x7F, value >> 7)


def style(rng: random.Random) -> dict:
    """One singer's habits for a whole track."""
    return {"rate_hz": rng.uniform(4.5, 6.5),
            "depth_cents": rng.uniform(15.0, 45.0),
            "delay_s": rng.uniform(0.15, 0.35),
            "scoop_odds": rng.uniform(0.2, 0.6),
            "scoop_cents": rng.uniform(30.0, 120.0),
            "scoop_s": rng.uniform(0.04, 0.12),
            "intonation_cents": rng.uniform(0.0, 10.0),
            "dynamics": rng.uniform(0.3, 1.0)}


def expression(notes: list, tempo: smf.TempoMap, channel: int,
               rng: random.Random) -> list:
    """Pitch-bend and CC 11 events for a melody's notes (window ticks)."""
    s = style(rng)
    events = [smf.Event(0, "control", channel, 101, 0),   # RPN 0: bend
              smf.Event(0, "control", channel, 100, 0),   # range
              smf.Event(0, "control", channel, 6, BEND_RANGE_CENTS // 100),
              smf.Event(0, "control", channel, 38, 0)]
    for n in sorted(notes, key=lambda n: n.start):
        t0, t1 = tempo.seconds_at(n.start), tempo.seconds_at(n.end)
        offset = rng.gauss(0.0, s["intonation_cents"])
        scoop = -s["scoop_cents"] * rng.uniform(0.5, 1.0) \
            if rng.random() < s["scoop_odds"] else 0.0
        depth = s["depth_cents"] * rng.uniform(0.7, 1.3)
        phase = rng.uniform(0.0, 2 * math.pi)
        last, steps = None, max(1, int((t1 - t0) / STEP_S))
        for k in range(steps):
            dt = k * STEP_S
            cents = offset
            if scoop and dt < s["scoop_s"]:
                cents += scoop * (1 - dt / s["scoop_s"]) ** 2
            if dt > s["delay_s"]:
                fade = min(1.0, (dt - s["delay_s"]) / 0.25)
                cents += depth * fade * math.sin(
                    2 * math.pi * s["rate_hz"] * (dt - s["delay_s"]) + phase)
            ev = _bend(channel, tempo.tick_at(t0 + dt), cents)
            if last is None or (ev.a, ev.b) != last:
                events.append(ev)
                last = (ev.a, ev.b)
        events.append(_bend(channel, n.end, 0.0))
        level = 127 - s["dynamics"] * rng.uniform(0, 45)
        if t1 - t0 > 0.4:       # a swell into the long note
            for k in range(6):
                g = 0.8 + 0.2 * k / 5
                tick = tempo.tick_at(t0 + 0.06 * k)
                events.append(smf.Event(tick, "control", channel, 11,
                                        round(level * g)))
        else:
            events.append(smf.Event(n.start, "control", channel, 11,
                                    round(level)))
    return events


def formant_eq(rng: random.Random) -> dict:
    """Two resonances (centre Hz, gain dB, bandwidth in octaves) in the
    first- and second-formant ranges, and a tilt in dB per octave around
    1 kHz, for mixdown.equalise."""
    return {"peaks": [(rng.uniform(300.0, 900.0), rng.uniform(-4.0, 6.0),
                       rng.uniform(0.5, 1.5)),
                      (rng.uniform(1000.0, 3000.0), rng.uniform(-4.0, 6.0),
                       rng.uniform(0.5, 1.5))],
            "tilt_db_per_octave": rng.uniform(-2.0, 1.5)}
