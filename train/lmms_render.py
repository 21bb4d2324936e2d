#!/usr/bin/python3
"""Four-source training stems from the LMMS demo projects (Debian
lmms-common), in the layout of ../shared/data:

    OUT/<project>/{drums,bass,vocals,other}.opus   Ogg Opus, 48 kHz stereo
    OUT/manifest.json                              per project: author,
                                                   licence, seconds, and
                                                   every track's decision
    OUT/decisions.tsv                              the same decisions as a
                                                   table (grep AMBIGUOUS)

Each instrument track of a project (those of the song editor and those
inside beat/bassline containers) is given a source by the rules of
`classify` (sample path, then track name, then the names of the FX mixer
channels it goes through, then the instrument plugin); a track with none
of these cues is rendered alone and goes to bass when BASS_LOW_SHARE of
its energy lies below LOW_HZ, else to other (`by_audio`). A project is
then rendered once per source present, each time in a fresh
`lmms render` with every other track muted, and left out when its
`other` stem still holds more than OTHER_LOW_LIMIT of its energy below
LOW_HZ (a bass part that a cue put in `other`). One process
per render: `lmms rendertracks` renders all tracks in one process and
carries effect state from one track to the next; it turned several
tracks of Oglsdl-Dr8v2 into NaN and 1e9 peaks, where a fresh process
renders the same track cleanly.

The stems of a project are padded to one length and scaled together so
that their sum peaks at MIX_CEILING; they are encoded with opusenc at
48 kbit/s, decoded again, and encoded lower when the decoded mixture
reaches DECODED_LIMIT, as train/synth/render.py does. No vocals: the demo
projects hold no recorded or sung voice (see train/DATA.md).

Needs (Debian): lmms lmms-common opus-tools python3-numpy
python3-soundfile. Runs headless (QT_QPA_PLATFORM=offscreen).

    train/lmms_render.py --out .carry/lmms [--jobs 2] [--only NAME...]
    train/lmms_render.py --plan          # the decisions only, no rendering
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib
from concurrent.futures import ThreadPoolExecutor

SOURCES = ("drums", "bass", "vocals", "other")
RATE = 48000
BITRATE_KBPS = 48
MIX_CEILING = 0.75        # peak of the stems' sum before Opus
DECODED_LIMIT = 0.9       # the same after decoding
LOW_HZ = 150              # low_share: energy below this
# A project whose `other` stem holds more of its energy below LOW_HZ is
# left out: some bass part went to `other` (the `other` stems of the
# kept projects hold 0-8 %, their bass stems 11-99 %).
OTHER_LOW_LIMIT = 0.15
SILENT_PEAK = 1e-3        # a stem below -60 dBFS peak is dropped
PROJECTS = "/usr/share/lmms/projects"

# Skipped, with the reason (train/DATA.md lists them).
SKIP = {
    "editing_note_volumes": "a tutorial: 20 notes of one synth, not music",
}

# Authors and licences from /usr/share/doc/lmms-common/copyright (Debian
# lmms 1.2.2+dfsg1-6); projects not named there fall under its `Files: *`
# stanza, GPL-2+. The samples and presets they use are LMMS's own
# (`Files: *`, GPL-2+).
LICENCES = [
    (("CapDan-ReggaeTry", "CapDan-ReggaetonTry", "CapDan-ZeroSumGame"),
     "Der Daniel (CapDan)", "Artistic-2.0"),
    (("EsoXLB-",), "E.SoX (lowbudget)", "Artistic-2.0"),
    (("Impulslogik-",), "Impulslogik", "Artistic-2.0"),
    (("Momo64-",), "mauro (momo64)", "Artistic-2.0"),
    (("Oglsdl-",), "Ümit (oglsdl)", "Artistic-2.0"),
    (("Settel-",), "Achim Settelmeier", "Artistic-2.0"),
    (("Socceroos-",), "Sam (socceroos)", "Artistic-2.0"),
    (("TameAnderson-",), "tame anderson", "Artistic-2.0"),
    (("Thomasso-",), "Thomasso", "Artistic-2.0"),
    (("Crunk",), "LMMS developers", "Artistic-2.0"),
    (("Greshz-",), "Greshz", "Artistic-2.0"),
    (("Surrender-",), "Peter Asplund (Surrender)", "Artistic-2.0"),
    (("Saber-",), "Saber Rastikerdar", "BSD-2-clause"),
    (("Alf42red-",), "Armin Heller (Alf42red)", "CC-BY-SA-3.0"),
    (("CapDan-TwilightArea",), "Der Daniel (CapDan), after Alf42red",
     "CC-BY-SA-3.0"),
    (("Jousboxx-",), "Jousboxx", "CC-BY-SA-4.0"),
    (("demos/Skiessi/",), "Skiessi", "CC-BY-SA-4.0"),
]


def licence_of(relpath: str) -> tuple[str, str]:
    """(author, licence) of a project path relative to PROJECTS."""
    for keys, author, licence in LICENCES:
        if any(k in relpath for k in keys):
            return author, licence
    author = os.path.basename(relpath).split("-")[0].split(".")[0]
    return author, "GPL-2+"


# ------------------------------------------------------------ projects

def read_project(path: str) -> ET.ElementTree:
    """The XML of an .mmp, or of an .mmpz (Qt's qCompress: a 4-byte
    big-endian length, then a zlib stream)."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".mmpz"):
        data = zlib.decompress(data[4:])
    return ET.ElementTree(ET.fromstring(data))


