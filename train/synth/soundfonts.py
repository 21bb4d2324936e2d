"""The soundfonts of the synthetic renders: which, under what licence, and
which preset a part gets.

Every part of a track (the melody, the bass, each accompaniment track, the
drums) picks its own soundfont from FONTS at random (by weight, among those
that hold a preset for its role), then a program of its role's family
table, then one of that font's presets for the program (its variation
banks too: MuseScore General's "Expr." and "Mellow" versions, ...). So one
track mixes sounds of several fonts, as a real production mixes sources.

The kit (kit.py) holds each font as FONTS names it, subset to the presets
this table can choose and compressed to SF3; `Catalogue` reads the presets
of the fonts present in a kit folder, so a kit with fewer fonts (the one
of the tests, or a session that carried less) works the same.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import sf2

ROLES = ("drums", "bass", "vocals", "other")
DRUM_BANK = 128
# Variation banks (GM's bank 0 programs in other versions) a part may get.
VARIATION_BANKS = (0, 8, 16, 17)

# GM programs by family; a part picks a family by weight, then a program.
FAMILIES = {
    "voice": [52, 53, 54, 85],          # choir aahs, voice oohs, synth
                                        # voice, lead 6 (solo vox)
    "space-voice": [91],
    "bass": [32, 33, 34, 35, 36, 37, 38, 39],
    "piano": [0, 1, 2, 3], "e-piano": [4, 5], "organ": [16, 17, 18, 19],
    "guitar": [24, 25, 26, 27, 28], "drive-guitar": [29, 30],
    "strings": [48, 49, 50, 51], "brass": [61, 62, 63],
    "pad": [88, 89, 90, 92, 94, 95], "lead": [80, 81, 87],
    "reed": [64, 65, 66, 71, 73], "mallet": [6, 11, 46],
}
# Family weights per part. The melody is "vocals" and gets voice programs
# only (the earlier renders gave it saxes and flutes now and then, which
# taught that a sax is a voice; they play counter-lines in other now).
PART_FAMILIES = {
    "vocals": [("voice", 6), ("space-voice", 1)],
    "bass": [("bass", 1)],
    # POP909's PIANO track: the dense accompaniment
    "piano": [("piano", 4), ("e-piano", 2), ("guitar", 2),
              ("drive-guitar", 0.5), ("organ", 1), ("strings", 0.5),
              ("pad", 0.5)],
    # BRIDGE: counter-lines and fills
    "bridge": [("strings", 2), ("pad", 2), ("brass", 1), ("guitar", 1),
               ("drive-guitar", 1), ("piano", 1), ("e-piano", 1),
               ("organ", 1), ("lead", 1), ("reed", 1), ("mallet", 0.5)],
}
# GM drum kits (bank 128 programs): standard, room, power, electronic,
# TR-808, jazz, brush and their numbered variations.
DRUM_KITS = set(range(0, 20)) | {24, 25} | set(range(32, 37)) | \
    set(range(40, 43))

# The AVL drum kits put articulations on GM tom and cymbal notes; the
# Groove MIDI notes (already folded to GM by arrange.GROOVE_TO_GM) that
# would sound wrong there go to the kit's own sounds: its two toms (45
# 12", 41 16" floor) and second crash.
AVL_KEYS = {48: 45, 50: 47, 43: 41, 52: 57, 58: 41}


@dataclass(frozen=True)
class Font:
    name: str             # file name in the kit
    package: str          # the Debian package it comes from
    path: str             # the file inside that package
    licence: str
    weight: float
    roles: tuple = ROLES
    rebank: dict = field(default_factory=dict)   # sf2.subset's rebank
    drum_keys: dict = field(default_factory=dict)

    def wanted(self, bank: int, program: int) -> bool:
        """Whether the kit keeps this preset of the source file (after
        rebanking)."""
        bank, program = self.rebank.get((bank, program), (bank, program))
        if bank == DRUM_BANK:
            return "drums" in self.roles and program in DRUM_KITS
        return bank in VARIATION_BANKS and any(
            program in FAMILIES[f] for f in FAMILIES)


_MSGS = "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"
FONTS = (
    Font("MuseScore_General_Lite.sf3", "musescore-general-soundfont-small",
         _MSGS, "MIT (MuseScore General by S. Christian Collins, from "
         "FluidR3 by Frank Wen and FluidR3Mono by Michael Cowgill)", 3.0),
    Font("sf_GMbank.sf3", "csound-soundfont",
         "/usr/share/sounds/sf2/sf_GMbank.sf2",
         "public domain (Csound's sf_GMbank.sf2)", 1.5),
    Font("TimGM6mb.sf3", "timgm6mb-soundfont",
         "/usr/share/sounds/sf2/TimGM6mb.sf2",
         "GPL-2+ (TimGM6mb by Tim Brechbill)", 1.0),
    Font("Black_Pearl_4.sf3", "avldrums.lv2-soundfont",
         "/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2",
         "CC BY-SA 3.0 (AVL Drumkits by Glen MacArthur)", 3.0,
         roles=("drums",), rebank={(0, 0): (DRUM_BANK, 0)},
         drum_keys=AVL_KEYS),
    Font("Red_Zeppelin_4.sf3", "avldrums.lv2-soundfont",
         "/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2",
         "CC BY-SA 3.0 (AVL Drumkits by Glen MacArthur)", 3.0,
         roles=("drums",), rebank={(0, 0): (DRUM_BANK, 0)},
         drum_keys=AVL_KEYS),
)
# Left out of the default kit for size (one more call of carrying), kept
# here so that kit.py --fonts can add it: a mono FluidR3, close to
# MuseScore General's own samples.
OPTIONAL_FONTS = (
    Font("FluidR3Mono_GM.sf3", "fluidr3mono-gm-soundfont",
         "/usr/share/fluidr3mono-gm-soundfont/FluidR3Mono_GM.sf3",
         "MIT (FluidR3Mono by Michael Cowgill, from FluidR3 by Frank Wen)",
         2.0),
)


def weighted(rng: random.Random, table):
    items, weights = zip(*table)
    return rng.choices(items, weights=weights)[0]


class Catalogue:
    """The fonts of FONTS (and OPTIONAL_FONTS) present in a kit folder,
    with their presets."""

    def __init__(self, folder: str):
        self.folder = folder
        self.fonts = []
        self.presets = {}     # font name -> {(bank, program)}
        for font in FONTS + OPTIONAL_FONTS:
            path = os.path.join(folder, font.name)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                found = {(b, p) for b, p, _ in sf2.presets(f.read())}
            self.fonts.append(font)
            self.presets[font.name] = found
        if not self.fonts:
            raise SystemExit(f"{folder}: none of the soundfonts "
                             + ", ".join(f.name for f in FONTS)
                             + " (make them with train/synth/kit.py)")

    def path(self, font: Font) -> str:
        return os.path.join(self.folder, font.name)

    def _fonts_for(self, ok) -> list:
        return [(f, f.weight) for f in self.fonts
                if any(ok(f, bp) for bp in self.presets[f.name])]

    def drums(self, rng: random.Random) -> tuple[Font, int]:
        """(font, kit program) for a drum part."""
        def ok(font, bp):
            return "drums" in font.roles and bp[0] == DRUM_BANK and \
                bp[1] in DRUM_KITS
        choices = self._fonts_for(ok)
        if not choices:
            raise SystemExit(f"{self.folder}: no soundfont with a drum kit")
        font = weighted(rng, choices)
        kits = sorted(p for b, p in self.presets[font.name]
                      if b == DRUM_BANK and p in DRUM_KITS)
        return font, rng.choice(kits)

    def melodic(self, rng: random.Random, role: str,
                part: str) -> tuple[Font, int, int, str]:
        """(font, bank, program, family) for a pitched part: part is a key
        of PART_FAMILIES, role the source it sounds in."""
        def ok(font, bp, programs):
            return role in font.roles and bp[0] in VARIATION_BANKS and \
                bp[1] in programs
        # families no font of the kit has are left out of the draw
        families = [(f, w) for f, w in PART_FAMILIES[part]
                    if self._fonts_for(lambda font, bp, f=f:
                                       ok(font, bp, FAMILIES[f]))]
        if not families:
            raise SystemExit(f"{self.folder}: no soundfont has a program "
                             f"for {part} ({role})")
        family = weighted(rng, families)
        programs = FAMILIES[family]
        choices = self._fonts_for(lambda font, bp: ok(font, bp, programs))
        font = weighted(rng, choices)
        program = rng.choice(sorted(p for b, p in self.presets[font.name]
                                    if b in VARIATION_BANKS and
                                    p in programs))
        # the GM bank most of the time, a variation now and then
        banks = sorted(b for b, p in self.presets[font.name]
                       if p == program and b in VARIATION_BANKS)
        bank = 0 if 0 in banks and rng.random() < 0.7 else rng.choice(banks)
        return font, bank, program, family
