"""Silent AAC-LC frames in ADTS framing, built bit by bit (ISO/IEC 14496-3 4.4.2, 13818-7 6.2).

The HLS splice (``rejoin.py``) fills the hole between the end of an old transcode's audio and the
start of a new one's with these frames, so a decoder sees audio without a gap while the new
audio keeps its own timestamps (A/V sync). A silent raw data block holds, per channel element, an
``individual_channel_stream`` with ``max_sfb`` 0: no scale factor bands, so no spectral data, and
the decoder outputs zeros. Only AAC-LC with a channel configuration from 1 to 7 is built; any other
stream (a program config element in band, Main/SSR/LTP profiles) gets None and is left as it was.
"""

from __future__ import annotations

from typing import Final

from proxy.media.packets import Buffer

__all__ = ["silent_frame"]

#: ADTS ``profile`` of AAC-LC (audio object type 2, minus one)
_PROFILE_LC: Final = 1
#: syntactic element ids (14496-3 table 4.85)
_SCE: Final = 0
_CPE: Final = 1
_LFE: Final = 3
_END: Final = 7
#: the elements of a raw data block per channel configuration (14496-3 table 1.19)
_ELEMENTS: Final[dict[int, tuple[int, ...]]] = {
    1: (_SCE,),
    2: (_CPE,),
    3: (_SCE, _CPE),
    4: (_SCE, _CPE, _SCE),
    5: (_SCE, _CPE, _CPE),
    6: (_SCE, _CPE, _CPE, _LFE),
    7: (_SCE, _CPE, _CPE, _CPE, _LFE),
}
#: any value: with no bands coded the gain scales nothing
_GLOBAL_GAIN: Final = 100
_ADTS_HEADER: Final = 7


class _Bits:
    """MSB-first bit writer."""

    __slots__ = ("_count", "_value")

    def __init__(self) -> None:
        self._value = 0
        self._count = 0

    def put(self, value: int, width: int) -> None:
        if value < 0 or value >> width:
            raise ValueError(f"{value} does not fit in {width} bits")
        self._value = (self._value << width) | value
        self._count += width

    def to_bytes(self) -> bytes:
        """The bits, zero-padded to a whole byte (``byte_alignment()``)."""
        pad = -self._count % 8
        return (self._value << pad).to_bytes((self._count + pad) // 8, "big")


def _silent_channel_stream(bits: _Bits) -> None:
    """``individual_channel_stream(common_window=0)`` of a long window with no bands."""
    bits.put(_GLOBAL_GAIN, 8)
    # ics_info: reserved bit, ONLY_LONG_SEQUENCE, sine window, max_sfb 0, no prediction
    bits.put(0, 1)
    bits.put(0, 2)
    bits.put(0, 1)
    bits.put(0, 6)
    bits.put(0, 1)
    # section_data and scale_factor_data are empty with max_sfb 0; no pulse, TNS, gain control
    bits.put(0, 1)
    bits.put(0, 1)
    bits.put(0, 1)


def _raw_block(elements: tuple[int, ...]) -> bytes:
    bits = _Bits()
    tags: dict[int, int] = {}
    for element in elements:
        bits.put(element, 3)
        # element_instance_tag: each element of a kind numbered from 0
        bits.put(tags.get(element, 0), 4)
        tags[element] = tags.get(element, 0) + 1
        if element == _CPE:
            bits.put(0, 1)  # common_window 0: two channel streams, each with its own ics_info
            _silent_channel_stream(bits)
        _silent_channel_stream(bits)
    bits.put(_END, 3)
    return bits.to_bytes()


def silent_frame(header: Buffer, offset: int = 0) -> bytes | None:
    """One silent ADTS frame (one raw data block, 1024 samples) with the stream configuration of
    the ADTS header at ``offset`` of ``header``; None when that stream is not AAC-LC with a fixed
    channel configuration."""
    if len(header) < offset + _ADTS_HEADER:
        return None
    b1, b2, b3 = header[offset + 1], header[offset + 2], header[offset + 3]
    profile, rate_index = b2 >> 6, (b2 >> 2) & 0x0F
    channels = ((b2 & 0x01) << 2) | (b3 >> 6)
    elements = _ELEMENTS.get(channels)
    if profile != _PROFILE_LC or elements is None or rate_index > 12:
        return None
    raw = _raw_block(elements)
    length = _ADTS_HEADER + len(raw)
    bits = _Bits()
    bits.put(0xFFF, 12)
    bits.put((b1 >> 3) & 0x01, 1)  # MPEG-4 or MPEG-2, as the stream says
    bits.put(0, 2)  # layer
    bits.put(1, 1)  # protection_absent: no CRC
    bits.put(profile, 2)
    bits.put(rate_index, 4)
    bits.put(0, 1)  # private bit
    bits.put(channels, 3)
    bits.put(0, 4)  # original/copy, home, copyright id bit and start
    bits.put(length, 13)
    bits.put(0x7FF, 11)  # buffer fullness: variable bit rate
    bits.put(0, 2)  # one raw data block
    return bits.to_bytes() + raw
