"""One continuous MPEG-TS timeline across NextPVR transcode restarts (live HLS).

A new transcode (a new *generation*, ``transcode.py``) starts with its own timestamps and
continuity counters. ``stitch.py`` keeps the playlist continuous, but ffmpeg's HLS reader ignores
``EXT-X-DISCONTINUITY`` (and with it Jellyfin, Emby and Plex): it sees the counters jump
("Packet corrupt") and the timestamps go back. So the segments of a new generation are rewritten
as they enter the shared cache, once, never per viewer:

- every PTS/DTS/PCR is shifted by one offset per generation, chosen so that the first video frame
  of the generation's *anchor* (its first listed segment) decodes one frame after the last frame of
  the previous generation's newest cached segment (``proxy/media/timeline.py``, shared with the
  remux packager's splice);
- audio of the anchor that would overlap what the previous generation already played is replaced
  by null packets (same length), up to the first audio PES after it; AAC audio that starts later
  than the old audio ended gets silent frames before it (``rejoin.py``): the anchor then grows, so
  its Content-Length is not passed on (the cache holds it whole and knows its size once done);
- every PID's continuity counter is moved on by a constant so that it continues the old one.

The offset depends only on the previous generation's end and the anchor's bytes: a later segment
of the generation that is fetched first (prefetch, or a player) waits for the anchor (fetching it
if nobody has) and uses the same offset and counters. Segments that are not MPEG-TS (no 0x47 sync
byte first) pass unchanged. The playlist keeps its ``EXT-X-DISCONTINUITY`` at the join: the new
transcode may have other encoder parameters (the splice changes timestamps and counters, not the
codec configuration), and hls.js and AVPlayer re-initialise their decoders there; with continuous
timestamps the tag costs them nothing.

State is per scope and bounded: the newest completed segment of each scope (its cache key and
first timestamp; its end is read from the cached bytes only when a new generation needs it) and
the splices of the last few generations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Protocol

from proxy.asyncutil import Notifier
from proxy.errors import NextPVRUnreachable, ProxyError, UpstreamTooLarge
from proxy.media.rejoin import Join, SegmentRewriter, audio_ends
from proxy.media.timeline import timeline_end
from proxy.media.timestamps import ticks_between
from proxy.nextpvr.streams import UpstreamBody

__all__ = ["Continuity", "SegmentSource"]

log = logging.getLogger("proxy.hls.continuity")

#: scopes whose last segment is remembered (each record is a few small dicts)
_MAX_SCOPES: Final = 256
#: generations per scope whose splice is kept (a segment of an older one is only served from cache)
_SPLICES_PER_SCOPE: Final = 4
#: how long an anchor waits for downloads of the previous generation that are still running
#: (their end may be the timeline's end); they are bounded by the upstream timeouts anyway
_PREVIOUS_WAIT: Final = 5.0
#: how many times a segment waits for an anchor that failed before it anchors the splice itself
_ANCHOR_TRIES: Final = 3

Opener = Callable[[int], Awaitable[UpstreamBody]]


class SegmentSource(Protocol):
    """What the continuity needs of the shared segment cache (``SegmentCache``)."""

    segment_max_bytes: int

    def peek(self, key: Hashable) -> _Entry | None: ...

    def get(self, key: Hashable, opener: Opener) -> _Entry: ...


class _Entry(Protocol):
    def body(self) -> bytes: ...

    def iter_bytes(self) -> AsyncIterator[bytes]: ...


@dataclass(slots=True)
class Splice:
    """How one generation joins the previous one: its anchor, and the join the anchor fixes."""

    generation: int
    anchor_key: Hashable
    anchor_opener: Opener
    #: False when there is nothing to continue (the scope's first generation)
    needed: bool
    join: Join = field(default_factory=lambda: Join(None))
    #: the previous generation's end was read (into ``join.base``)
    base_known: bool = False
    #: the anchor's download failed: the next segment to start anchors the splice instead
    anchor_failed: bool = False

    @property
    def ready(self) -> bool:
        return self.join.complete

    def take_anchor(self, key: Hashable, opener: Opener) -> None:
        self.anchor_key, self.anchor_opener, self.anchor_failed = key, opener, False


@dataclass(slots=True)
class _Newest:
    """The newest completed MPEG-TS segment of a scope."""

    generation: int
    key: Hashable
    first: int


@dataclass(slots=True)
class _Scope:
    newest: _Newest | None = None
    splices: OrderedDict[int, Splice] = field(default_factory=OrderedDict)
    #: generation -> downloads running now
    running: dict[int, int] = field(default_factory=dict)
    changed: Notifier = field(default_factory=Notifier)

    def older_running(self, generation: int) -> bool:
        return any(g < generation and n for g, n in self.running.items())


class Continuity:
    """The per-scope splice state; :meth:`opener` wraps a segment's upstream opener."""

    def __init__(self, *, max_scopes: int = _MAX_SCOPES) -> None:
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()
        self._max_scopes = max_scopes

    def _scope(self, scope: str) -> _Scope:
        state = self._scopes.get(scope)
        if state is None:
            state = self._scopes[scope] = _Scope()
            while len(self._scopes) > self._max_scopes:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(scope)
        return state

    def begin(self, scope: str, generation: int, key: Hashable, opener: Opener) -> None:
        """``key`` (opened by ``opener``) is the first segment listed for ``generation``: its anchor.

        The first call for a generation counts. A scope with nothing before needs no splice.
        """
        state = self._scope(scope)
        if generation in state.splices:
            return
        fresh = state.newest is None and not state.older_running(generation)
        state.splices[generation] = Splice(generation, key, opener, needed=not fresh)
        while len(state.splices) > _SPLICES_PER_SCOPE:
            state.splices.popitem(last=False)

    def opener(self, cache: SegmentSource, scope: str, generation: int, key: Hashable,
               inner: Opener) -> Opener:
        """``inner`` with its bytes spliced onto the previous generation (the cache's opener)."""
        job = _Job(self, cache, scope, generation, key, inner)
        return job.open

    # -- used by the jobs -----------------------------------------------------------------------------
    def state(self, scope: str) -> _Scope:
        return self._scope(scope)

    def completed(self, scope: str, generation: int, key: Hashable, first: int) -> None:
        state = self._scope(scope)
        newest = state.newest
        if newest is None or generation > newest.generation or (
                generation == newest.generation and ticks_between(newest.first, first) > 0):
            state.newest = _Newest(generation, key, first)

    async def resolve_base(self, cache: SegmentSource, scope: str, splice: Splice) -> None:
        """Read where the previous generation's timeline ends, once, for ``splice``'s anchor."""
        state = self._scope(scope)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_PREVIOUS_WAIT):
                await state.changed.wait_for(lambda: not state.older_running(splice.generation))
        if splice.base_known:
            return
        splice.base_known = True
        newest = state.newest
        if newest is None or newest.generation >= splice.generation:
            return
        entry = cache.peek(newest.key)
        if entry is None:
            log.info("%s: the previous transcode's last segment left the cache; no splice", scope)
            return
        body = entry.body()
        splice.join.base = base = timeline_end([body])
        splice.join.exact_ends = audio_ends(body, base)


