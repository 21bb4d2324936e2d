"""A small Standard MIDI File reader and writer (python3 standard library).

Enough for rendering arrangements: format 0 and 1 files with ticks-per-beat
timing, running status, meta events (tempo, time signature, track name,
end of track), sysex (kept but not interpreted) and the channel messages.
Events carry absolute ticks, so cutting, shifting and merging tracks is
plain arithmetic; the writer turns them back into delta times.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

DEFAULT_TEMPO_US = 500000  # 120 beats per minute, the SMF default

# Data bytes that follow each channel status (high nibble).
_CHANNEL_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1,
                       0xE0: 2}
_KIND_OF_STATUS = {0x80: "off", 0x90: "on", 0xA0: "poly_pressure",
                   0xB0: "control", 0xC0: "program", 0xD0: "pressure",
                   0xE0: "pitch_bend"}
_STATUS_OF_KIND = {v: k for k, v in _KIND_OF_STATUS.items()}

META_TRACK_NAME = 0x03
META_END_OF_TRACK = 0x2F
META_TEMPO = 0x51
META_TIME_SIGNATURE = 0x58


class MidiError(ValueError):
    """A file that is not a MIDI file this reader understands."""


@dataclass
class Event:
    """One event at an absolute tick.

    kind: on, off, control, program, pitch_bend, pressure, poly_pressure
    (channel messages: channel 0..15, data a and b), meta (a = meta type,
    data = payload) or sysex (data = payload including the F0/F7 byte).
    """
    tick: int
    kind: str
    channel: int = 0
    a: int = 0
    b: int = 0
    data: bytes = b""


@dataclass
class Note:
    start: int          # ticks
    end: int            # ticks, > start
    pitch: int
    velocity: int
    channel: int = 0


@dataclass
class MidiFile:
    division: int                       # ticks per beat (quarter note)
    tracks: list = field(default_factory=list)  # list of list of Event
    format: int = 1


# ---------------------------------------------------------------- reading

def _read_vlq(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        if pos >= end:
            raise MidiError("variable-length number runs past its chunk")
        byte = buf[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos
    raise MidiError("variable-length number longer than 4 bytes")


def _read_track(buf: bytes, pos: int, end: int) -> list:
    events = []
    tick = 0
    running = None  # status byte of the last channel message
    while pos < end:
        delta, pos = _read_vlq(buf, pos, end)
        tick += delta
        if pos >= end:
            raise MidiError("event missing after its delta time")
        status = buf[pos]
        if status & 0x80:
            pos += 1
        elif running is None:
            raise MidiError(f"data byte 0x{status:02x} at tick {tick} "
                            "without a running status")
        else:
            status = running
        if status == 0xFF:
            if pos >= end:
                raise MidiError("meta event without a type")
            meta_type = buf[pos]
            length, pos = _read_vlq(buf, pos + 1, end)
            if pos + length > end:
                raise MidiError(f"meta event 0x{meta_type:02x} runs past "
                                "its track")
            data = bytes(buf[pos:pos + length])
            pos += length
            if meta_type == META_END_OF_TRACK:
                events.append(Event(tick, "meta", a=meta_type))
                break
            events.append(Event(tick, "meta", a=meta_type, data=data))
            running = None  # meta and sysex cancel running status
        elif status in (0xF0, 0xF7):
            length, pos = _read_vlq(buf, pos, end)
            if pos + length > end:
                raise MidiError("sysex runs past its track")
            events.append(Event(tick, "sysex",
                                data=bytes([status]) + buf[pos:pos + length]))
            pos += length
            running = None
        elif status >= 0xF0:
            raise MidiError(f"system message 0x{status:02x} in a file "
                            f"at tick {tick}")
        else:
            high, channel = status & 0xF0, status & 0x0F
            count = _CHANNEL_DATA_BYTES[high]
            if pos + count > end:
                raise MidiError("channel message runs past its track")
            a = buf[pos]
            b = buf[pos + 1] if count == 2 else 0
            if a & 0x80 or b & 0x80:
                raise MidiError(f"status byte inside channel message data "
                                f"at tick {tick}")
            pos += count
            running = status
            kind = _KIND_OF_STATUS[high]
            if kind == "on" and b == 0:
                kind = "off"  # note on with velocity 0 is a note off
            events.append(Event(tick, kind, channel, a, b))
    return events


def parse_midi(buf: bytes) -> MidiFile:
    """Parse the bytes of a format 0 or 1 Standard MIDI File."""
    if len(buf) < 14 or buf[:4] != b"MThd":
        raise MidiError("no MThd header")
    length, fmt, ntracks, division = struct.unpack(">IHHH", buf[4:14])
    if length < 6:
        raise MidiError(f"MThd length {length} < 6")
    if fmt not in (0, 1):
        raise MidiError(f"format {fmt} (only 0 and 1 are read)")
    if division & 0x8000 or division == 0:
        raise MidiError(f"division 0x{division:04x}: SMPTE or zero timing "
                        "is not supported")
    pos = 8 + length
    tracks = []
    while pos + 8 <= len(buf) and len(tracks) < ntracks:
        chunk_id = buf[pos:pos + 4]
        (chunk_len,) = struct.unpack(">I", buf[pos + 4:pos + 8])
        start, end = pos + 8, pos + 8 + chunk_len
        if end > len(buf):
            raise MidiError(f"chunk {chunk_id!r} runs past the file end")
        if chunk_id == b"MTrk":
            tracks.append(_read_track(buf, start, end))
        pos = end  # unknown chunks are skipped, as the standard asks
    if len(tracks) != ntracks:
        raise MidiError(f"header promises {ntracks} tracks, file holds "
                        f"{len(tracks)}")
    return MidiFile(division, tracks, fmt)


def read_midi(path: str) -> MidiFile:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return parse_midi(data)
    except MidiError as e:
        raise MidiError(f"{path}: {e}") from None


# ---------------------------------------------------------------- writing

def _vlq(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"negative delta time {value}")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


# At one tick: meta first (tempo before notes), then program and controls,
# then note offs before note ons so a repeated note is not cut short.
_ORDER = {"meta": 0, "sysex": 1, "program": 2, "control": 3,
          "pitch_bend": 4, "pressure": 4, "poly_pressure": 4, "off": 5,
          "on": 6}


def _encode_track(events: list, end_tick: int) -> bytes:
    out = bytearray()
    tick = 0
    running = None
    for ev in sorted(events, key=lambda e: (e.tick, _ORDER[e.kind])):
        if ev.kind == "meta" and ev.a == META_END_OF_TRACK:
            continue  # written once, at the end
        out += _vlq(ev.tick - tick)
        tick = ev.tick
        if ev.kind == "meta":
            out += bytes([0xFF, ev.a]) + _vlq(len(ev.data)) + ev.data
            running = None
        elif ev.kind == "sysex":
            out += ev.data[:1] + _vlq(len(ev.data) - 1) + ev.data[1:]
            running = None
        else:
            kind = ev.kind
            if kind == "off" and ev.b == 0:
                kind = "on"  # velocity 0: lets note offs share the status
            status = _STATUS_OF_KIND[kind] | (ev.channel & 0x0F)
            if status != running:  # running status: omit a repeated status
                out.append(status)
                running = status
            out.append(ev.a & 0x7F)
            if _CHANNEL_DATA_BYTES[status & 0xF0] == 2:
                out.append(ev.b & 0x7F)
    out += _vlq(max(end_tick - tick, 0)) + bytes([0xFF, META_END_OF_TRACK, 0])
    return bytes(out)


def encode_midi(midi: MidiFile, end_tick: int = 0) -> bytes:
    """Bytes of a Standard MIDI File; every track ends at end_tick or at its
    last event, whichever is later."""
    if midi.format == 0 and len(midi.tracks) != 1:
        raise ValueError("a format 0 file holds exactly one track")
    out = bytearray(b"MThd" + struct.pack(">IHHH", 6, midi.format,
                                          len(midi.tracks), midi.division))
    for events in midi.tracks:
        body = _encode_track(events, end_tick)
        out += b"MTrk" + struct.pack(">I", len(body)) + body
    return bytes(out)


def write_midi(path: str, midi: MidiFile, end_tick: int = 0) -> None:
    with open(path, "wb") as f:
        f.write(encode_midi(midi, end_tick))


# ---------------------------------------------------------------- helpers

def track_name(events: list) -> str:
    for ev in events:
        if ev.kind == "meta" and ev.a == META_TRACK_NAME:
            return ev.data.decode("latin-1").strip()
    return ""


def notes_of(events: list) -> list:
    """Pair note ons with note offs (first on, first off per channel and
    pitch). A note still open at the end of the track is dropped."""
    open_notes: dict = {}
    notes = []
    for ev in sorted(events, key=lambda e: (e.tick, _ORDER[e.kind])):
        key = (ev.channel, ev.a)
        if ev.kind == "on":
            open_notes.setdefault(key, []).append(ev)
        elif ev.kind == "off" and open_notes.get(key):
            on = open_notes[key].pop(0)
            if ev.tick > on.tick:
                notes.append(Note(on.tick, ev.tick, on.a, on.b, on.channel))
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


def note_events(notes: list, channel: int) -> list:
    events = []
    for n in notes:
        events.append(Event(n.start, "on", channel, n.pitch, n.velocity))
        events.append(Event(n.end, "off", channel, n.pitch, 0))
    return events


def tempo_event(tick: int, us_per_beat: int) -> Event:
    return Event(tick, "meta", a=META_TEMPO,
                 data=us_per_beat.to_bytes(3, "big"))


class TempoMap:
    """Ticks <-> seconds from the tempo events of all tracks."""

    def __init__(self, midi: MidiFile):
        self.division = midi.division
        changes = {}
        for events in midi.tracks:
            for ev in events:
                if ev.kind == "meta" and ev.a == META_TEMPO and \
                        len(ev.data) == 3:
                    changes[ev.tick] = int.from_bytes(ev.data, "big")
        if 0 not in changes:
            changes[0] = DEFAULT_TEMPO_US
        self.ticks = sorted(changes)
        self.tempos = [changes[t] for t in self.ticks]
        self.seconds = [0.0]
        for i in range(1, len(self.ticks)):
            self.seconds.append(self.seconds[-1] + self._span(i - 1,
                                                              self.ticks[i]))

    def _span(self, i: int, tick: int) -> float:
        return (tick - self.ticks[i]) * self.tempos[i] / 1e6 / self.division

    def _segment(self, tick: int) -> int:
        i = 0
        while i + 1 < len(self.ticks) and self.ticks[i + 1] <= tick:
            i += 1
        return i

    def seconds_at(self, tick: int) -> float:
        i = self._segment(tick)
        return self.seconds[i] + self._span(i, tick)

    def tempo_at(self, tick: int) -> int:
        return self.tempos[self._segment(tick)]

    def tick_at(self, seconds: float) -> int:
        i = 0
        while i + 1 < len(self.ticks) and self.seconds[i + 1] <= seconds:
            i += 1
        return self.ticks[i] + round((seconds - self.seconds[i]) * 1e6 *
                                     self.division / self.tempos[i])

    def events_between(self, start: int, end: int) -> list:
        """Tempo events for the window [start, end), shifted to start at 0."""
        events = [tempo_event(0, self.tempo_at(start))]
        for t, us in zip(self.ticks, self.tempos):
            if start < t < end:
                events.append(tempo_event(t - start, us))
        return events


def time_signature(midi: MidiFile) -> tuple[int, int]:
    """(numerator, denominator) of the first time signature, else 4/4."""
    for events in midi.tracks:
        for ev in events:
            if ev.kind == "meta" and ev.a == META_TIME_SIGNATURE and \
                    len(ev.data) >= 2 and ev.data[0] > 0:
                return ev.data[0], 2 ** ev.data[1]
    return 4, 4
