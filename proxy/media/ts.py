"""MPEG-TS packet helpers for hot paths: alignment, PSI/keyframe discovery, timestamp and CC rewriting.

Everything works on whole 188-byte packets held in ``bytes``/``bytearray``/``memoryview``. Per-packet
work is avoided where a strided slice can do it in C (``data[1::188]`` is the second header byte of
every packet), because the live-TS fan-out runs these functions on every chunk of every channel.

References: ISO/IEC 13818-1 (transport stream, PES, PSI), ITU-T H.264 / H.265 NAL unit types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "AUDIO_STREAM_TYPES",
    "CLOCK_HZ",
    "FIELD_PCR",
    "FIELD_PES_TIMESTAMP",
    "NULL_PID",
    "PACKET_SIZE",
    "PAT_PID",
    "SYNC",
    "TIMESTAMP_MODULUS",
    "VIDEO_STREAM_TYPES",
    "ContinuityRewriter",
    "ElementaryStream",
    "PacketAligner",
    "PacketHeader",
    "ProgramMap",
    "StreamAnalyzer",
    "TimestampField",
    "add_continuity",
    "crc32_mpeg",
    "packet_pid",
    "parse_header",
    "parse_pat",
    "parse_pmt",
    "payload_offset",
    "pes_timestamps",
    "read_pcr",
    "read_pes_timestamp",
    "shift_timestamps",
    "timestamp_fields",
    "write_pcr",
    "write_pes_timestamp",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

PACKET_SIZE: Final = 188
SYNC: Final = 0x47
PAT_PID: Final = 0x0000
NULL_PID: Final = 0x1FFF
#: PTS/DTS/PCR-base tick rate
CLOCK_HZ: Final = 90_000
#: PTS, DTS and the PCR base are 33-bit counters
TIMESTAMP_MODULUS: Final = 1 << 33
_PCR_MODULUS: Final = TIMESTAMP_MODULUS * 300

#: stream_type -> codec for the video elementary streams we can find keyframes in
VIDEO_STREAM_TYPES: Final[Mapping[int, str]] = {0x1B: "h264", 0x24: "hevc", 0x02: "mpeg2", 0x01: "mpeg1"}
AUDIO_STREAM_TYPES: Final[Mapping[int, str]] = {
    0x03: "mp1",
    0x04: "mp2",
    0x0F: "aac",
    0x11: "aac-latm",
    0x81: "ac3",
    0x87: "eac3",
}
# DVB carries AC-3/E-AC-3/AAC as stream_type 0x06 (private PES) plus a descriptor naming the codec.
_DVB_AUDIO_DESCRIPTORS: Final[Mapping[int, str]] = {0x6A: "ac3", 0x7A: "eac3", 0x7C: "aac", 0x7F: "ac4"}

_SYNC_BYTE: Final = bytes((SYNC,))
# Second header byte -> 1 when the packet starts a payload unit (PUSI) and has no transport error.
_PUSI_NO_ERROR: Final = bytes(1 if (b & 0xC0) == 0x40 else 0 for b in range(256))
# PES stream_ids without the optional PES header (program_stream_map, padding, private_2, ECM, EMM,
# directory, DSMCC, H.222.1 type E): they never carry PTS/DTS.
_NO_PES_HEADER: Final = frozenset((0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF))

FIELD_PES_TIMESTAMP: Final = 0
FIELD_PCR: Final = 1


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


def _whole(data: Buffer) -> int:
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


# --------------------------------------------------------------------------------------------- PSI


def crc32_mpeg(data: Buffer) -> int:
    """CRC-32/MPEG-2 (poly 0x04C11DB7, no reflection); a section including its CRC gives 0."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


@dataclass(frozen=True, slots=True)
class ElementaryStream:
    pid: int
    stream_type: int
    #: "video", "audio" or "other"
    kind: str
    #: codec name from VIDEO_STREAM_TYPES / AUDIO_STREAM_TYPES, or "" when unknown
    codec: str


@dataclass(frozen=True, slots=True)
class ProgramMap:
    program_number: int
    pcr_pid: int
    streams: tuple[ElementaryStream, ...]

    @property
    def video(self) -> ElementaryStream | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> tuple[ElementaryStream, ...]:
        return tuple(s for s in self.streams if s.kind == "audio")