INSTRUMENT, BB, SAMPLE = "0", "1", "2"


def playable_tracks(root: ET.Element) -> list[tuple[str, ET.Element]]:
    """(where, track) of every instrument and sample track: those of the
    song editor ("song") and those of the beat/bassline editor ("bb"),
    whose tracks every beat/bassline track of the song plays."""
    out = []
    song = root.find("song/trackcontainer")
    for t in song.findall("track"):
        if t.get("type") in (INSTRUMENT, SAMPLE):
            out.append(("song", t))
        elif t.get("type") == BB:
            inner = t.find("bbtrack/trackcontainer")
            # one container holds the instruments of all beat/basslines;
            # LMMS stores it under the first beat/bassline track
            if inner is not None:
                out += [("bb", x) for x in inner.findall("track")
                        if x.get("type") in (INSTRUMENT, SAMPLE)]
    return out


def fx_chain_names(root: ET.Element, channel: int) -> list[str]:
    """Names of FX channel `channel` and of the channels it sends to,
    nearest first (FX 0, the master, excluded; default "FX n" names
    carry nothing)."""
    chans = {int(c.get("num")): c for c in root.findall("song/fxmixer/"
                                                         "fxchannel")}
    names, seen, todo = [], set(), [channel]
    while todo:
        n = todo.pop(0)
        if n in seen or n == 0 or n not in chans:
            continue
        seen.add(n)
        name = chans[n].get("name", "")
        if not re.fullmatch(r"FX \d+", name):
            names.append(name)
        todo += [int(s.get("channel")) for s in chans[n].findall("send")]
    return names


def oscillator_shift(ins) -> int:
    """Semitones by which a TripleOscillator sounds below its notes: the
    coarse tuning of its lowest oscillator among those at least half as
    loud as the loudest (0 for other plugins)."""
    if ins is None or ins.get("name") != "tripleoscillator" or not len(ins):
        return 0
    osc = ins[0]
    vols = [float(osc.get(f"vol{i}", "0")) for i in range(3)]
    coarse = [int(float(osc.get(f"coarse{i}", "0"))) for i in range(3)]
    loud = [c for v, c in zip(vols, coarse) if v >= max(vols) / 2 > 0]
    return min(loud) if loud else 0


def track_facts(root: ET.Element, where: str, t: ET.Element) -> dict:
    """What the rules look at, for one track."""
    facts = {"where": where, "name": t.get("name", ""), "plugin": "",
             "sample": "", "fx": [], "notes": 0, "pitch": None,
             "muted": t.get("muted") == "1"}
    it = t.find("instrumenttrack")
    if t.get("type") == SAMPLE:
        facts["plugin"] = "sampletrack"
        facts["notes"] = len(t.findall("sampletco"))
        facts["sample"] = ",".join(sorted({c.get("src", "") for c in
                                           t.findall("sampletco")}))
        return facts
    ins = it.find("instrument") if it is not None else None
    if ins is not None:
        facts["plugin"] = ins.get("name", "")
        if len(ins) and ins[0].get("src"):
            facts["sample"] = ins[0].get("src")
    facts["fx"] = fx_chain_names(root, int(it.get("fxch", "0")))
    keys = [int(n.get("key")) for p in t.findall("pattern")
            for n in p.findall("note")]
    facts["notes"] = len(keys)
    if keys:
        # LMMS plays key k at 440 Hz * 2^((k - basenote) / 12): MIDI
        # 69 + k - basenote, before any transposition inside the plugin
        base = int(it.get("basenote", "57"))
        shift = oscillator_shift(ins)
        midi = sorted(69 + k - base + shift for k in keys)
        facts["pitch"] = {"median": statistics.median(midi),
                          "p90": midi[int(0.9 * (len(midi) - 1))]}
    return facts


