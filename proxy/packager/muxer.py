"""One channel's HLS muxing session: a tap on the channel's shared TS stream, packaging it.

The muxer receives the channel's packets from :class:`~proxy.ts.fanout.ChannelStream` (it is a
``Tap``: it holds the one upstream connection open like a TS viewer would), splices re-opened
connections onto the old timeline, cuts segments, shelves them in the shared store and keeps the
playlist bytes ready, rebuilt only when a segment completes (requests never build it).

A session is watched while some client fetched its playlist within three target durations or
is still receiving one of its segments; after that the manager detaches it (and the stream's
linger starts if no TS viewer is left).

What the playlist says (rendering, LL-HLS live edge lines, the timeshift window and its start-over
variant) is written by ``session_playlist.py``; the muxer passes in its state at each rebuild.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Final

from proxy.config import Config
from proxy.hls.tokens import TokenSigner
from proxy.media.analyzer import StreamAnalyzer
from proxy.media.psi import ProgramMap
from proxy.media.timestamps import pes_timestamps
from proxy.metrics import Metrics
from proxy.packager.parts import Part, PartCutter
from proxy.packager.playlist import PlaylistEntry, target_duration
from proxy.packager.programmes import ListingSource, ProgrammeTracker, StartPoint
from proxy.packager.progress import Progress
from proxy.packager.segment import Segment
from proxy.packager.segmenter import Segmenter
from proxy.packager.session_playlist import PlaylistRenderer, TimeshiftListing
from proxy.packager.splice import Splicer, drop_unfinished, timeline_end
from proxy.packager.store import SegmentStore
from proxy.packager.timeshift import ChannelTimeshift, DiskSegment, TimeshiftStore
from proxy.packager.urls import part_name, segment_uri

__all__ = ["Muxer"]

log = logging.getLogger("proxy.packager")

#: clients remembered for the "watching" test (oldest forgotten first)
_MAX_CLIENTS: Final = 4096
#: a viewer is watching while it asked for the playlist within this many target durations
WATCH_TARGETS: Final = 3


class Muxer:
    def __init__(self, channel_id: int, config: Config, store: SegmentStore, signer: TokenSigner, *,
                 first_sequence: int = 0, discontinuity_sequence: int = 0, continues: bool | None = None,
                 metrics: Metrics | None = None, on_idle: Callable[[Muxer], None] = lambda muxer: None,
                 timeshift: TimeshiftStore | None = None, listings: ListingSource | None = None) -> None:
        self.channel_id = channel_id
        #: random per session, in every segment name: a cache never mixes two sessions
        self.session = secrets.token_hex(4)
        self._config = config
        self._hls = config.hls
        self._store = store
        self._signer = signer
        self._metrics = metrics
        self._on_idle = on_idle
        self._next_sequence = first_sequence
        self._first_sequence = first_sequence
        #: EXT-X-DISCONTINUITY tags of segments that left the window (earlier sessions included)
        self._discontinuity_base = discontinuity_sequence
        #: the first segment continues an earlier session's playlist (behind a discontinuity)
        self._first_discontinuity = first_sequence > 0 if continues is None else continues
        self._window: list[Segment] = []
        self._target = target_duration([], self._hls.segment_duration)
        self._splicer = Splicer()
        self._segmenter = Segmenter(target=self._hls.segment_duration, max_bytes=self._hls.segment_max_bytes,
                                    new_segment=self._new_segment, done=self._segment_done)
        self.program: ProgramMap | None = None
        self.video_codec = ""
        self.failed: str | None = None
        self.ended = False
        self.ended_at: float | None = None
        self.closed = False
        self._playlist = b""
        #: LL-HLS (hls.low_latency): parts of the segments, the delta-update playlist, one wake for waiters
        self.low_latency = self._hls.low_latency
        self.parts = PartCutter(self._hls.part_duration)
        self._playlist_skip = b""
        self._renderer = PlaylistRenderer(self.parts, low_latency=self.low_latency,
                                          part_target=self._hls.part_duration, part_uri=self.part_uri)
        self.progress = Progress()
        #: set once the playlist lists a segment, or the session failed or ended
        self.ready = asyncio.Event()
        #: set once the PMT is known (``auto`` decides on it)
        self.program_known = asyncio.Event()
        self._progress = asyncio.Event()
        self._clients: OrderedDict[Hashable, float] = OrderedDict()
        self.sending = 0
        self.started = time.monotonic()
        self.first_byte_at: float | None = None
        self._last_use = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        store.open(self.session)
        # timeshift (hls.timeshift > 0): older segments listed from disk, programme marks from the guide
        self._timeshift: ChannelTimeshift | None = None
        self._programmes: ProgrammeTracker | None = None
        self._listing: TimeshiftListing | None = None
        if timeshift is not None:
            self._timeshift = timeshift.open(self.session)
            if listings is not None:
                self._programmes = ProgrammeTracker(channel_id, listings, lookback=timeshift.window,
                                                    on_change=self.programmes_changed)
                self._programmes.start()
            self._listing = TimeshiftListing(channel_id, self._timeshift, self._programmes,
                                             first_sequence=first_sequence,
                                             discontinuity_sequence=discontinuity_sequence, write=self._write)
        self._arm()

    # -- the Tap interface (called on the fan-out's reader task) ----------------------------------------

    def on_packets(self, packets: bytes, keyframes: list[int], analyzer: StreamAnalyzer, wall: float) -> None:
        if self.closed or self.failed is not None:
            return
        began = time.perf_counter()
        if self.first_byte_at is None:
            self.first_byte_at = time.monotonic()
        if self.program is not analyzer.program and analyzer.program is not None:
            self.program = analyzer.program
            self.video_codec = analyzer.video_codec
            self.program_known.set()
        packets = self._splicer.apply(packets, keyframes, analyzer.video_pid, analyzer.audio_pids)
        if self.low_latency:
            for kf in keyframes:
                pts, dts = pes_timestamps(packets, kf)
                if pts is not None:
                    self.parts.keyframe(dts if dts is not None else pts)
        self._segmenter.feed(packets, keyframes, analyzer, wall)
        current = self._segmenter.current
        if (self.low_latency and current is not None and self._segmenter.failed is None
                and self._sign_parts(self.parts.scan(current, self._segmenter.cut_pid))):
            self._rebuild()
            self._wake()
        if self._segmenter.failed is not None:
            self._fail(self._segmenter.failed)
        self._store.refresh(self.session, keep=2 * self._hls.window_segments + 1)
        if self._metrics is not None:
            self._metrics.remux_packaging_seconds.inc(time.perf_counter() - began)

    def on_reconnect(self) -> None:
        """Finish the growing segment at the break; the new connection continues its timeline."""
        current = self._segmenter.current
        if current is not None and self.program is not None:
            # the frames the break tore are dropped: readers so far got them, later ones do not
            pes = [s.pid for s in self.program.streams if s.kind != "other"]
            current.replace(drop_unfinished(current.data(), pes))
        finished = self._segmenter.finish()
        tail = finished or (self._window[-1] if self._window else None)
        if tail is not None:
            self._splicer.splice(timeline_end(tail.chunks))
        log.info("channel %d: upstream re-opened; splicing it onto the packaged timeline", self.channel_id)

    def on_end(self, reason: str) -> None:
        if self.closed:
            return
        self._segmenter.finish()
        self.ended = True
        self.ended_at = time.monotonic()
        log.info("channel %d: stream ended (%s); the playlist is complete", self.channel_id, reason)
        self._rebuild()
        self.ready.set()
        self.program_known.set()
        self._wake()

    # -- segments -------------------------------------------------------------------------------------

    def _new_segment(self, wall: float, first_timestamp: int | None, discontinuity: bool) -> Segment:
        sequence = self._next_sequence
        self._next_sequence += 1
        opening = self._first_discontinuity and sequence == self._first_sequence
        segment = Segment(sequence, f"{self.session}-{sequence}.ts", wall_clock=wall,
                          first_timestamp=first_timestamp, discontinuity=opening or discontinuity)
        self._store.add(self.session, segment)
        return segment

    def _segment_done(self, segment: Segment) -> None:
        # a timeshifted segment stays listed for the whole window: its URL must outlive that
        segment.uri = segment_uri(self._signer, self.channel_id, segment.name, created=segment.wall_clock,
                                  ttl=self._config.auth.token_ttl + self._hls.timeshift)
        self._window.append(segment)
        if self._timeshift is not None:
            self._timeshift.add(segment)
        leaving = self._window[: -self._hls.window_segments]
        self._discontinuity_base += sum(1 for s in leaving if s.discontinuity)
        del self._window[: -self._hls.window_segments]
        self._target = max(self._target, target_duration([segment.duration or 0.0], self._hls.segment_duration))
        if self.low_latency:
            self.parts.finish(segment, self._segmenter.cut_pid)
            self._sign_parts(self.parts.parts.get(segment.sequence, []))
            # parts stay fetchable as long as their segment may still be in the store
            self.parts.forget_before(self._window[0].sequence - self._hls.window_segments)
        if self._metrics is not None:
            if not self._window[:-1] and self.first_byte_at is not None:
                self._metrics.remux_first_segment.observe(time.monotonic() - self.first_byte_at)
            self._metrics.remux_segments.inc()
            self._metrics.remux_bytes.inc(segment.size)
        self._rebuild()
        self.ready.set()
        self._wake()

    def _wake(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()
        self.progress.wake()

    def _sign_parts(self, parts: list[Part]) -> bool:
        for part in parts:
            if not part.uri:
                part.uri = self.part_uri(part.sequence, part.index)
        return bool(parts)

    def part_uri(self, sequence: int, index: int) -> str:
        segment = self._store.get(self.session, sequence)
        created = segment.wall_clock if segment is not None else time.time()
        return segment_uri(self._signer, self.channel_id, part_name(self.session, sequence, index),
                           created=created, ttl=self._config.auth.token_ttl)

    async def wait_for_segments(self, count: int) -> None:
        """Wait until ``count`` segments of this session are complete, or it ended or failed (for
        tests and benchmarks: bound it with ``asyncio.timeout``)."""
        while self._next_sequence - self._first_sequence - (self._segmenter.current is not None) < count:
            if self.ended or self.closed or self.failed is not None:
                return
            await self._progress.wait()

    def _rebuild(self) -> None:
        if self._listing is not None:
            self._playlist, self._playlist_skip = self._listing.rebuild(self._window, self._next_sequence)
            return
        window = [s for s in self._window if not s.evicted]
        entries = [PlaylistEntry(s.sequence, s.duration or 0.0, s.wall_clock, s.uri, s.discontinuity)
                   for s in window]
        # a tag counts in EXT-X-DISCONTINUITY-SEQUENCE once its segment has left the window (RFC 8216bis
        # 4.4.3.3); evicted segments still listed are skipped, but they have not left the window
        discontinuity_sequence = self._discontinuity_base + sum(1 for s in self._window
                                                                 if s.evicted and s.discontinuity)
        self._playlist, self._playlist_skip = self._write(entries, discontinuity_sequence)

    def _write(self, entries: list[PlaylistEntry], discontinuity_sequence: int,
               tags: Sequence[str] = ()) -> tuple[bytes, bytes]:
        return self._renderer.write(entries, discontinuity_sequence, tags, target=self._target, ended=self.ended,
                                    live=not self.ended and self.failed is None,
                                    current=self._segmenter.current, next_sequence=self._next_sequence)

    # -- LL-HLS: where the live edge is -------------------------------------------------------------------

    @property
    def last_complete(self) -> int:
        """Media sequence number of the newest complete segment (one below the first before any)."""
        return self._window[-1].sequence if self._window else self._first_sequence - 1

    def reached(self, msn: int, part: int | None) -> bool:
        """Whether a blocking reload for segment ``msn`` (part ``part``) can be answered (RFC 8216bis
        6.2.5.2): the segment is complete, or that part of it is; a part index beyond a complete
        segment's parts means the next segment's first part. An ended session answers everything."""
        if self.ended or self.closed or self.failed is not None:
            return True
        last = self.last_complete
        if part is None:
            return msn <= last
        if msn < last or (msn == last and part < self.parts.completed(msn)):
            return True
        if msn == last:
            msn, part = msn + 1, 0
        current = self._segmenter.current
        return current is not None and msn == current.sequence and part < self.parts.completed(msn)

    def part_coming(self, sequence: int, index: int) -> bool:
        """The part is the hinted one (or the one after it): worth waiting for."""
        current = self._segmenter.current
        if current is None or self.ended or self.closed:
            return False
        done = self.parts.completed(current.sequence)
        return (sequence == current.sequence and done <= index <= done + 1) or (
            sequence == current.sequence + 1 and index == 0 and done > 0)

    def find_part(self, session: str, sequence: int, index: int) -> tuple[Segment, Part] | None:
        if session != self.session:
            return None
        part = self.parts.part(sequence, index)
        segment = self._store.get(self.session, sequence)
        if part is None or segment is None or not part.uri:
            return None
        return segment, part

    def programmes_changed(self) -> None:
        """The guide's programmes of the channel changed: re-mark the playlist."""
        if self._timeshift is not None and self._window and not self.closed:
            self._rebuild()

    @property
    def timeshift(self) -> ChannelTimeshift | None:
        return self._timeshift

    @property
    def programmes(self) -> ProgrammeTracker | None:
        return self._programmes

    def start_point(self) -> StartPoint:
        """Where ``?start=programme`` begins in the current playlist."""
        if self._listing is None:
            return StartPoint(0.0, False, None)
        return self._listing.start_point(target=self._target, ended=self.ended)

    @property
    def target(self) -> int:
        """EXT-X-TARGETDURATION: never goes down within the session."""
        return self._target

    @property
    def first_sequence(self) -> int:
        return self._first_sequence

    @property
    def next_sequence(self) -> int:
        return self._next_sequence

    @property
    def discontinuities(self) -> int:
        """EXT-X-DISCONTINUITY tags issued up to the end of this session."""
        return self._discontinuity_base + sum(1 for s in self._window if s.discontinuity)

    def _fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason
            log.warning("channel %d: cannot package the stream: %s", self.channel_id, reason)
            if self._window:
                # players of a session that already ran see its end, not a playlist that stops moving
                self.ended = True
                self.ended_at = time.monotonic()
                self._rebuild()
            self.ready.set()
            self.program_known.set()
            self._wake()

    # -- viewers --------------------------------------------------------------------------------------

    def playlist(self, client: Hashable, *, start_programme: bool = False, skip: bool = False) -> bytes:
        now = time.monotonic()
        self._last_use = now
        self._clients[client] = now
        self._clients.move_to_end(client)
        while len(self._clients) > _MAX_CLIENTS:
            self._clients.popitem(last=False)
        if start_programme and self._listing is not None and self._listing.listed:
            full, delta = self._listing.start_over(target=self._target, ended=self.ended)
            return delta if skip else full
        return self._playlist_skip if skip else self._playlist

    @property
    def has_segments(self) -> bool:
        return bool(self._window)

    def segment(self, session: str, sequence: int) -> Segment | None:
        if session != self.session:
            return None
        return self._store.get(self.session, sequence)

    def segment_file(self, session: str, sequence: int) -> tuple[DiskSegment, Path] | None:
        """A timeshifted segment that has left the memory store, on disk."""
        if session != self.session or self._timeshift is None:
            return None
        record = self._timeshift.find(sequence)
        return (record, self._timeshift.path(record)) if record is not None else None

    def watchers(self) -> int:
        """Clients that asked for the playlist within the watch period."""
        horizon = time.monotonic() - WATCH_TARGETS * self._target
        return sum(1 for seen in self._clients.values() if seen >= horizon)

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._target, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.closed:
            return
        quiet = time.monotonic() - self._last_use
        if self.sending == 0 and quiet >= WATCH_TARGETS * self._target:
            log.info("channel %d: no HLS viewer for %.0fs; stopping the packager", self.channel_id, quiet)
            self._on_idle(self)
            return
        self._arm()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._store.drop(self.session)
        if self._timeshift is not None:
            self._timeshift.close()
        if self._programmes is not None:
            self._programmes.stop()
        self.ready.set()
        self.program_known.set()
        self._wake()
        self.progress.close()
