"""MPEG-TS packets: constants, header parsing and the aligner that cuts a byte stream into packets.

Everything in :mod:`proxy.media` works on whole 188-byte packets held in ``bytes``/``bytearray``/
``memoryview``; this module is where a chunked upstream byte stream becomes such packets and where a
packet's header is read. Per-packet work is avoided where a strided slice can do it in C
(``data[1::188]`` is the second header byte of every packet), because the live-TS fan-out runs these
functions on every chunk of every channel.

Reference: ISO/IEC 13818-1 (transport stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "NULL_PID",
    "PACKET_SIZE",
    "PAT_PID",
    "SYNC",
    "Buffer",
    "PacketAligner",
    "PacketHeader",
    "packet_pid",
    "parse_header",
    "payload_offset",
    "whole_size",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

PACKET_SIZE: Final = 188
SYNC: Final = 0x47
PAT_PID: Final = 0x0000
NULL_PID: Final = 0x1FFF

_SYNC_BYTE: Final = bytes((SYNC,))


# --------------------------------------------------------------------------------------------- headers


@dataclass(frozen=True, slots=True)
class PacketHeader:
    pid: int
    payload_unit_start: bool
    transport_error: bool
    scrambled: bool
    has_adaptation: bool
    has_payload: bool
    continuity_counter: int
    discontinuity: bool
    random_access: bool
    has_pcr: bool
    #: offset of the payload inside the packet (188 when there is none)
    payload_offset: int


def parse_header(data: Buffer, offset: int = 0) -> PacketHeader:
    """Decode the 4-byte header and the adaptation-field flags of the packet at ``offset``."""
    if len(data) - offset < PACKET_SIZE:
        raise ValueError("short MPEG-TS packet")
    if data[offset] != SYNC:
        raise ValueError("MPEG-TS packet without sync byte")
    b1, b3 = data[offset + 1], data[offset + 3]
    afc = (b3 >> 4) & 3
    discontinuity = random_access = has_pcr = False
    start = 4
    if afc & 2:
        af_len = data[offset + 4]
        start = 5 + af_len
        if af_len:
            flags = data[offset + 5]
            discontinuity = bool(flags & 0x80)
            random_access = bool(flags & 0x40)
            has_pcr = bool(flags & 0x10)
    has_payload = bool(afc & 1) and start < PACKET_SIZE
    return PacketHeader(
        pid=((b1 & 0x1F) << 8) | data[offset + 2],
        payload_unit_start=bool(b1 & 0x40),
        transport_error=bool(b1 & 0x80),
        scrambled=bool(b3 & 0xC0),
        has_adaptation=bool(afc & 2),
        has_payload=has_payload,
        continuity_counter=b3 & 0x0F,
        discontinuity=discontinuity,
        random_access=random_access,
        has_pcr=has_pcr,
        payload_offset=start if has_payload else PACKET_SIZE,
    )


def packet_pid(data: Buffer, offset: int = 0) -> int:
    return ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]


def payload_offset(data: Buffer, offset: int = 0) -> int | None:
    """Absolute offset of the payload of the packet at ``offset``, or None when it carries none."""
    afc = (data[offset + 3] >> 4) & 3
    if not afc & 1:
        return None
    start = offset + 4
    if afc & 2:
        start += 1 + data[offset + 4]
    return start if start < offset + PACKET_SIZE else None


def whole_size(data: Buffer) -> int:
    """``len(data)``, which must be a whole number of packets (ValueError otherwise)."""
    if len(data) % PACKET_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of {PACKET_SIZE}-byte packets")
    return len(data)


# --------------------------------------------------------------------------------------------- aligner


class PacketAligner:
    """Cuts an arbitrarily chunked byte stream into whole, sync-checked 188-byte packets.

    A packet is passed on once the sync byte of the packet after it has been seen, so a packet whose
    end was lost (the next sync byte is missing) is dropped rather than forwarded corrupted, and the
    output does not depend on where the chunks were split. In sync, the held remainder is at most
    one packet (the last whole packet, waiting for its successor's sync byte) or less than one
    packet (a partial one); :meth:`flush` releases a held whole packet at the end of a stream.

    After the sync byte is lost, bytes are dropped until an offset where ``confirm`` sync bytes
    follow each other 188 bytes apart; while such a candidate waits for more data the aligner holds
    less than ``confirm`` packets' worth of bytes.
    """

    __slots__ = ("_confirm", "_locked", "_pending", "dropped_bytes", "resyncs")

    def __init__(self, *, confirm: int = 3) -> None:
        if confirm < 1:
            raise ValueError("confirm must be >= 1")
        self._confirm = confirm
        self._pending = b""
        self._locked = False
        #: bytes thrown away: garbage while hunting for sync, and packets whose successor was lost
        self.dropped_bytes = 0
        #: times the stream lost sync after having had it
        self.resyncs = 0

    @property
    def max_pending(self) -> int:
        """Upper bound on :attr:`pending`."""
        return self._confirm * PACKET_SIZE

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def locked(self) -> bool:
        return self._locked

    def flush(self) -> bytes:
        """End of stream: return the last whole packet if one is held, and forget everything else."""
        held = self._pending
        self._pending = b""
        was_locked, self._locked = self._locked, False
        if was_locked and len(held) == PACKET_SIZE:
            return held
        self.dropped_bytes += len(held)
        return b""

    def feed(self, data: Buffer) -> bytes:
        buf = self._pending + data if self._pending else bytes(data)
        self._pending = b""
        out: list[bytes] = []
        pos = 0
        search = 0
        size = len(buf)
        while pos < size:
            if not self._locked:
                found = self._find_sync(buf, search)
                if found < 0:
                    # Keep only a tail that may still turn out to be the start of an aligned run.
                    keep = self._tail_candidate(buf, search)
                    self.dropped_bytes += keep - pos
                    self._pending = buf[keep:]
                    break
                self.dropped_bytes += found - pos
                pos = found
                self._locked = True
            syncs = buf[pos:size:PACKET_SIZE]
            bad = _first_mismatch(syncs)
            if bad < 0:
                # Every packet whose successor's sync byte is visible is confirmed.
                confirmed = pos + (len(syncs) - 1) * PACKET_SIZE
                if confirmed > pos:
                    out.append(buf[pos:confirmed])
                self._pending = buf[confirmed:]
                break
            # Packet bad-1 did not end where the next one should start: drop it and hunt from there.
            suspect = pos + max(bad - 1, 0) * PACKET_SIZE
            if suspect > pos:
                out.append(buf[pos:suspect])
            self._locked = False
            self.resyncs += 1
            pos = suspect
            search = suspect + 1
        return b"".join(out)

    def _find_sync(self, buf: bytes, pos: int) -> int:
        """First offset >= pos that starts ``confirm`` sync bytes 188 apart, or -1 if not (yet) seen."""
        confirm = self._confirm
        span = (confirm - 1) * PACKET_SIZE
        while True:
            cand = buf.find(_SYNC_BYTE, pos)
            if cand < 0 or cand + span >= len(buf):
                return -1
            if buf[cand : cand + span + 1 : PACKET_SIZE] == _SYNC_BYTE * confirm:
                return cand
            pos = cand + 1

    def _tail_candidate(self, buf: bytes, pos: int) -> int:
        """Start of the unconfirmed tail worth keeping: the first sync byte whose run reaches the end."""
        start = max(pos, len(buf) - self.max_pending + 1)
        while True:
            cand = buf.find(_SYNC_BYTE, start)
            if cand < 0:
                return len(buf)
            run = buf[cand::PACKET_SIZE]
            if run == _SYNC_BYTE * len(run):
                return cand
            start = cand + 1


def _first_mismatch(syncs: bytes) -> int:
    """Index of the first byte in ``syncs`` that is not the sync byte, or -1."""
    stripped = syncs.lstrip(_SYNC_BYTE)
    return -1 if not stripped else len(syncs) - len(stripped)