# ------------------------------------------------------------ rules

def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9]+", " ", text.lower()) + " "


# substrings, or " word " for whole words
DRUM_CUES = ("kick", "snare", "clap", "hihat", "hi hat", "hat ", "hats",
             "cymbal", "crash", "ride ", "tom ", "perc", "shaker", "rim",
             "drum", "beat", " bd ", " sd ", " hh ", " sn ", "tamb",
             "conga", "bongo", "cowbell", "snap", "808", "909")
BASS_CUES = ("bass", " sub ", "sub ", "303")
VOCAL_CUES = ("vocal", " vox", "voice", "choir", "sing", "chorus")
OTHER_CUES = ("lead", "chord", "arp", "pad", "pluck", "string", "piano",
              "organ", "synth", "pipe", "reed", "brass", "guitar",
              "woosh", "whoosh", "sweep", "fx", "noise", "bell", "melod",
              "accent", "rhodes", "flute", "trumpet", "strings", "stab",
              "twinkle", "zip", "chime")


def _cue(text: str, cues) -> bool:
    w = _words(text)
    return any(c in w for c in cues)


def by_name(text: str) -> str | None:
    """The source a name says, or None. Drums first: "bassdrum"."""
    if _cue(text, DRUM_CUES) and not _cue(text, ("sub bass",)):
        return "drums"
    if _cue(text, BASS_CUES):
        return "bass"
    if _cue(text, VOCAL_CUES):
        return "vocals"
    if _cue(text, OTHER_CUES):
        return "other"
    return None


# drumsynth folders of melodic sounds and sound effects; the rest of
# drumsynth/ are drum kits
DRUMSYNTH_PITCHED = ("instrument", "misc_synth", "misc_fx", "effects")


def by_sample(path: str) -> tuple[str, str, bool] | None:
    """(source, rule, ambiguous) from an LMMS factory sample path."""
    if not path:
        return None
    p = path.lower()
    parts = p.split("/")
    top, name = parts[0], parts[-1]
    if top == "drumsynth" and len(parts) > 2:
        folder = parts[1]
        if folder == "misc_bass":
            # bass drums and bass tones side by side
            src = "drums" if _cue(name, ("bd", "drum", "kick")) else "bass"
            return src, f"sample {path}: drumsynth/misc_bass by name", True
        if folder in DRUMSYNTH_PITCHED:
            src = "bass" if "bass" in name else "other"
            return src, f"sample {path}: drumsynth/{folder}", folder in (
                "misc_fx", "effects")
        return "drums", f"sample {path}: drumsynth kit", False
    if top in ("drums", "beats"):
        if name.startswith("zap"):
            return "other", f"sample {path}: a laser zap, played as notes", \
                True
        return "drums", f"sample {path}: {top}/", False
    if top == "basses" or name.startswith("bassslap") or name == "bass!.ogg":
        return "bass", f"sample {path}: bass sample", False
    if top == "stringsnpads" and name.startswith("chorus"):
        return "other", f"sample {path}: a sampled choir pad (not sung " \
            "words)", True
    return "other", f"sample {path}: {top}/", False


# plugins that are bass synthesizers by design
BASS_PLUGINS = ("lb302",)
# a track with no cue: decided by its own render (by_audio)
PITCHED = "pitched"
BASS_LOW_SHARE = 0.4      # bass when this share of its energy is < LOW_HZ


