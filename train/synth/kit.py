#!/usr/bin/env python3
"""Build the synthetic-render kit: what the GPU machine needs to render
training songs itself (it has python3 and numpy but no fluidsynth, no
soundfonts and no package registry).

  kit.py OUT [--cache DIR] [--midi DIR] [--fonts NAME,...]

OUT/
  fluidsynth          a wrapper that runs prefix/usr/bin/fluidsynth with
                      LD_LIBRARY_PATH on the carried libraries only (the
                      renderer's subprocesses; nothing else sees them)
  prefix.tar.xz       Debian's fluidsynth and the shared libraries it loads
                      (its ldd closure, less glibc and libstdc++), unpacked
                      there by `kit.py --unpack OUT`
  sf/<font>           the soundfonts of soundfonts.FONTS, each subset to the
                      presets the renderer can choose (sf2.subset) and
                      compressed to SF3 by Debian's sf3convert where it
                      was SF2
  midi/               pop909.tar.xz and groove.tar.xz
  kit.json            packages and versions, fonts with licence and size

Needs here (Debian): apt-get (download only), dpkg-deb, fluidsynth
installed (for its ldd closure), sf3convert, xz. The .debs are kept in
--cache so that a second build downloads nothing.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sf2  # noqa: E402
import soundfonts  # noqa: E402

MIDI = "/work/shared/data/midi"
# Libraries every machine that runs python3 has (and must keep its own of)
SYSTEM_LIBS = ("libc.so", "libm.so", "libpthread.so", "libdl.so",
               "librt.so", "ld-linux", "libstdc++.so", "libgcc_s.so",
               "linux-vdso")
WRAPPER = """#!/bin/sh
# fluidsynth from the carried prefix, on the carried libraries only
kit=$(cd "$(dirname "$0")" && pwd)
p=$kit/prefix
LD_LIBRARY_PATH=$p/usr/lib/x86_64-linux-gnu:$p/lib/x86_64-linux-gnu:\
$p/usr/lib/x86_64-linux-gnu/pulseaudio
export LD_LIBRARY_PATH
exec "$p/usr/bin/fluidsynth" "$@"
"""


def run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise SystemExit(f"kit: {' '.join(cmd)} failed ({done.returncode}): "
                         f"{done.stderr.strip()[-2000:]}")
    return done.stdout


def packages_of_libraries(binary: str) -> tuple[list, list]:
    """(Debian packages, library paths) of binary's ldd closure, less the
    system libraries."""
    libs = []
    for line in run(["ldd", binary]).splitlines():
        parts = line.split("=>")
        if len(parts) != 2 or not parts[1].strip().startswith("/"):
            continue
        path = parts[1].split()[0]
        if not any(os.path.basename(path).startswith(s) for s in SYSTEM_LIBS):
            libs.append(path)
    packages = set()
    for path in libs + [binary]:
        for candidate in (path, os.path.realpath(path)):
            done = subprocess.run(["dpkg", "-S", candidate],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                packages.add(done.stdout.split(":")[0].strip())
                break
        else:
            raise SystemExit(f"kit: no Debian package holds {path}")
    return sorted(packages), libs


def download(packages, cache: str) -> dict:
    """package -> .deb path in cache (apt-get download on a miss)."""
    os.makedirs(cache, exist_ok=True)
    out, missing = {}, []
    for p in packages:
        found = glob.glob(os.path.join(cache, f"{p}_*.deb"))
        if found:
            out[p] = sorted(found)[-1]
        else:
            missing.append(p)
    if missing:
        run(["apt-get", "download", *missing], cwd=cache)
        for p in missing:
            found = glob.glob(os.path.join(cache, f"{p}_*.deb"))
            if not found:
                raise SystemExit(f"kit: apt-get download {p} left no .deb")
            out[p] = sorted(found)[-1]
    return out


def build_prefix(debs: dict, libs: list, out: str) -> None:
    """prefix.tar.xz: fluidsynth and the libraries of the closure, from the
    downloaded packages (not from this machine's files, so the kit is the
    packages' content whatever is installed here)."""
    with tempfile.TemporaryDirectory(prefix="demixd-kit-") as tmp:
        root = os.path.join(tmp, "x")
        for deb in debs.values():
            run(["dpkg-deb", "-x", deb, root])
        names = {os.path.basename(p) for p in libs}
        keep = ["./usr/bin/fluidsynth"]
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f not in names:
                    continue
                path = os.path.join(dirpath, f)
                keep.append("./" + os.path.relpath(path, root))
                if os.path.islink(path):     # soname -> the real file
                    keep.append("./" + os.path.relpath(
                        os.path.realpath(path), root))
        found = {os.path.basename(k) for k in keep}
        if names - found:
            raise SystemExit("kit: not in the downloaded packages: "
                             + ", ".join(sorted(names - found)))
        keep = sorted(set(keep))
        listing = os.path.join(tmp, "files")
        with open(listing, "w") as f:
            f.write("\n".join(keep) + "\n")
        run(["tar", "-C", root, "-cJf", os.path.join(out, "prefix.tar.xz"),
             "--owner=0", "--group=0", "--mtime=2020-01-01",
             "-T", listing])
    with open(os.path.join(out, "fluidsynth"), "w") as f:
        f.write(WRAPPER)
    os.chmod(os.path.join(out, "fluidsynth"), 0o755)


def build_font(font: soundfonts.Font, deb: str, out_dir: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="demixd-font-") as tmp:
        run(["dpkg-deb", "-x", deb, tmp])
        src = os.path.join(tmp, font.path.lstrip("/"))
        with open(src, "rb") as f:
            data = f.read()
        keep = {(b, p) for b, p, _ in sf2.presets(data)
                if font.wanted(b, p)}
        small = sf2.subset(data, keep, font.rebank)
        dest = os.path.join(out_dir, font.name)
        if sf2.parse(small).compressed:
            with open(dest, "wb") as f:
                f.write(small)
        else:
            plain = os.path.join(tmp, "subset.sf2")
            with open(plain, "wb") as f:
                f.write(small)
            # fixed serial numbers: the same kit from the same packages
            run(["sf3convert", "-z", "-S", "1", plain, dest])
    return {"file": font.name, "package": font.package,
            "deb": os.path.basename(deb), "licence": font.licence,
            "source_bytes": len(data), "presets": len(keep),
            "bytes": os.path.getsize(dest)}


def build(out: str, cache: str, midi: str, fonts: list) -> dict:
    fluidsynth = shutil.which("fluidsynth")
    if not fluidsynth:
        raise SystemExit("kit: fluidsynth is not installed here "
                         "(apt-get install fluidsynth); its ldd closure "
                         "names the libraries to carry")
    for tool in ("sf3convert", "dpkg-deb", "apt-get", "xz"):
        if not shutil.which(tool):
            raise SystemExit(f"kit: {tool} not found (apt-get install "
                             f"{'sf3convert' if tool == 'sf3convert' else tool})")
    packages, libs = packages_of_libraries(os.path.realpath(fluidsynth))
    debs = download(packages + sorted({f.package for f in fonts}), cache)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "sf"))
    os.makedirs(os.path.join(out, "midi"))
    build_prefix({p: debs[p] for p in packages}, libs, out)
    font_info = [build_font(f, debs[f.package], os.path.join(out, "sf"))
                 for f in fonts]
    for name in ("pop909.tar.xz", "groove.tar.xz"):
        shutil.copy(os.path.join(midi, name), os.path.join(out, "midi"))
    info = {"packages": {p: os.path.basename(debs[p]) for p in packages},
            "fonts": font_info,
            "bytes": sum(os.path.getsize(os.path.join(d, f))
                         for d, _, fs in os.walk(out) for f in fs)}
    with open(os.path.join(out, "kit.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    return info


def unpack(kit: str) -> None:
    """Unpack prefix.tar.xz (once) and check that fluidsynth starts."""
    prefix = os.path.join(kit, "prefix")
    if not os.path.isdir(prefix):
        os.makedirs(prefix)
        run(["tar", "-C", prefix, "-xJf", os.path.join(kit, "prefix.tar.xz")])
    print(run([os.path.join(kit, "fluidsynth"), "--version"]).splitlines()[0])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="kit folder (made anew)")
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/demixd-"
                                                         "debs"),
                   help="where downloaded .debs are kept")
    p.add_argument("--midi", default=MIDI, help="folder of pop909.tar.xz "
                   "and groove.tar.xz")
    p.add_argument("--fonts", help="comma-separated font names (default: "
                   "soundfonts.FONTS; optional: "
                   + ", ".join(f.name for f in soundfonts.OPTIONAL_FONTS)
                   + ")")
    p.add_argument("--unpack", action="store_true",
                   help="unpack the kit at OUT where it is to be used")
    args = p.parse_args()
    if args.unpack:
        unpack(args.out)
        return 0
    every = {f.name: f for f in soundfonts.FONTS + soundfonts.OPTIONAL_FONTS}
    names = args.fonts.split(",") if args.fonts else \
        [f.name for f in soundfonts.FONTS]
    unknown = [n for n in names if n not in every]
    if unknown:
        p.error("unknown fonts: " + ", ".join(unknown))
    info = build(args.out, args.cache, args.midi, [every[n] for n in names])
    for f in info["fonts"]:
        print(f"{f['file']}: {f['presets']} presets, {f['source_bytes'] / 1e6:.1f}"
              f" -> {f['bytes'] / 1e6:.1f} MB ({f['licence']})")
    print(f"{args.out}: {info['bytes'] / 1e6:.1f} MB, "
          f"{len(info['packages'])} packages for fluidsynth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
