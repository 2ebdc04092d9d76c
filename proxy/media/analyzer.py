"""Following a live MPEG-TS: PAT -> PMT -> video/audio PIDs, and where the keyframes are.

The live-TS fan-out runs :class:`StreamAnalyzer` on every aligned chunk of every channel so that a
joining viewer can start at PAT + PMT + a keyframe. It is kept apart from the PSI parsers because it
is stateful (sections spanning packets, PID changes) and tuned for that hot path: candidate packets
are found with C-speed strided slices, not a Python loop per packet.

References: ISO/IEC 13818-1 (transport stream, PES, PSI), ITU-T H.264 / H.265 NAL unit types.
"""

from __future__ import annotations

from typing import Final

from proxy.media.packets import PACKET_SIZE, PAT_PID, Buffer, packet_pid, payload_offset, whole_size
from proxy.media.psi import ProgramMap, parse_pat, parse_pmt

__all__ = ["StreamAnalyzer"]

# Second header byte -> 1 when the packet starts a payload unit (PUSI) and has no transport error.
_PUSI_NO_ERROR: Final = bytes(1 if (b & 0xC0) == 0x40 else 0 for b in range(256))


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

    Feed it aligned packets (for example :class:`~proxy.media.packets.PacketAligner` output) in stream order with
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
        size = whole_size(packets)
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
