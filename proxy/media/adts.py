"""AAC in ADTS framing (ISO/IEC 13818-7 6.2): where its frames are and how long each plays.

The HLS splice (``rejoin.py``) trims the audio of a new transcode to the frame at which the old
one ended; every other codec is joined at PES boundaries.
"""

from __future__ import annotations

from typing import Final

from proxy.media.packets import Buffer

__all__ = ["adts_frames", "frame_ticks"]

_RATES: Final = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_HEADER: Final = 7


def _is_header(data: Buffer, offset: int) -> bool:
    return data[offset] == 0xFF and data[offset + 1] & 0xF6 == 0xF0 and ((data[offset + 2] >> 2) & 0x0F) < len(_RATES)


def adts_frames(data: Buffer, start: int = 0) -> list[tuple[int, int]] | None:
    """(offset, length) of each whole ADTS frame from ``start``, back to back; None when ``data``
    does not start with one (not AAC/ADTS, or a frame cut in two)."""
    frames: list[tuple[int, int]] = []
    pos = start
    while pos + _HEADER <= len(data):
        if not _is_header(data, pos):
            return None
        length = ((data[pos + 3] & 0x03) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        if length < _HEADER or pos + length > len(data):
            return None
        frames.append((pos, length))
        pos += length
    return frames if frames and pos == len(data) else None


def frame_ticks(data: Buffer, offset: int) -> float:
    """90 kHz ticks one ADTS frame at ``offset`` plays (1024 samples per raw data block)."""
    rate = _RATES[(data[offset + 2] >> 2) & 0x0F]
    blocks = (data[offset + 6] & 0x03) + 1
    return 1024 * blocks * 90_000 / rate
