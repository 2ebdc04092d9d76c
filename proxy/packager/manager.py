"""Channel -> its muxing session, and the per-channel ``auto`` decision (remux or transcode).

``auto`` needs the channel's PMT to decide, so the first request opens the channel's shared TS
stream and waits for it (a few hundred milliseconds: broadcasters repeat PAT/PMT often). The
answer is remembered per channel, so the next request decides at once; a channel ``auto`` sends to
the transcoder gives its tuner back at once (no linger), because the transcode needs one.

Sessions are started single-flight. A session stops when nobody watched it for three target
durations; the channel's next session continues its media sequence behind a discontinuity, so
a player that kept the playlist URL never sees the numbers go back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Final, Literal, TypeVar

from proxy.config import Config
from proxy.errors import ProxyError, ServiceUnavailable
from proxy.hls.numbering import wall_clock_sequence
from proxy.hls.tokens import TokenSigner
from proxy.metrics import Metrics
from proxy.packager.muxer import WATCH_TARGETS, Muxer
from proxy.packager.programmes import ListingSource
from proxy.packager.store import SegmentStore
from proxy.packager.timeshift import TimeshiftStore
from proxy.ts.fanout import ChannelStream, LiveTSManager

__all__ = ["BROWSER_AUDIO", "BROWSER_VIDEO", "Mode", "RemuxManager", "RemuxUnavailable"]

log = logging.getLogger("proxy.packager")

Mode = Literal["auto", "remux", "transcode"]
#: what ``auto`` remuxes: codecs browsers (MSE, Safari) decode from MPEG-TS
BROWSER_VIDEO: Final = frozenset({"h264", "hevc"})
BROWSER_AUDIO: Final = frozenset({"aac", "ac3", "eac3", "mp1", "mp2"})
#: channels whose decision / sequence continuation is remembered (oldest forgotten first)
_REMEMBERED: Final = 4096


_V = TypeVar("_V")


def _remember(table: OrderedDict[int, _V], channel_id: int, value: _V) -> None:
    table[channel_id] = value
    table.move_to_end(channel_id)
    while len(table) > _REMEMBERED:
        table.popitem(last=False)


class RemuxUnavailable(ProxyError):
    """``hls.mode: remux`` and the channel's stream cannot be packaged."""

    status = 502
    reason = "remux_unavailable"
    hint = "Ask for ?mode=transcode to have NextPVR transcode this channel."


