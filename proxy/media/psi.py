"""MPEG-TS program-specific information: CRC-32/MPEG-2, PAT and PMT parsing.

Pure functions of whole sections; :class:`~proxy.media.analyzer.StreamAnalyzer` reassembles the
sections of a live stream and hands them to these parsers to learn its PIDs and codecs.

Reference: ISO/IEC 13818-1 section 2.4.4 (PSI), ETSI EN 300 468 (DVB audio descriptors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from proxy.media.packets import Buffer

__all__ = [
    "AUDIO_STREAM_TYPES",
    "VIDEO_STREAM_TYPES",
    "ElementaryStream",
    "ProgramMap",
    "crc32_mpeg",
    "parse_pat",
    "parse_pmt",
]

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
