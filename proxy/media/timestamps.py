"""MPEG-TS timestamp and continuity-counter rewriting: PES PTS/DTS, PCR, continuity counters.

The sample library loops short recordings into an endless stream: each repetition's timestamps are
shifted on and its continuity counters renumbered so that players see one continuous stream. The
fields are located once per sample (:func:`timestamp_fields`) and then shifted in many copies.

Reference: ISO/IEC 13818-1 (PES header, adaptation field, continuity_counter).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from proxy.media.packets import NULL_PID, PACKET_SIZE, Buffer, payload_offset, whole_size

__all__ = [
    "CLOCK_HZ",
    "FIELD_PCR",
    "FIELD_PES_TIMESTAMP",
    "TIMESTAMP_MODULUS",
    "ContinuityRewriter",
    "TimestampField",
    "add_continuity",
    "pes_timestamps",
    "read_pcr",
    "read_pes_timestamp",
    "shift_timestamps",
    "ticks_between",
    "timestamp_fields",
    "write_pcr",
    "write_pes_timestamp",
]

#: PTS/DTS/PCR-base tick rate
CLOCK_HZ: Final = 90_000
#: PTS, DTS and the PCR base are 33-bit counters
TIMESTAMP_MODULUS: Final = 1 << 33
_PCR_MODULUS: Final = TIMESTAMP_MODULUS * 300

# PES stream_ids without the optional PES header (program_stream_map, padding, private_2, ECM, EMM,
# directory, DSMCC, H.222.1 type E): they never carry PTS/DTS.
_NO_PES_HEADER: Final = frozenset((0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF))

FIELD_PES_TIMESTAMP: Final = 0
FIELD_PCR: Final = 1


# --------------------------------------------------------------------------------------------- timestamps


def ticks_between(start: int, end: int) -> int:
    """``end - start`` in 90 kHz ticks across the 33-bit wrap, as a signed difference."""
    delta = (end - start) % TIMESTAMP_MODULUS
    return delta - TIMESTAMP_MODULUS if delta > TIMESTAMP_MODULUS // 2 else delta


def read_pes_timestamp(data: Buffer, offset: int) -> int:
    """The 33-bit PTS or DTS encoded in the 5 bytes at ``offset``."""
    return (
        ((data[offset] & 0x0E) << 29)
        | (data[offset + 1] << 22)
        | ((data[offset + 2] & 0xFE) << 14)
        | (data[offset + 3] << 7)
        | (data[offset + 4] >> 1)
    )


def write_pes_timestamp(buf: bytearray, offset: int, value: int) -> None:
    """Overwrite the PTS/DTS at ``offset``, keeping its 4-bit prefix ('0010', '0011' or '0001')."""
    value %= TIMESTAMP_MODULUS
    buf[offset] = (buf[offset] & 0xF0) | ((value >> 29) & 0x0E) | 1
    buf[offset + 1] = (value >> 22) & 0xFF
    buf[offset + 2] = ((value >> 14) & 0xFE) | 1
    buf[offset + 3] = (value >> 7) & 0xFF
    buf[offset + 4] = ((value << 1) & 0xFE) | 1


def read_pcr(data: Buffer, offset: int) -> int:
    """The PCR at ``offset`` in 27 MHz units (base * 300 + extension)."""
    base = (
        (data[offset] << 25)
        | (data[offset + 1] << 17)
        | (data[offset + 2] << 9)
        | (data[offset + 3] << 1)
        | (data[offset + 4] >> 7)
    )
    return base * 300 + (((data[offset + 4] & 1) << 8) | data[offset + 5])


def write_pcr(buf: bytearray, offset: int, value: int) -> None:
    value %= _PCR_MODULUS
    base, ext = divmod(value, 300)
    buf[offset] = (base >> 25) & 0xFF
    buf[offset + 1] = (base >> 17) & 0xFF
    buf[offset + 2] = (base >> 9) & 0xFF
    buf[offset + 3] = (base >> 1) & 0xFF
    buf[offset + 4] = ((base & 1) << 7) | 0x7E | (ext >> 8)
    buf[offset + 5] = ext & 0xFF


def pes_timestamps(data: Buffer, offset: int = 0) -> tuple[int | None, int | None]:
    """(PTS, DTS) of the PES that starts in the packet at ``offset``; (None, None) if none starts there.

    DTS is None when the PES carries only a PTS (then DTS == PTS).
    """
    b1 = data[offset + 1]
    start = payload_offset(data, offset)
    end = offset + PACKET_SIZE
    if not b1 & 0x40 or start is None or start + 14 > end:
        return None, None
    if data[start : start + 3] != b"\x00\x00\x01" or data[start + 3] in _NO_PES_HEADER:
        return None, None
    flags = data[start + 7] >> 6
    if not flags & 2:
        return None, None
    pts = read_pes_timestamp(data, start + 9)
    if flags == 3 and start + 19 <= end:
        return pts, read_pes_timestamp(data, start + 14)
    return pts, None


@dataclass(frozen=True, slots=True)
class TimestampField:
    #: absolute offset of the field in the buffer it was found in
    offset: int
    #: FIELD_PES_TIMESTAMP (PTS or DTS, 5 bytes) or FIELD_PCR (PCR or OPCR, 6 bytes)
    kind: int
    pid: int


def timestamp_fields(data: Buffer) -> list[TimestampField]:
    """Every PCR/OPCR and PES PTS/DTS in ``data``; compute once, then shift many copies cheaply."""
    size = whole_size(data)
    fields: list[TimestampField] = []
    for off in range(0, size, PACKET_SIZE):
        b1, b3 = data[off + 1], data[off + 3]
        pid = ((b1 & 0x1F) << 8) | data[off + 2]
        if pid == NULL_PID:
            continue
        start = off + 4
        if b3 & 0x20:
            af_len = data[off + 4]
            if af_len:
                flags = data[off + 5]
                pos = off + 6
                af_end = off + 5 + af_len
                if flags & 0x10 and pos + 6 <= af_end:
                    fields.append(TimestampField(pos, FIELD_PCR, pid))
                    pos += 6
                if flags & 0x08 and pos + 6 <= af_end:
                    fields.append(TimestampField(pos, FIELD_PCR, pid))
            start += 1 + af_len
        if not (b1 & 0x40 and b3 & 0x10) or start + 14 > off + PACKET_SIZE:
            continue
        if data[start] or data[start + 1] or data[start + 2] != 1 or data[start + 3] in _NO_PES_HEADER:
            continue
        pts_dts = data[start + 7] >> 6
        if pts_dts & 2:
            fields.append(TimestampField(start + 9, FIELD_PES_TIMESTAMP, pid))
            if pts_dts == 3 and start + 19 <= off + PACKET_SIZE:
                fields.append(TimestampField(start + 14, FIELD_PES_TIMESTAMP, pid))
    return fields


def shift_timestamps(buf: bytearray, ticks: int, fields: Iterable[TimestampField] | None = None) -> None:
    """Add ``ticks`` (90 kHz) to every PTS/DTS/PCR in ``buf``, wrapping at 33 bits.

    Pass ``fields`` from :func:`timestamp_fields` of an identical buffer to skip the search.
    """
    if fields is None:
        fields = timestamp_fields(buf)
    ticks %= TIMESTAMP_MODULUS
    if not ticks:
        return
    pcr_ticks = ticks * 300
    for field in fields:
        if field.kind == FIELD_PCR:
            write_pcr(buf, field.offset, read_pcr(buf, field.offset) + pcr_ticks)
        else:
            write_pes_timestamp(buf, field.offset, read_pes_timestamp(buf, field.offset) + ticks)


# --------------------------------------------------------------------------------------------- continuity


def _carries_payload(b3: int) -> bool:
    return bool(b3 & 0x10)


class ContinuityRewriter:
    """Renumbers continuity counters per PID from a running counter.

    A packet with payload gets the next counter of its PID; one without payload (adaptation field
    only) repeats the previous value, as ISO/IEC 13818-1 requires. Null packets are left alone.
    """

    __slots__ = ("_next",)

    def __init__(self, start: Mapping[int, int] | None = None) -> None:
        self._next: dict[int, int] = {pid: cc & 0x0F for pid, cc in (start or {}).items()}

    @property
    def state(self) -> dict[int, int]:
        """The counter the next payload packet of each PID will get."""
        return dict(self._next)

    def rewrite(self, buf: bytearray) -> None:
        size = whole_size(buf)
        following = self._next
        for off in range(0, size, PACKET_SIZE):
            pid = ((buf[off + 1] & 0x1F) << 8) | buf[off + 2]
            if pid == NULL_PID:
                continue
            b3 = buf[off + 3]
            nxt = following.get(pid, 0)
            if _carries_payload(b3):
                buf[off + 3] = (b3 & 0xF0) | nxt
                following[pid] = (nxt + 1) & 0x0F
            else:
                buf[off + 3] = (b3 & 0xF0) | ((nxt - 1) & 0x0F)


def add_continuity(buf: bytearray, deltas: Mapping[int, int]) -> None:
    """Add ``deltas[pid]`` (mod 16) to the continuity counter of every packet of those PIDs.

    This keeps already-continuous counters continuous: it is how a repeated loop moves on by the
    number of payload packets each PID had in the loops before it.
    """
    size = whole_size(buf)
    wanted = {pid: d & 0x0F for pid, d in deltas.items() if d & 0x0F}
    if not wanted:
        return
    for off in range(0, size, PACKET_SIZE):
        delta = wanted.get(((buf[off + 1] & 0x1F) << 8) | buf[off + 2])
        if delta:
            b3 = buf[off + 3]
            buf[off + 3] = (b3 & 0xF0) | ((b3 + delta) & 0x0F)