def _check_section(section: Buffer, table_id: int) -> int:
    """Validate a long-form PSI section; returns its end (section_length + 3)."""
    if len(section) < 12 or section[0] != table_id:
        raise ValueError(f"not a table_id {table_id:#04x} section")
    end = 3 + (((section[1] & 0x0F) << 8) | section[2])
    if end > len(section) or end < 12:
        raise ValueError("truncated PSI section")
    if crc32_mpeg(section[:end]) != 0:
        raise ValueError("PSI section CRC mismatch")
    return end


def parse_pat(section: Buffer) -> dict[int, int]:
    """program_number -> PMT PID (program 0, the NIT, is left out)."""
    end = _check_section(section, 0x00)
    programs: dict[int, int] = {}
    for pos in range(8, end - 4, 4):
        number = (section[pos] << 8) | section[pos + 1]
        if number:
            programs[number] = ((section[pos + 2] & 0x1F) << 8) | section[pos + 3]
    return programs


def parse_pmt(section: Buffer) -> ProgramMap:
    end = _check_section(section, 0x02) - 4
    program_number = (section[3] << 8) | section[4]
    pcr_pid = ((section[8] & 0x1F) << 8) | section[9]
    pos = 12 + (((section[10] & 0x0F) << 8) | section[11])
    streams: list[ElementaryStream] = []
    while pos + 5 <= end:
        stream_type = section[pos]
        pid = ((section[pos + 1] & 0x1F) << 8) | section[pos + 2]
        info_len = ((section[pos + 3] & 0x0F) << 8) | section[pos + 4]
        descriptors = bytes(section[pos + 5 : min(pos + 5 + info_len, end)])
        pos += 5 + info_len
        if stream_type in VIDEO_STREAM_TYPES:
            streams.append(ElementaryStream(pid, stream_type, "video", VIDEO_STREAM_TYPES[stream_type]))
        elif stream_type in AUDIO_STREAM_TYPES:
            streams.append(ElementaryStream(pid, stream_type, "audio", AUDIO_STREAM_TYPES[stream_type]))
        elif stream_type == 0x06 and (codec := _dvb_audio_codec(descriptors)):
            streams.append(ElementaryStream(pid, stream_type, "audio", codec))
        else:
            streams.append(ElementaryStream(pid, stream_type, "other", ""))
    return ProgramMap(program_number, pcr_pid, tuple(streams))


def _dvb_audio_codec(descriptors: bytes) -> str:
    pos = 0
    while pos + 2 <= len(descriptors):
        tag, length = descriptors[pos], descriptors[pos + 1]
        if tag in _DVB_AUDIO_DESCRIPTORS:
            return _DVB_AUDIO_DESCRIPTORS[tag]
        pos += 2 + length
    return ""


class _SectionCollector:
    """Reassembles one PSI section of one PID from its packets (almost always a single packet)."""

    __slots__ = ("data", "packets")

    #: longest PAT/PMT section allowed by ISO/IEC 13818-1 (section_length <= 1021)
    LIMIT: Final = 1024

    def __init__(self) -> None:
        self.data = bytearray()
        self.packets: list[bytes] = []

    def start(self, packet: bytes, payload: bytes) -> None:
        self.packets = [packet]
        self.data = bytearray(payload)

    def add(self, packet: bytes, payload: bytes) -> None:
        self.packets.append(packet)
        self.data += payload

    @property
    def active(self) -> bool:
        return bool(self.packets)

    def complete(self) -> bool:
        if len(self.data) < 3:
            return False
        return len(self.data) >= 3 + (((self.data[1] & 0x0F) << 8) | self.data[2])

    def overflowed(self) -> bool:
        return len(self.data) > self.LIMIT + PACKET_SIZE

    def clear(self) -> None:
        self.packets = []
        self.data = bytearray()


# --------------------------------------------------------------------------------------------- analyzer