def classify(f: dict) -> tuple[str, str, bool]:
    """(source, rule, ambiguous) of one track; source "unused" for a
    track that is muted in the project or plays nothing."""
    if f["muted"]:
        return "unused", "muted in the project", False
    if f["notes"] == 0:
        return "unused", "no notes or clips", False
    got = by_sample(f["sample"]) if f["plugin"] in (
        "audiofileprocessor", "sampletrack") else None
    if got:
        src, rule, amb = got
        named = by_name(f["name"])
        if named and named != src and named != "vocals":
            return src, rule + f" (name {f['name']!r} says {named})", True
        return src, rule, amb
    named = by_name(f["name"])
    if named == "vocals":
        return "other", f"name {f['name']!r}: a synthesized voice-like " \
            "sound, not a human voice", True
    if named:
        return named, f"name {f['name']!r}", False
    for fx in f["fx"]:
        named = by_name(fx)
        if named and named != "vocals":
            return named, f"FX channel {fx!r}", False
    if f["plugin"] in BASS_PLUGINS:
        return "bass", f"plugin {f['plugin']} (a TB-303 bass synth)", False
    if f["plugin"] == "kicker":
        return "drums", "plugin kicker (a kick drum synth), no other cue", \
            True
    if f["plugin"] == "sfxr":
        return "other", "plugin sfxr (sound effects)", False
    # no cue: the notes' keys do not tell (a plugin preset may sound
    # octaves away from them), so the track's own render decides
    p = f["pitch"]
    med = "" if not p else f" (median MIDI note {p['median']:.0f})"
    return PITCHED, f"{f['plugin']}, no cue{med}", True


def by_audio(share: float, peak: float) -> tuple[str, str, bool]:
    """(source, rule, ambiguous) of a PITCHED track from its render alone:
    its low_share and its peak."""
    if peak < SILENT_PEAK:
        return "unused", "silent when rendered alone", False
    src = "bass" if share >= BASS_LOW_SHARE else "other"
    return src, (f"rendered alone: {share:.0%} of its energy below "
                 f"{LOW_HZ} Hz"), abs(share - BASS_LOW_SHARE) < 0.15


def groups_of(tracks: list[dict]) -> dict:
    """source -> indices of the tracks that go to it."""
    groups = {}
    for t in tracks:
        if t["source"] in SOURCES:
            groups.setdefault(t["source"], []).append(t["index"])
    return groups


def plan(path: str) -> dict:
    """The decisions of one project: {"tracks": [...], "sources": {...}}
    with the indices of playable_tracks per source."""
    tree = read_project(path)
    root = tree.getroot()
    tracks = []
    for i, (where, t) in enumerate(playable_tracks(root)):
        f = track_facts(root, where, t)
        src, rule, amb = classify(f)
        tracks.append({"index": i, "where": where, "name": f["name"],
                       "plugin": f["plugin"], "sample": f["sample"],
                       "fx": f["fx"], "notes": f["notes"],
                       "source": src, "rule": rule, "ambiguous": amb})
    return {"tracks": tracks, "sources": groups_of(tracks)}


# ------------------------------------------------------------ rendering

def lmms_command() -> list[str]:
    cmd = ["lmms"]
    if os.geteuid() == 0:
        cmd.append("--allowroot")    # containers run as root
    return cmd


def muted_copy(tree: ET.ElementTree, keep) -> ET.ElementTree:
    """The project with every playable track outside `keep` (indices
    into playable_tracks) muted; tracks muted in the project stay muted,
    and no track is soloed (a solo would override the mutes)."""
    tree = copy.deepcopy(tree)
    for i, (_, t) in enumerate(playable_tracks(tree.getroot())):
        if i not in keep:
            t.set("muted", "1")
    for t in tree.getroot().iter("track"):
        t.set("solo", "0")
    return tree