class _Job:
    """One segment download (with its retries) of one generation."""

    def __init__(self, owner: Continuity, cache: SegmentSource, scope: str, generation: int,
                 key: Hashable, inner: Opener) -> None:
        self._owner = owner
        self._cache = cache
        self._scope = scope
        self._generation = generation
        self._key = key
        self._inner = inner
        self._rewriter: SegmentRewriter | None = None
        self._prepared = False
        #: set when this download anchors its generation's splice
        self._splice: Splice | None = None

    async def open(self, offset: int) -> UpstreamBody:
        if not self._prepared:
            self._rewriter = await self._prepare()
            self._prepared = True
        state = self._owner.state(self._scope)
        body = await self._inner(offset)
        state.running[self._generation] = state.running.get(self._generation, 0) + 1
        if self._rewriter is not None:
            # a resumed download (Range) goes on from a packet boundary; an upstream that ignored
            # the Range sends everything again, and the cache skips what it already has
            self._rewriter.restart(from_start=offset == 0 or body.status == 200)
        return _SplicedBody(body, self)

    async def _prepare(self) -> SegmentRewriter:
        state = self._owner.state(self._scope)
        splice = state.splices.get(self._generation)
        if splice is None or not splice.needed:
            return SegmentRewriter(None, anchor=False)
        for _ in range(_ANCHOR_TRIES):
            if splice.ready:
                join = splice.join
                return SegmentRewriter(join if join.base is not None and join.offset is not None else None,
                                       anchor=False)
            if splice.anchor_key == self._key or splice.anchor_failed:
                splice.take_anchor(self._key, self._inner)
                self._splice = splice
                await self._owner.resolve_base(self._cache, self._scope, splice)
                if splice.join.base is None:
                    splice.join.complete = True  # nothing to continue: every segment passes unchanged
                    return SegmentRewriter(None, anchor=False)
                return SegmentRewriter(splice.join, anchor=True)
            anchor = splice.anchor_key
            try:
                entry = self._cache.get(anchor, self._owner.opener(self._cache, self._scope, self._generation,
                                                                   anchor, splice.anchor_opener))
                async for _ in entry.iter_bytes():
                    pass
            except ProxyError:
                if splice.anchor_key == anchor and not splice.ready:
                    splice.anchor_failed = True
        log.info("%s: no anchor for the splice of generation %d; segment passed unchanged",
                 self._scope, self._generation)
        return SegmentRewriter(None, anchor=False)

    def closed(self) -> None:
        state = self._owner.state(self._scope)
        count = state.running.get(self._generation, 0) - 1
        if count > 0:
            state.running[self._generation] = count
        else:
            state.running.pop(self._generation, None)
        state.changed.notify()

    def finished(self) -> None:
        rewriter = self._rewriter
        if rewriter is None:
            return
        if rewriter.is_ts and rewriter.first is not None:
            self._owner.completed(self._scope, self._generation, self._key, rewriter.first)
        rewriter.complete()
        if self._splice is not None:
            self._splice.join.complete = True  # not MPEG-TS: the others pass unchanged too

    @property
    def max_bytes(self) -> int:
        return self._cache.segment_max_bytes

    @property
    def rewriter(self) -> SegmentRewriter:
        assert self._rewriter is not None
        return self._rewriter


