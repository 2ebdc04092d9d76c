"""What ``doctor`` learns from a few seconds of one channel's live MPEG-TS.

:class:`StreamProbe` is fed the bytes as they arrive (aligned with :class:`PacketAligner`, PSI
followed with :class:`StreamAnalyzer`) and afterwards tells the codecs from the PMT, the
bitrate, the keyframe interval (from the PTS of the keyframes, not the wall clock: NextPVR
often sends a burst of buffered stream first) and so whether a remux into HLS can work.

Remux needs a video codec HLS players take as it is (H.264 or HEVC) with keyframes often
enough to cut segments at; MPEG-2 video or no keyframe in the window means NextPVR's
transcoder has to do it. Audio other than AAC still remuxes, but browsers will not play it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.media.analyzer import StreamAnalyzer
from proxy.media.packets import PACKET_SIZE, PacketAligner
from proxy.media.timestamps import pes_timestamps

__all__ = ["REMUX_AUDIO", "REMUX_VIDEO", "ProbeResult", "StreamProbe"]

REMUX_VIDEO = frozenset({"h264", "hevc"})
#: audio a browser decodes from a remuxed stream
REMUX_AUDIO = frozenset({"aac", "aac-latm"})
#: longest keyframe interval a remux can cut segments at
MAX_KEYFRAME_INTERVAL = 10.0
_PTS_HZ = 90_000
_PTS_WRAP = 1 << 33
#: keyframe times kept (a 5 s read at one keyframe per frame would be 250)
_MAX_KEYFRAMES = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    bytes_read: int
    seconds: float
    video_codec: str | None
    audio_codecs: tuple[str, ...]
    bitrate: int | None
    keyframes: int
    keyframe_interval: float | None
    remux_possible: bool
    remux_note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes_read": self.bytes_read, "seconds": round(self.seconds, 2), "video_codec": self.video_codec,
            "audio_codecs": list(self.audio_codecs), "bitrate": self.bitrate, "keyframes": self.keyframes,
            "keyframe_interval": None if self.keyframe_interval is None else round(self.keyframe_interval, 2),
            "remux_possible": self.remux_possible, "remux_note": self.remux_note,
        }


class StreamProbe:
    def __init__(self) -> None:
        self._aligner = PacketAligner()
        self._analyzer = StreamAnalyzer()
        self._bytes = 0
        self._keyframe_pts: list[int] = []
        self._first_pts: int | None = None
        self._last_pts: int | None = None

    def feed(self, chunk: bytes) -> None:
        self._bytes += len(chunk)
        packets = self._aligner.feed(chunk)
        if not packets:
            return
        for offset in self._analyzer.scan(packets):
            pts, dts = pes_timestamps(packets, offset)
            when = dts if dts is not None else pts
            if when is not None and len(self._keyframe_pts) < _MAX_KEYFRAMES:
                self._keyframe_pts.append(when)
        self._track_video_clock(packets)

    def _track_video_clock(self, packets: bytes) -> None:
        video = self._analyzer.video_pid
        if video is None:
            return
        for offset in range(0, len(packets) - PACKET_SIZE + 1, PACKET_SIZE):
            if not packets[offset + 1] & 0x40:
                continue
            if ((packets[offset + 1] & 0x1F) << 8 | packets[offset + 2]) != video:
                continue
            pts, dts = pes_timestamps(packets, offset)
            when = dts if dts is not None else pts
            if when is None:
                continue
            if self._first_pts is None:
                self._first_pts = when
            self._last_pts = when

    def result(self, wall_seconds: float) -> ProbeResult:
        program = self._analyzer.program
        video = program.video if program else None
        audio = tuple(s.codec or f"stream type {s.stream_type:#04x}" for s in program.audio) if program else ()
        media_seconds = None
        if self._first_pts is not None and self._last_pts is not None:
            media_seconds = ((self._last_pts - self._first_pts) % _PTS_WRAP) / _PTS_HZ
        span = media_seconds if media_seconds and media_seconds > 0.5 else wall_seconds
        bitrate = int(self._bytes * 8 / span) if span > 0 and self._bytes else None
        interval = None
        if len(self._keyframe_pts) >= 2:
            gaps = sorted(((b - a) % _PTS_WRAP) / _PTS_HZ
                          for a, b in zip(self._keyframe_pts, self._keyframe_pts[1:], strict=False))
            interval = gaps[len(gaps) // 2]
        possible, note = _remux(video.codec if video else None, audio, len(self._keyframe_pts), interval,
                                program is not None)
        return ProbeResult(bytes_read=self._bytes, seconds=wall_seconds, video_codec=video.codec if video else None,
                           audio_codecs=audio, bitrate=bitrate, keyframes=len(self._keyframe_pts),
                           keyframe_interval=interval, remux_possible=possible, remux_note=note)


def _remux(video: str | None, audio: tuple[str, ...], keyframes: int, interval: float | None,
           have_pmt: bool) -> tuple[bool, str]:
    if not have_pmt:
        return False, "no PAT/PMT in the stream: it is not a usable MPEG-TS"
    if video is None:
        return False, "no video stream (radio?): remux HLS is for TV channels"
    if video not in REMUX_VIDEO:
        return False, f"{video} video: HLS players need H.264 or HEVC, so NextPVR's transcoder must convert it"
    if keyframes == 0:
        return False, "no keyframe in the sample: segments could not be cut"
    if interval is not None and interval > MAX_KEYFRAME_INTERVAL:
        return False, f"keyframes only every {interval:.1f} s: segments would be too long"
    odd = [a for a in audio if a not in REMUX_AUDIO]
    if odd:
        return True, f"remux works; browsers will not decode the {', '.join(odd)} audio (VLC, Kodi will)"
    return True, "remux works"