class StreamAnalyzer:
    """Follows one single-program transport stream: PAT -> PMT -> video/audio PIDs, and keyframes.

    Feed it aligned packets (for example :class:`PacketAligner` output) in stream order with
    :meth:`scan`. A viewer joining a live stream can then be given :attr:`header` (the latest PAT +
    PMT packets) followed by the stream from a returned keyframe offset.

    Keyframes are taken from the ``random_access_indicator`` of the video PID. Streams that never set
    it are judged by the first NAL units of the PES payload (H.264 IDR/SPS, HEVC IRAP/VPS/SPS,
    MPEG-2 sequence/GOP header); only the first packet of each PES is looked at.
    """

    __slots__ = (
        "_pat_collector",
        "_pat_section",
        "_pmt_collector",
        "_pmt_section",
        "_rai_seen",
        "_table",
        "_table_pids",
        "audio_pids",
        "keyframes",
        "pat",
        "pmt",
        "pmt_pid",
        "program",
        "video_codec",
        "video_pid",
    )

    def __init__(self) -> None:
        #: latest complete PAT / PMT as whole packets (usually one packet each)
        self.pat: bytes | None = None
        self.pmt: bytes | None = None
        self.pmt_pid: int | None = None
        self.program: ProgramMap | None = None
        self.video_pid: int | None = None
        self.video_codec: str = ""
        self.audio_pids: tuple[int, ...] = ()
        #: keyframes seen so far
        self.keyframes = 0
        self._rai_seen = False
        self._pat_section = b""
        self._pmt_section = b""
        self._pat_collector = _SectionCollector()
        self._pmt_collector = _SectionCollector()
        self._table_pids: tuple[int | None, ...] = ()
        self._table = b""

    @property
    def header(self) -> bytes:
        """PAT + PMT packets to put in front of a keyframe, or b"" until both have been seen."""
        if self.pat is None or self.pmt is None:
            return b""
        return self.pat + self.pmt

    def scan(self, packets: Buffer) -> list[int]:
        """Offsets (into ``packets``) of the packets that start a video keyframe access unit."""
        size = _whole(packets)
        found: list[int] = []
        if not size:
            return found
        data = packets if isinstance(packets, bytes) else bytes(packets)
        if self._pat_collector.active or self._pmt_collector.active:
            self._continue_sections(data, 0)
        flags = self._candidates(data)
        index = flags.find(1)
        while index >= 0:
            off = index * PACKET_SIZE
            pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
            if pid == self.video_pid:
                if self._is_keyframe(data, off):
                    found.append(off)
            elif pid == PAT_PID or pid == self.pmt_pid:
                self._psi_start(data, off, pid)
                if self._table_pids != (PAT_PID, self.pmt_pid, self.video_pid):
                    flags = self._candidates(data)  # new PIDs to follow from here on
            index = flags.find(1, index + 1)
        self.keyframes += len(found)
        return found

    def _candidates(self, data: bytes) -> bytes:
        """One byte per packet, 1 where a PUSI packet may belong to a PID we follow.

        Two C-speed passes instead of a Python loop per packet: "PUSI set, no transport error" from
        byte 1 AND "PID low byte is one we follow" from byte 2, combined as big integers.
        """
        starts = int.from_bytes(data[1::PACKET_SIZE].translate(_PUSI_NO_ERROR), "big")
        wanted = int.from_bytes(data[2::PACKET_SIZE].translate(self._low_byte_table()), "big")
        return (starts & wanted).to_bytes(len(data) // PACKET_SIZE, "big")

    def _low_byte_table(self) -> bytes:
        pids = (PAT_PID, self.pmt_pid, self.video_pid)
        if pids != self._table_pids:
            lows = {pid & 0xFF for pid in pids if pid is not None}
            self._table = bytes(1 if b in lows else 0 for b in range(256))
            self._table_pids = pids
        return self._table

    # -- PSI

    def _collector(self, pid: int) -> _SectionCollector | None:
        if pid == PAT_PID:
            return self._pat_collector
        return self._pmt_collector if pid == self.pmt_pid else None

    def _psi_start(self, data: bytes, off: int, pid: int) -> None:
        collector = self._collector(pid)
        start = payload_offset(data, off)
        if collector is None or start is None:
            return
        end = off + PACKET_SIZE
        packet = data[off:end]
        pointer = data[start]
        body_start = start + 1 + pointer
        if collector.active and pointer:
            # The bytes before the pointer finish the section that started in earlier packets.
            collector.add(packet, data[start + 1 : min(body_start, end)])
            self._section_done(pid, collector)
        collector.clear()
        if body_start >= end:
            return
        collector.start(packet, data[body_start:end])
        if not self._section_done(pid, collector):
            self._continue_sections(data, end)

    def _continue_sections(self, data: bytes, pos: int) -> None:
        """Append the non-PUSI packets of a section that spans packets (rare: a plain loop is fine)."""
        for off in range(pos, len(data), PACKET_SIZE):
            pid = packet_pid(data, off)
            collector = self._collector(pid)
            if collector is None or not collector.active:
                continue
            if data[off + 1] & 0x40:
                return  # a new section: the PUSI walk in scan() picks it up
            start = payload_offset(data, off)
            if start is not None:
                collector.add(data[off : off + PACKET_SIZE], data[start : off + PACKET_SIZE])
                self._section_done(pid, collector)
            if not (self._pat_collector.active or self._pmt_collector.active):
                return

    def _section_done(self, pid: int, collector: _SectionCollector) -> bool:
        if collector.overflowed():
            collector.clear()
            return True
        if not collector.complete():
            return False
        section = bytes(collector.data[: 3 + (((collector.data[1] & 0x0F) << 8) | collector.data[2])])
        packets = b"".join(collector.packets)
        collector.clear()
        if pid == PAT_PID:
            self._on_pat(section, packets)
        else:
            self._on_pmt(section, packets)
        return True

    def _on_pat(self, section: bytes, packets: bytes) -> None:
        if section == self._pat_section:
            self.pat = packets
            return
        try:
            programs = parse_pat(section)
        except ValueError:
            return
        if not programs:
            return
        self._pat_section = section
        self.pat = packets
        pmt_pid = programs[min(programs)]
        if pmt_pid != self.pmt_pid:
            self.pmt_pid = pmt_pid
            self.pmt = None
            self.program = None
            self._pmt_section = b""
            self._pmt_collector.clear()

    def _on_pmt(self, section: bytes, packets: bytes) -> None:
        if section == self._pmt_section:
            self.pmt = packets
            return
        try:
            program = parse_pmt(section)
        except ValueError:
            return
        self._pmt_section = section
        self.pmt = packets
        self.program = program
        video = program.video
        if video is None or video.pid != self.video_pid:
            self._rai_seen = False
        self.video_pid = video.pid if video else None
        self.video_codec = video.codec if video else ""
        self.audio_pids = tuple(s.pid for s in program.audio)

    # -- keyframes

    def _is_keyframe(self, data: bytes, off: int) -> bool:
        b3 = data[off + 3]
        start = off + 4
        if b3 & 0x20:
            af_len = data[off + 4]
            if af_len and data[off + 5] & 0x40:
                self._rai_seen = True
                return True
            start += 1 + af_len
        if self._rai_seen or not b3 & 0x10:
            return False
        end = off + PACKET_SIZE
        if start + 9 > end or data[start : start + 3] != b"\x00\x00\x01":
            return False
        es = start + 9 + data[start + 8]
        return es < end and _starts_keyframe(data[es:end], self.video_codec)


def _starts_keyframe(es: bytes, codec: str) -> bool:
    """Whether the start of an access unit contains a random-access NAL/start code before any slice."""
    pos = es.find(b"\x00\x00\x01")
    while 0 <= pos < len(es) - 3:
        code = es[pos + 3]
        if codec == "h264":
            nal = code & 0x1F
            if nal in (5, 7):
                return True
            if nal == 1:
                return False
        elif codec == "hevc":
            nal = (code >> 1) & 0x3F
            if 16 <= nal <= 23 or nal in (32, 33):
                return True
            if nal < 16:
                return False
        else:  # MPEG-1/2 video: sequence header or GOP header before the first picture
            if code in (0xB3, 0xB8):
                return True
            if code == 0x00:
                return False
        pos = es.find(b"\x00\x00\x01", pos + 3)
    return False


# --------------------------------------------------------------------------------------------- timestamps


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
    size = _whole(data)
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
        size = _whole(buf)
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
    size = _whole(buf)
    wanted = {pid: d & 0x0F for pid, d in deltas.items() if d & 0x0F}
    if not wanted:
        return
    for off in range(0, size, PACKET_SIZE):
        delta = wanted.get(((buf[off + 1] & 0x1F) << 8) | buf[off + 2])
        if delta:
            b3 = buf[off + 3]
            buf[off + 3] = (b3 & 0xF0) | ((b3 + delta) & 0x0F)