class RemuxManager:
    def __init__(self, config: Config, ts: LiveTSManager, signer: TokenSigner, *,
                 metrics: Metrics | None = None, max_channels: int = 64,
                 timeshift: TimeshiftStore | None = None, listings: ListingSource | None = None) -> None:
        self._config = config
        self._ts = ts
        self._signer = signer
        self._metrics = metrics
        self._max_channels = max_channels
        self.store = SegmentStore(channel_bytes=config.hls.remux_channel_bytes,
                                  total_bytes=config.hls.remux_total_bytes)
        self._muxers: dict[int, Muxer] = {}
        self._streams: dict[int, ChannelStream] = {}
        self._starting: dict[int, asyncio.Task[Muxer]] = {}
        self._decisions: OrderedDict[int, Mode] = OrderedDict()
        #: channel -> (video codec, audio codec) from its PMT, for HDHomeRun's lineup.json
        self._codecs: OrderedDict[int, tuple[str, str]] = OrderedDict()
        #: channel -> (next media sequence, discontinuities so far) of its last session
        self._continuation: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._closing = False
        #: hls.timeshift > 0: segments kept on disk, and the guide's programmes for start-over marks
        self.timeshift = timeshift
        self._listings = listings

    # -- queries ----------------------------------------------------------------------------------------

    def find(self, channel_id: int) -> Muxer | None:
        return self._muxers.get(channel_id)

    def decision(self, channel_id: int) -> Mode | None:
        return self._decisions.get(channel_id)

    def codecs(self, channel_id: int) -> tuple[str, str] | None:
        """The codecs the channel's PMT named when it was last packaged (None: not seen yet)."""
        return self._codecs.get(channel_id)

    def muxers(self) -> list[Muxer]:
        return list(self._muxers.values())

    def watchers(self) -> int:
        return sum(m.watchers() for m in self._muxers.values())

    # -- getting a session ------------------------------------------------------------------------------

    async def session(self, channel_id: int, mode: Mode) -> Muxer | None:
        """The ready session of ``channel_id``; None when ``auto`` chose the transcoder."""
        if mode == "auto" and self._decisions.get(channel_id) == "transcode":
            return None
        muxer = self._muxers.get(channel_id)
        if muxer is None or self._stale(muxer):
            muxer = await self._start(channel_id)
        timeout = self._config.hls.remux_start_timeout
        try:
            async with asyncio.timeout(timeout):
                await muxer.program_known.wait()
        except TimeoutError:
            muxer.failed = muxer.failed or f"no PAT/PMT arrived within {timeout:.0f} s"
        program = muxer.program
        if program is not None:
            video = program.video.codec if program.video is not None else ""
            audio = program.audio[0].codec if program.audio else ""
            _remember(self._codecs, channel_id, (video or "", audio or ""))
        if mode == "auto":
            reason = muxer.failed or self._not_for_browsers(muxer)
            if muxer.program is not None:
                # a verdict on the codecs is remembered; a stream that sent no PMT may be fine next time
                _remember(self._decisions, channel_id, "transcode" if reason else "remux")
            if reason:
                log.info("channel %d: hls.mode auto chose the transcoder (%s)", channel_id, reason)
                if muxer.watchers() == 0:
                    self._stop(muxer, linger=False)
                return None
        try:
            async with asyncio.timeout(timeout):
                await muxer.ready.wait()
        except TimeoutError:
            muxer.failed = muxer.failed or f"no keyframe to start a segment at within {timeout:.0f} s"
        if muxer.failed is not None and not (muxer.ended and muxer.has_segments):
            failed = muxer.failed
            if muxer.watchers() == 0:
                self._stop(muxer, linger=False)
            raise RemuxUnavailable(f"This channel cannot be remuxed: {failed}.")
        if muxer.closed or not (muxer.has_segments or muxer.ended):
            raise ServiceUnavailable("this channel's stream just ended; try again")
        return muxer

    def _stale(self, muxer: Muxer) -> bool:
        """An ended session serves its final playlist for a while, then the channel starts afresh."""
        if muxer.closed:
            return True
        return muxer.ended_at is not None and time.monotonic() - muxer.ended_at > WATCH_TARGETS * muxer.target

    async def _start(self, channel_id: int) -> Muxer:
        task = self._starting.get(channel_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open(channel_id), name=f"remux-{channel_id}")
            self._starting[channel_id] = task
            task.add_done_callback(lambda _: self._starting.pop(channel_id, None))
        return await asyncio.shield(task)

    async def _open(self, channel_id: int) -> Muxer:
        if self._closing:
            raise ServiceUnavailable("the proxy is shutting down")
        old = self._muxers.get(channel_id)
        if old is not None:
            self._stop(old)
        if len(self._muxers) >= self._max_channels:
            raise ServiceUnavailable("too many remuxed channels at once")
        carried = self._continuation.get(channel_id)
        if carried is not None:
            first, discontinuities = carried
        else:
            # Numbered from the wall clock, faster than segments come (hls/numbering.py): another
            # replica that takes the channel over after this one died numbers strictly above every
            # number this one listed, so a player keeping the playlist URL skips ahead instead of
            # waiting for numbers it already had (ffmpeg) or refusing a reused one (hls.js).
            first, discontinuities = wall_clock_sequence(time.time()), 0
        muxer = Muxer(channel_id, self._config, self.store, self._signer, first_sequence=first,
                      discontinuity_sequence=discontinuities, continues=carried is not None,
                      metrics=self._metrics, on_idle=self._idle, timeshift=self.timeshift,
                      listings=self._listings)
        # registered first: attaching wakes whoever waits for the channel's state to change
        self._muxers[channel_id] = muxer
        try:
            stream = await self._ts.attach(channel_id, muxer)
        except BaseException:
            if self._muxers.get(channel_id) is muxer:
                del self._muxers[channel_id]
            muxer.close()
            raise
        self._streams[channel_id] = stream
        self._gauge()
        log.info("channel %d: packaging HLS from the live TS (session %s)", channel_id, muxer.session)
        return muxer

    # -- stopping ---------------------------------------------------------------------------------------

    def _idle(self, muxer: Muxer) -> None:
        self._stop(muxer)

    def _stop(self, muxer: Muxer, *, linger: bool = True) -> None:
        channel_id = muxer.channel_id
        if self._muxers.get(channel_id) is muxer:
            del self._muxers[channel_id]
            stream = self._streams.pop(channel_id, None)
            if stream is not None:
                stream.remove_tap(muxer, linger=linger)
        if muxer.next_sequence:
            _remember(self._continuation, channel_id, (muxer.next_sequence, muxer.discontinuities))
        muxer.close()
        self._gauge()

    def _not_for_browsers(self, muxer: Muxer) -> str | None:
        program = muxer.program
        if program is None:
            return "no PMT"
        video = program.video
        if video is not None and video.codec not in BROWSER_VIDEO:
            return f"{video.codec or 'unknown'} video, which browsers cannot decode"
        audio = [s.codec for s in program.audio]
        if video is None and not audio:
            return "no video or audio stream"
        if audio and not any(codec in BROWSER_AUDIO for codec in audio):
            return f"{audio[0] or 'unknown'} audio"
        return None


    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.remux_channels.set(len(self._muxers))

    async def close(self) -> None:
        self._closing = True
        for task in list(self._starting.values()):
            task.cancel()
        for muxer in list(self._muxers.values()):
            self._stop(muxer, linger=False)
