#!/usr/bin/env python3
"""Render synthetic multitrack training songs from MIDI, straight into the
packed int16 set that train/train.py reads (audio_data.py's format).

  render.py --pack PREFIX (--hours H | --count N) [--seed S] [--jobs J]
            [--kit DIR] [--wav DIR]

Each track is a POP909 excerpt with a Groove MIDI drum part (arrange.py);
every instrument is rendered alone by fluidsynth with its own soundfont
and preset (soundfonts.py), the melody with sung-like pitch and level
movement (voice.py); the parts are summed into the four sources, levelled
and mixed (mixdown.py), and written into PREFIX.npy (int16 [4, 2, total])
with PREFIX.json (one entry per track: name, set "synth", start, length,
and what it is made of). --wav DIR also writes each track's stems and
mixture as 16-bit WAV, for listening.

Two passes over a process pool: the plan (every random choice of track i
comes from a generator seeded with (seed, i), so the output is the same
for the same seed whatever --jobs), then the renders, each written by its
worker into its slice of the memory-mapped .npy. --hours plans tracks
until their total length reaches H hours.

Needs: numpy; fluidsynth (the kit's wrapper KIT/fluidsynth when present,
else on PATH); the kit's soundfonts (KIT/sf) and MIDI archives (KIT/midi;
train/synth/kit.py makes the kit).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arrange  # noqa: E402
import mixdown  # noqa: E402
import smf  # noqa: E402
import soundfonts  # noqa: E402

SOURCES = ("drums", "bass", "vocals", "other")
RATE = mixdown.RATE
CHANNELS = 2
SET_NAME = "synth"
FLUIDSYNTH_GAIN = 0.5      # output is float, so this only sets the scale
MEAN_EXCERPT_S = sum(arrange.EXCERPT_S) / 2
PROGRESS_EVERY = 50        # tracks between progress lines
# Active-RMS level of each source, dBFS, +- LEVEL_SPREAD_DB.
LEVEL_DB = {"drums": -17.0, "bass": -19.0, "vocals": -18.0, "other": -19.0}
LEVEL_SPREAD_DB = 3.0
# A stem's peaks are limited to this far above its active RMS.
CREST_MAX_DB = 18.0
DEFAULT_KIT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "..", "..", ".carry", "kit")
LICENCES = {
    "pop909": "POP909 (Wang et al., ISMIR 2020): MIT",
    "groove": "Groove MIDI Dataset (Gillick et al., ICML 2019): CC BY 4.0",
}


@dataclass
class Task:
    index: int
    track_id: str
    song_id: str
    song: bytes
    groove_path: str
    seed: int
    kit: str


@dataclass
class Planned:
    entry: dict                      # manifest facts of the track
    arrangement: object = None       # arrange.Arrangement, None on failure
    levels: dict | None = None       # source -> target dB


def plan_track(task: Task) -> Planned:
    """Every random choice of one track."""
    rng = random.Random(f"demixd-synth:{task.seed}:{task.index}")
    entry = {"name": task.track_id, "set": SET_NAME, "pop909": task.song_id,
             "seed": task.seed, "index": task.index}
    try:
        song = smf.parse_midi(task.song)
    except smf.MidiError as e:
        entry["error"] = f"pop909 {task.song_id}: {e}"
        return Planned(entry)
    catalogue = _catalogue(os.path.join(task.kit, "sf"))
    arrangement = arrange.arrange(song, arrange.grooves_of(task.groove_path),
                                  catalogue, rng)
    if arrangement is None:
        entry["error"] = "no MELODY/PIANO notes or no usable window"
        return Planned(entry)
    entry.update(arrangement.info)
    entry["length"] = round(arrangement.info["seconds"] * RATE)
    levels = {s: LEVEL_DB[s] + rng.uniform(-LEVEL_SPREAD_DB, LEVEL_SPREAD_DB)
              for s in SOURCES}
    return Planned(entry, arrangement, levels)


_CATALOGUES: dict = {}


def _catalogue(folder: str) -> soundfonts.Catalogue:
    if folder not in _CATALOGUES:
        _CATALOGUES[folder] = soundfonts.Catalogue(folder)
    return _CATALOGUES[folder]


def fluidsynth_command(kit: str) -> str:
    wrapper = os.path.join(kit, "fluidsynth")
    if os.path.isfile(wrapper) and os.path.isdir(os.path.join(kit, "prefix")):
        return wrapper
    found = shutil.which("fluidsynth")
    if not found:
        raise SystemExit(f"render.py: no fluidsynth: neither {wrapper} "
                         "(kit.py --unpack) nor one on PATH")
    return found


def render_instrument(ins, arrangement, kit: str, fluidsynth: str,
                      work: str) -> np.ndarray:
    """float32 [2, N] of one instrument, rendered alone."""
    mid = os.path.join(work, "part.mid")
    raw = os.path.join(work, "part.raw")
    smf.write_midi(mid, smf.MidiFile(arrangement.division,
                                     [arrangement.tempo_events,
                                      arrange.part_events(ins)], 1),
                   arrangement.end_tick)
    # dynamic sample loading: an SF3 font decodes only the presets played
    cmd = [fluidsynth, "-ni", "-q", "-o", "synth.dynamic-sample-loading=1",
           "-F", raw, "-T", "raw", "-O", "float", "-r", str(RATE),
           "-g", str(FLUIDSYNTH_GAIN), os.path.join(kit, "sf", ins.font),
           mid]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.exists(raw):
        raise RuntimeError(f"fluidsynth failed on {ins.part} with "
                           f"{ins.font} (exit {done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    samples = np.fromfile(raw, dtype="<f4")
    os.remove(raw)
    return samples[:samples.size // 2 * 2].reshape(-1, 2).T


def mix_track(planned: Planned, kit: str, fluidsynth: str
              ) -> tuple[np.ndarray, dict]:
    """int16 [4, 2, length] of a planned track and its level facts."""
    arrangement, frames = planned.arrangement, planned.entry["length"]
    sums = {}
    with tempfile.TemporaryDirectory(prefix="demixd-synth-") as work:
        for ins in arrangement.instruments:
            x = mixdown.fit_length(render_instrument(ins, arrangement, kit,
                                                     fluidsynth, work),
                                   frames)
            if ins.eq:
                x = mixdown.equalise(x, ins.eq["peaks"],
                                     ins.eq["tilt_db_per_octave"])
            x *= 10 ** (ins.gain_db / 20)
            sums[ins.source] = sums[ins.source] + x \
                if ins.source in sums else x
    stems, gains = [], {}
    for source in SOURCES:
        x = sums.get(source)
        if x is None or mixdown.peak(x) < mixdown.SILENCE_PEAK:
            stems.append(np.zeros((CHANNELS, frames), dtype=np.float32))
            continue
        x, gains[source] = mixdown.level(x, planned.levels[source],
                                         CREST_MAX_DB)
        stems.append(x)
    audio, scale = mixdown.to_int16(stems)
    mix_peak = float(np.abs(audio.astype(np.int32).sum(axis=0)).max()) / \
        32768.0
    facts = {"sources": [s for s in SOURCES if s in gains],
             "gain_db": {s: round(20 * math.log10(g * scale), 2)
                         for s, g in gains.items()},
             "mix_peak": round(mix_peak, 4)}
    return audio, facts


_PACKED: dict = {}


def render_into(job) -> dict:
    """Render one planned track into its slice of the packed array; its
    level facts, or an error."""
    planned, start, prefix, kit, fluidsynth, wav_dir = job
    try:
        audio, facts = mix_track(planned, kit, fluidsynth)
    except (RuntimeError, ValueError) as e:
        return {"error": str(e)}
    if prefix not in _PACKED:
        _PACKED[prefix] = np.load(prefix + ".npy", mmap_mode="r+")
    packed = _PACKED[prefix]
    packed[:, :, start:start + audio.shape[2]] = audio
    packed.flush()
    if wav_dir:
        write_wavs(os.path.join(wav_dir, planned.entry["name"]), audio)
    return facts


def write_wavs(folder: str, audio: np.ndarray) -> None:
    os.makedirs(folder, exist_ok=True)
    mix = np.clip(audio.astype(np.int32).sum(axis=0), -32768, 32767)
    for name, x in list(zip(SOURCES, audio)) + [("mixture", mix)]:
        with wave.open(os.path.join(folder, name + ".wav"), "wb") as w:
            w.setnchannels(CHANNELS)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(x.T.astype("<i2").tobytes())


def make_tasks(args) -> list:
    midi = os.path.join(args.kit, "midi")
    songs = arrange.read_tar(os.path.join(midi, "pop909.tar.xz"))
    order = sorted(songs)
    random.Random(f"demixd-synth:{args.seed}:songs").shuffle(order)
    count = args.count or math.ceil(args.hours * 3600 / MEAN_EXCERPT_S
                                    * 1.1) + 2
    tasks = []
    for i in range(count):
        name = order[i % len(order)]
        song_id = os.path.splitext(os.path.basename(name))[0]
        tasks.append(Task(i, f"s{args.seed}-{i:05d}-pop909-{song_id}",
                          song_id, songs[name],
                          os.path.join(midi, "groove.tar.xz"), args.seed,
                          args.kit))
    return tasks


def render(args) -> dict:
    fluidsynth = fluidsynth_command(args.kit)
    soundfonts.Catalogue(os.path.join(args.kit, "sf"))   # fail early
    t0 = time.time()
    tasks = make_tasks(args)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        plans = list(pool.map(plan_track, tasks, chunksize=4))
        failed = [p.entry for p in plans if p.arrangement is None]
        plans = [p for p in plans if p.arrangement is not None]
        if args.hours:
            total, keep = 0, []
            for p in plans:
                if total >= args.hours * 3600:
                    break
                keep.append(p)
                total += p.entry["length"] / RATE
            plans = keep
        if not plans:
            raise SystemExit("render.py: no track could be arranged")
        start = 0
        for p in plans:
            p.entry["start"] = start
            start += p.entry["length"]
        t1 = time.time()
        os.makedirs(os.path.dirname(os.path.abspath(args.pack)),
                    exist_ok=True)
        packed = np.lib.format.open_memmap(
            args.pack + ".npy", mode="w+", dtype=np.int16,
            shape=(len(SOURCES), CHANNELS, start))
        del packed
        jobs = [(p, p.entry["start"], args.pack, args.kit, fluidsynth,
                 args.wav) for p in plans]
        tracks = []
        for i, (p, facts) in enumerate(zip(plans, pool.map(render_into,
                                                           jobs))):
            p.entry.update(facts)
            if "error" in facts:
                failed.append(p.entry)
            else:
                tracks.append(p.entry)
            if (i + 1) % PROGRESS_EVERY == 0:
                print(f"render.py: {i + 1} of {len(plans)} tracks, "
                      f"{time.time() - t1:.0f} s", flush=True)
    seconds = sum(t["length"] for t in tracks) / RATE
    # the pool's workers and their fluidsynth runs, all reaped by now
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    meta = {"root": "train/synth/render.py", "rate": RATE,
            "sources": list(SOURCES), "seed": args.seed,
            "kit": _kit_facts(args.kit), "licences": LICENCES,
            "plan_s": round(t1 - t0, 1), "render_s": round(time.time() - t1, 1),
            "jobs": args.jobs, "seconds": round(seconds, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "tracks": tracks, "failed": failed}
    with open(args.pack + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return meta


def _kit_facts(kit: str) -> dict:
    path = os.path.join(kit, "kit.json")
    if not os.path.exists(path):
        return {"fonts": sorted(os.listdir(os.path.join(kit, "sf")))}
    with open(path) as f:
        info = json.load(f)
    return {"fonts": [{k: f[k] for k in ("file", "licence")}
                      for f in info["fonts"]]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pack", required=True,
                   help="output prefix: PREFIX.npy and PREFIX.json")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--hours", type=float,
                        help="render tracks until they add up to this")
    amount.add_argument("--count", type=int, help="number of tracks planned")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--kit", default=os.path.normpath(DEFAULT_KIT),
                   help="kit folder (kit.py): sf/, midi/, fluidsynth "
                   "(default .carry/kit)")
    p.add_argument("--wav", help="also write every track's stems and "
                   "mixture as WAV under this folder")
    args = p.parse_args()
    if (args.count is not None and args.count < 1) or \
            (args.hours is not None and args.hours <= 0) or args.jobs < 1:
        p.error("--count, --hours and --jobs must be positive")
    meta = render(args)
    print(f"{args.pack}: {len(meta['tracks'])} tracks, "
          f"{meta['seconds'] / 60:.1f} min in {meta['plan_s']} s (plan) + "
          f"{meta['render_s']} s (render) on {args.jobs} processes, "
          f"{meta['cpu_s']} CPU-s ("
          f"{meta['cpu_s'] / max(meta['seconds'], 1e-9):.3f} per second of "
          "audio)"
          + (f"; {len(meta['failed'])} failed" if meta["failed"] else ""))
    for entry in meta["failed"]:
        print(f"  {entry['name']}: {entry['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
