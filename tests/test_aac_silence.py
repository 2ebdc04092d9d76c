"""Silent AAC-LC frames (``proxy/media/aac_silence.py``), decoded by real ffmpeg."""

from __future__ import annotations

import pytest

from proxy.media.aac_silence import silent_frame
from proxy.media.adts import adts_frames, frame_ticks
from tests.players import FFMPEG, needs_ffmpeg, run

#: ADTS sampling frequency indexes
RATES = {48000: 3, 44100: 4}
FRAMES = 12


def adts_header(*, profile: int = 1, rate: int = 48000, channels: int = 2) -> bytes:
    """The first 7 bytes of an MPEG-4 ADTS frame without CRC (its length left 0: not read)."""
    index = RATES[rate]
    return bytes((0xFF, 0xF1, (profile << 6) | (index << 2) | (channels >> 2), (channels & 0x03) << 6, 0, 0x1F, 0xFC))


@needs_ffmpeg
@pytest.mark.ffmpeg
@pytest.mark.parametrize("rate", sorted(RATES))
@pytest.mark.parametrize("channels", [1, 2, 6])
async def test_silent_frames_decode_to_zero_samples_without_an_error(rate: int, channels: int) -> None:
    frame = silent_frame(adts_header(rate=rate, channels=channels))
    assert frame is not None
    # a valid ADTS frame of one raw data block: 1024 samples at the stream's rate
    assert adts_frames(frame) == [(0, len(frame))]
    assert frame_ticks(frame, 0) == 1024 * 90_000 / rate
    assert FFMPEG is not None
    decoded = await run(FFMPEG, "-v", "error", "-f", "aac", "-i", "-", "-f", "s16le", "-acodec", "pcm_s16le", "-",
                        timeout=30, stdin=frame * FRAMES)
    assert decoded.returncode == 0 and decoded.stderr == "", decoded.stderr
    # every sample of every channel, and nothing but zeros
    assert decoded.stdout == "\x00" * (2 * channels * 1024 * FRAMES)
    probe = await run(FFMPEG, "-hide_banner", "-f", "aac", "-i", "-", timeout=30, stdin=frame * FRAMES)
    assert f"{rate} Hz" in probe.stderr and "aac (LC)" in probe.stderr, probe.stderr


def test_frames_for_other_streams_are_not_made() -> None:
    # AAC Main (profile 0), SSR (2), LTP (3): other tools than these frames speak
    for profile in (0, 2, 3):
        assert silent_frame(adts_header(profile=profile)) is None
    # channel configuration 0: the channels are in a program config element of the stream
    assert silent_frame(adts_header(channels=0)) is None
    assert silent_frame(adts_header()[:5]) is None
