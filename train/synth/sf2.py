"""SoundFont 2 / 3 reader, subsetter and writer (python3 standard library).

What the synthetic-data renderer needs of soundfonts:
- `presets(data)`: the (bank, program, name) list of a file, so that a part
  is only ever given a program its soundfont has (fluidsynth plays silence
  for a missing one);
- `subset(data, keep)`: the same file with only the presets in keep and the
  instruments and samples they use, so that the soundfonts carried to the
  GPU machine hold what the renderer plays and nothing else (and a drum
  kit stored as a melodic preset can move to bank 128).

Format (SoundFont 2.04 spec): RIFF 'sfbk' with LIST INFO, LIST sdta (smpl:
16-bit sample points) and LIST pdta (the nine "hydra" tables phdr, pbag,
pmod, pgen, inst, ibag, imod, igen, shdr, each closed by a terminal
record). SF3 (MuseScore's extension, read by fluidsynth >= 2.0) stores
each sample as an Ogg Vorbis stream: its shdr start/end are byte offsets
into smpl and its loop points count decoded frames from the sample's own
start (sampletype bit 0x10).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

GEN_INSTRUMENT = 41
GEN_SAMPLE_ID = 53
GEN_KEY_RANGE = 43
GEN_VEL_RANGE = 44
GEN_SAMPLE_MODES = 54
GEN_OVERRIDING_ROOT_KEY = 58
GEN_RELEASE_VOL_ENV = 38
GEN_PAN = 17
GEN_INITIAL_ATTENUATION = 48
SAMPLE_VORBIS = 0x10
SAMPLE_ROM = 0x8000
MONO_SAMPLE = 1
SF2_GUARD_POINTS = 46          # zero points the spec asks after each sample

_PHDR = struct.Struct("<20sHHHIII")
_BAG = struct.Struct("<HH")
_MOD = struct.Struct("<HHhHH")
_GEN = struct.Struct("<HH")
_INST = struct.Struct("<20sH")
_SHDR = struct.Struct("<20sIIIIIBbHH")


class SoundFontError(ValueError):
    """A file that is not a SoundFont this module understands."""


@dataclass
class Sample:
    name: bytes
    start: int
    end: int
    loop_start: int
    loop_end: int
    rate: int
    root: int
    correction: int
    link: int
    kind: int


@dataclass
class SoundFont:
    info: list          # [(chunk id, bytes)] of LIST INFO, in order
    smpl: bytes
    phdr: list          # [(name, program, bank, bag, library, genre, morph)]
    pbag: list          # [(gen index, mod index)]
    pmod: list          # [5-tuples]
    pgen: list          # [(operator, amount as unsigned 16 bits)]
    inst: list          # [(name, bag)]
    ibag: list
    imod: list
    igen: list
    shdr: list          # [Sample], the terminal EOS included

    @property
    def compressed(self) -> bool:
        return any(s.kind & SAMPLE_VORBIS for s in self.shdr[:-1])


def _chunks(data: bytes, pos: int, end: int):
    """(id, body start, body end) of the RIFF chunks in data[pos:end]."""
    while pos + 8 <= end:
        cid = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        if pos + 8 + size > end:
            raise SoundFontError(f"chunk {cid!r} of {size} bytes runs past "
                                 "its list")
        yield cid, pos + 8, pos + 8 + size
        # RIFF pads odd chunks to even length, but some SF3 writers do not:
        # skip the pad byte only where there is one
        pad = size & 1 and data[pos + 8 + size:pos + 9 + size] == b"\0"
        pos += 8 + size + pad


def _table(body: bytes, layout: struct.Struct, name: str) -> list:
    if len(body) % layout.size or len(body) < layout.size:
        raise SoundFontError(f"{name}: {len(body)} bytes is not a whole "
                             f"number of {layout.size}-byte records")
    return [layout.unpack_from(body, i)
            for i in range(0, len(body), layout.size)]


def parse(data: bytes) -> SoundFont:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise SoundFontError("not a RIFF sfbk file")
    lists = {}
    for cid, start, end in _chunks(data, 12, len(data)):
        if cid == b"LIST":
            lists[data[start:start + 4]] = (start + 4, end)
    for need in (b"INFO", b"sdta", b"pdta"):
        if need not in lists:
            raise SoundFontError(f"no LIST {need.decode()}")
    info = [(cid, data[s:e]) for cid, s, e in _chunks(data, *lists[b"INFO"])]
    smpl = b""
    for cid, s, e in _chunks(data, *lists[b"sdta"]):
        if cid == b"smpl":
            smpl = data[s:e]
    hydra = {cid: data[s:e] for cid, s, e in _chunks(data, *lists[b"pdta"])}
    layouts = {b"phdr": _PHDR, b"pbag": _BAG, b"pmod": _MOD, b"pgen": _GEN,
               b"inst": _INST, b"ibag": _BAG, b"imod": _MOD, b"igen": _GEN,
               b"shdr": _SHDR}
    tables = {}
    for cid, layout in layouts.items():
        if cid not in hydra:
            raise SoundFontError(f"pdta has no {cid.decode()} chunk")
        tables[cid] = _table(hydra[cid], layout, cid.decode())
    return SoundFont(
        info=info, smpl=smpl,
        phdr=tables[b"phdr"], pbag=tables[b"pbag"], pmod=tables[b"pmod"],
        pgen=tables[b"pgen"], inst=tables[b"inst"], ibag=tables[b"ibag"],
        imod=tables[b"imod"], igen=tables[b"igen"],
        shdr=[Sample(*r) for r in tables[b"shdr"]])


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def presets(data: bytes) -> list[tuple[int, int, str]]:
    """(bank, program, name) of every preset, sorted."""
    sf = parse(data)
    return sorted((p[2], p[1], _name(p[0])) for p in sf.phdr[:-1])


def _zones(bags: list, first: int, last: int):
    """(gen range, mod range) of bags first..last-1."""
    for b in range(first, last):
        yield (bags[b][0], bags[b + 1][0]), (bags[b][1], bags[b + 1][1])


def subset(data: bytes, keep, rebank=None) -> bytes:
    """The soundfont with only the presets whose (bank, program) is in keep,
    and only the instruments and samples those use. Unknown pairs in keep
    are ignored; nothing kept is an error. rebank maps (bank, program) of
    a kept preset to the pair it is stored under (a drum kit sold as a
    melodic preset becomes bank 128, where MIDI channel 10 looks)."""
    sf = parse(data)
    keep = set(keep)
    rebank = rebank or {}
    kept_presets = [i for i, p in enumerate(sf.phdr[:-1])
                    if (p[2], p[1]) in keep]
    if not kept_presets:
        raise SoundFontError("none of the requested presets is in the file")
    inst_map, sample_map = {}, {}

    def use_instrument(i):
        if i >= len(sf.inst) - 1:
            raise SoundFontError(f"preset zone names instrument {i} of "
                                 f"{len(sf.inst) - 1}")
        inst_map.setdefault(i, len(inst_map))

    def use_sample(s):
        while s not in sample_map:
            if s >= len(sf.shdr) - 1:
                raise SoundFontError(f"instrument zone names sample {s} of "
                                     f"{len(sf.shdr) - 1}")
            sample_map[s] = len(sample_map)
            sample = sf.shdr[s]
            # a stereo pair travels together
            s = sample.link if sample.kind & 0x6 and not sample.kind & \
                SAMPLE_ROM else s

    for p in kept_presets:
        for (g0, g1), _ in _zones(sf.pbag, sf.phdr[p][3], sf.phdr[p + 1][3]):
            for op, amount in sf.pgen[g0:g1]:
                if op == GEN_INSTRUMENT:
                    use_instrument(amount)
    for i in sorted(inst_map, key=inst_map.get):
        for (g0, g1), _ in _zones(sf.ibag, sf.inst[i][1], sf.inst[i + 1][1]):
            for op, amount in sf.igen[g0:g1]:
                if op == GEN_SAMPLE_ID:
                    use_sample(amount)

    out = SoundFont(info=sf.info, smpl=b"", phdr=[], pbag=[], pmod=[],
                    pgen=[], inst=[], ibag=[], imod=[], igen=[], shdr=[])

    def copy_zones(bags, gens, mods, first, last, out_bags, out_gens,
                   out_mods, remap_op, remap):
        for (g0, g1), (m0, m1) in _zones(bags, first, last):
            out_bags.append((len(out_gens), len(out_mods)))
            out_mods.extend(mods[m0:m1])
            out_gens.extend((op, remap[amount] if op == remap_op else amount)
                            for op, amount in gens[g0:g1])

    for p in kept_presets:
        name, program, bank, bag, library, genre, morph = sf.phdr[p]
        bank, program = rebank.get((bank, program), (bank, program))
        out.phdr.append((name, program, bank, len(out.pbag), library, genre,
                         morph))
        copy_zones(sf.pbag, sf.pgen, sf.pmod, bag, sf.phdr[p + 1][3],
                   out.pbag, out.pgen, out.pmod, GEN_INSTRUMENT, inst_map)
    for i in sorted(inst_map, key=inst_map.get):
        out.inst.append((sf.inst[i][0], len(out.ibag)))
        copy_zones(sf.ibag, sf.igen, sf.imod, sf.inst[i][1],
                   sf.inst[i + 1][1], out.ibag, out.igen, out.imod,
                   GEN_SAMPLE_ID, sample_map)

    smpl = bytearray()
    for s in sorted(sample_map, key=sample_map.get):
        old = sf.shdr[s]
        new = Sample(**old.__dict__)
        new.link = sample_map.get(old.link, 0) if old.kind & 0x6 else 0
        if old.kind & SAMPLE_VORBIS:
            # byte offsets of the Ogg stream; loops count from its start
            new.start = len(smpl)
            smpl += sf.smpl[old.start:old.end]
            new.end = len(smpl)
        else:
            points = sf.smpl[2 * old.start:2 * old.end]
            new.start = len(smpl) // 2
            shift = new.start - old.start
            smpl += points + bytes(2 * SF2_GUARD_POINTS)
            new.end = new.start + len(points) // 2
            new.loop_start += shift
            new.loop_end += shift
        out.shdr.append(new)
    out.smpl = bytes(smpl)
    return write(out, terminals=(sf.phdr[-1], sf.inst[-1], sf.shdr[-1]))


def _riff(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def _list(kind: bytes, chunks: list) -> bytes:
    return _riff(b"LIST", kind + b"".join(chunks))


def write(sf: SoundFont, terminals=None) -> bytes:
    """The file of sf, whose tables hold no terminal records: they are
    added here (from terminals, else made up)."""
    if terminals is None:
        terminals = ((b"EOP", 0, 0, 0, 0, 0, 0), (b"EOI", 0),
                     Sample(b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0))
    eop, eoi, eos = terminals
    phdr = sf.phdr + [(eop[0], eop[1], eop[2], len(sf.pbag)) + eop[4:]]
    inst = sf.inst + [(eoi[0], len(sf.ibag))]
    pbag = sf.pbag + [(len(sf.pgen), len(sf.pmod))]
    ibag = sf.ibag + [(len(sf.igen), len(sf.imod))]
    zero_mod = (0, 0, 0, 0, 0)
    hydra = [
        _riff(b"phdr", b"".join(_PHDR.pack(*r) for r in phdr)),
        _riff(b"pbag", b"".join(_BAG.pack(*r) for r in pbag)),
        _riff(b"pmod", b"".join(_MOD.pack(*r) for r in sf.pmod + [zero_mod])),
        _riff(b"pgen", b"".join(_GEN.pack(*r) for r in sf.pgen + [(0, 0)])),
        _riff(b"inst", b"".join(_INST.pack(*r) for r in inst)),
        _riff(b"ibag", b"".join(_BAG.pack(*r) for r in ibag)),
        _riff(b"imod", b"".join(_MOD.pack(*r) for r in sf.imod + [zero_mod])),
        _riff(b"igen", b"".join(_GEN.pack(*r) for r in sf.igen + [(0, 0)])),
        _riff(b"shdr", b"".join(_SHDR.pack(*s.__dict__.values())
                                for s in sf.shdr + [eos])),
    ]
    body = b"sfbk" + _list(b"INFO", [_riff(c, b) for c, b in sf.info]) + \
        _list(b"sdta", [_riff(b"smpl", sf.smpl)]) + _list(b"pdta", hydra)
    return b"RIFF" + struct.pack("<I", len(body)) + body