def render_source(path: str, keep: list[int], wav: str, workdir: str,
                  timeout_s: int) -> None:
    """Render the project with only the tracks `keep` (indices into
    playable_tracks) audible, to a 32-bit float WAV at RATE."""
    tree = muted_copy(read_project(path), keep)
    mmp = os.path.join(workdir, os.path.basename(wav)[:-4] + ".mmp")
    tree.write(mmp, xml_declaration=True, encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run(lmms_command() + [
        "render", mmp, "-o", wav, "-f", "wav", "-s", str(RATE), "-a"],
        env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not os.path.exists(wav):
        raise RuntimeError(f"lmms render of {mmp} failed (exit "
                           f"{done.returncode}): {done.stderr[-500:]}")


def encode(x, workdir: str, opus: str, bitrate: int, rate: int = RATE
           ) -> None:
    """opusenc resamples other rates to 48 kHz itself."""
    import soundfile
    wav = os.path.join(workdir, "encode.wav")
    soundfile.write(wav, x, rate, subtype="FLOAT")
    done = subprocess.run(["opusenc", "--quiet", "--bitrate", str(bitrate),
                           "--serial", "1", wav, opus],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"opusenc failed on {opus}: {done.stderr}")
    os.remove(wav)


def decode(opus: str, workdir: str):
    import soundfile
    wav = os.path.join(workdir, "decode.wav")
    done = subprocess.run(["opusdec", "--quiet", "--float", "--rate",
                           str(RATE), opus, wav], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"opusdec failed on {opus}: {done.stderr}")
    x, _ = soundfile.read(wav, dtype="float32", always_2d=True)
    os.remove(wav)
    return x


def low_share(x, rate: int = RATE) -> float:
    """Share of a stem's energy below LOW_HZ: a check of the grouping
    (an `other` stem that is mostly low end likely holds a bass part)."""
    import numpy as np
    mono = x.mean(axis=1)
    n = 8192
    blocks = mono[:len(mono) // n * n].reshape(-1, n)
    if not len(blocks):
        return 0.0
    power = (np.abs(np.fft.rfft(blocks * np.hanning(n), axis=1)) ** 2
             ).sum(axis=0)
    cut = int(LOW_HZ * n / rate)
    return float(power[:cut].sum() / max(power.sum(), 1e-30))


def level_and_encode(stems: dict, out_dir: str, workdir: str,
                     rate: int = RATE) -> dict:
    """stems: source -> float32 [N, 2] at `rate`. Write
    OUT_DIR/<source>.opus (48 kHz) so that the decoded sum stays below
    DECODED_LIMIT; returns the levels."""
    import numpy as np
    n = max(len(x) for x in stems.values())
    stems = {s: np.pad(x, ((0, n - len(x)), (0, 0))) for s, x in
             stems.items()}
    # drop the common silent tail (LMMS renders a bar past the last note)
    loud = np.nonzero(np.abs(sum(stems.values())).max(1) > SILENT_PEAK)[0]
    end = min(n, int(loud[-1]) + rate // 2) if len(loud) else n
    stems = {s: x[:end] for s, x in stems.items()}
    peak = float(np.abs(sum(stems.values())).max())
    ceiling, tries = MIX_CEILING, 0
    os.makedirs(out_dir, exist_ok=True)
    while True:
        gain = ceiling / peak
        for s, x in stems.items():
            encode(x * gain, workdir, os.path.join(out_dir, s + ".opus"),
                   BITRATE_KBPS, rate)
        dec = [decode(os.path.join(out_dir, s + ".opus"), workdir)
               for s in stems]
        m = min(len(d) for d in dec)
        dpeak = float(np.abs(sum(d[:m] for d in dec)).max())
        if dpeak < DECODED_LIMIT or tries == 3:
            break
        ceiling *= 0.9 * DECODED_LIMIT / dpeak
        tries += 1
    if dpeak >= DECODED_LIMIT:
        raise RuntimeError(f"{out_dir}: decoded mixture peaks at {dpeak}")
    return {"seconds": round(end / rate, 2),
            "low_share": {s: round(low_share(x, rate), 3) for s, x in
                          stems.items()},
            "gain_db":
            round(20 * np.log10(gain), 2), "decoded_mix_peak":
            round(dpeak, 3)}


def render_project(path: str, out_root: str, timeout_s: int) -> dict:
    """Plan, render, level and encode one project; its manifest entry."""
    import numpy as np
    import soundfile
    rel = os.path.relpath(path, PROJECTS)
    name = os.path.splitext(os.path.basename(path))[0]
    author, licence = licence_of(rel)
    entry = {"project": rel, "author": author, "licence": licence,
             **plan(path)}
    work = tempfile.mkdtemp(prefix=f"lmms-{name}-")
    try:
        for t in entry["tracks"]:
            if t["source"] != PITCHED:
                continue
            wav = os.path.join(work, f"track{t['index']}.wav")
            render_source(path, [t["index"]], wav, work, timeout_s)
            x, _ = soundfile.read(wav, dtype="float32", always_2d=True)
            os.remove(wav)
            src, why, amb = by_audio(low_share(x), float(np.abs(x).max()))
            t.update(source=src, rule=f"{t['rule']}; {why}", ambiguous=amb)
        entry["sources"] = groups_of(entry["tracks"])
        stems = {}
        for src in SOURCES:
            keep = entry["sources"].get(src)
            if not keep:
                continue
            wav = os.path.join(work, src + ".wav")
            render_source(path, keep, wav, work, timeout_s)
            x, rate = soundfile.read(wav, dtype="float32", always_2d=True)
            if rate != RATE or x.shape[1] != 2:
                raise RuntimeError(f"{wav}: {rate} Hz, {x.shape[1]} ch")
            if not np.isfinite(x).all() or np.abs(x).max() > 64:
                raise RuntimeError(f"{name} {src}: non-finite or runaway "
                                   f"samples (peak {np.abs(x).max()})")
            if np.abs(x).max() < SILENT_PEAK:
                entry.setdefault("silent", []).append(src)
                continue
            stems[src] = x
            os.remove(wav)
        if not stems:
            raise RuntimeError(f"{name}: every source rendered silent")
        out_dir = os.path.join(out_root, name)
        shutil.rmtree(out_dir, ignore_errors=True)
        if "other" in stems:
            share = low_share(stems["other"])
            if share > OTHER_LOW_LIMIT:
                entry["skipped"] = (
                    f"`other` holds {share:.0%} of its energy below "
                    f"{LOW_HZ} Hz: a bass part the rules did not find")
                return entry
        entry.update(level_and_encode(stems, out_dir, work))
        entry["stems"] = sorted(stems)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return entry


def projects(root: str, only: list[str]) -> list[str]:
    found = sorted(glob.glob(os.path.join(root, "**", "*.mmp*"),
                             recursive=True))
    out = []
    for p in found:
        name = os.path.splitext(os.path.basename(p))[0]
        if only and name not in only:
            continue
        if name in SKIP:
            continue
        out.append(p)
    return out


def write_decisions(entries: list[dict], path: str) -> None:
    with open(path, "w") as f:
        f.write("project\twhere\ttrack\tplugin\tsample\tnotes\tsource\t"
                "ambiguous\trule\n")
        for e in entries:
            for t in e["tracks"]:
                f.write("\t".join(str(x) for x in (
                    os.path.basename(e["project"]), t["where"], t["name"],
                    t["plugin"], t["sample"], t["notes"], t["source"],
                    "AMBIGUOUS" if t["ambiguous"] else "",
                    t["rule"])) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default=".carry/lmms")
    p.add_argument("--projects", default=PROJECTS)
    p.add_argument("--only", nargs="*", default=[],
                   help="project names (file names without extension)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=int, default=1800,
                   help="seconds per lmms render")
    p.add_argument("--plan", action="store_true",
                   help="print the decisions, render nothing")
    args = p.parse_args(argv)
    paths = projects(args.projects, args.only)
    if not paths:
        raise SystemExit(f"no LMMS projects under {args.projects} "
                         "(apt-get install lmms-common)")
    if args.plan:
        entries = [{"project": os.path.relpath(x, args.projects),
                    **plan(x)} for x in paths]
        write_decisions(entries, "/dev/stdout")
        return 0
    for tool in ("lmms", "opusenc", "opusdec"):
        if not shutil.which(tool):
            raise SystemExit(f"lmms_render.py: {tool} not found "
                             "(apt-get install lmms opus-tools)")
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "manifest.json")
    done, skipped_before = {}, {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = json.load(f)
        done = {e["project"]: e for e in old["projects"]}
        rels = {os.path.splitext(os.path.basename(x))[0]:
                os.path.relpath(x, args.projects) for x in paths}
        skipped_before = {rels[n]: why for n, why in old["skipped"].items()
                          if n in rels}

    def one(path):
        rel = os.path.relpath(path, args.projects)
        name = os.path.splitext(os.path.basename(path))[0]
        if rel in done and os.path.isdir(os.path.join(args.out, name)):
            return done[rel]
        if rel in skipped_before:
            return {"project": rel, "skipped": skipped_before[rel]}
        e = render_project(path, args.out, args.timeout)
        if "skipped" not in e:
            print(f"{name}: {e['seconds']:.0f} s, {','.join(e['stems'])}",
                  flush=True)
        return e

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        entries = list(pool.map(one, paths))
    entries.sort(key=lambda e: e["project"])
    skipped = dict(SKIP)
    for e in entries:
        if "skipped" in e:
            skipped[os.path.splitext(os.path.basename(e["project"]))[0]] = \
                e["skipped"]
    rendered = [e for e in entries if "skipped" not in e]
    minutes = sum(e["seconds"] for e in rendered) / 60
    with open(manifest_path, "w") as f:
        json.dump({"source": "Debian lmms-common demo projects",
                   "rate": RATE, "bitrate_kbps": BITRATE_KBPS,
                   "skipped": skipped, "minutes": round(minutes, 2),
                   "projects": rendered}, f, indent=1, ensure_ascii=False)
    write_decisions(rendered, os.path.join(args.out, "decisions.tsv"))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print(f"{len(rendered)} projects, {minutes:.1f} min -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