class _SplicedBody:
    """An upstream body whose chunks pass through the job's rewriter."""

    def __init__(self, body: UpstreamBody, job: _Job) -> None:
        self._body = body
        self._job = job
        self.status = body.status
        self.content_type = body.content_type
        #: what NextPVR said it sends, checked against what came
        self._expected = body.content_length
        # an anchor may grow (silence filling an audio gap): its length is known only at its end
        self.content_length = None if job.rewriter.may_grow else body.content_length
        self._closed = False

    async def iter_chunks(self, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        rewriter = self._job.rewriter
        limit = self._job.max_bytes
        received = 0
        async for chunk in self._body.iter_chunks(chunk_size):
            # the anchor is held until it is whole: bound it here, before the cache sees any of it
            received += len(chunk)
            if received > limit:
                raise UpstreamTooLarge("segment larger than hls.segment_max_bytes")
            out = rewriter.feed(chunk)
            if out:
                yield out
        if self._expected is not None and received != self._expected:
            # said here, before the held bytes go out: the cache resumes from what it has, and an
            # anchor (held whole) is fetched again rather than joined from its second half
            raise NextPVRUnreachable("NextPVR ended the segment early")
        tail = rewriter.finish()
        if tail:
            yield tail
        self._job.finished()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._job.closed()
        await self._body.close()

