"""One transcode's playlist and segments: fetch, rewrite, stitch, prefetch, open.

:class:`PlaylistRefresher` is the media half of a transcode (``transcode.py`` is the life
cycle half). Each :meth:`~PlaylistRefresher.refresh` fetches NextPVR's playlist once,
rewrites it in slices (yielding to the event loop on large VOD playlists), and either keeps
the bytes (a multivariant or finished VOD playlist) or merges it into the stitched live
playlist and prefetches the new segments. Requests are answered from what it prepared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from yarl import URL

from proxy.config import Config
from proxy.errors import NextPVRUnparseable, NotFound
from proxy.hls.budget import OutputBudget, Tail, check_counts, unseen_tail
from proxy.hls.continuity import Continuity
from proxy.hls.expiry import renew_tokens, rounded_expiry
from proxy.hls.media_model import Block
from proxy.hls.rewrite import PlaylistError, PlaylistInfo, RewriteJob, UriKind, UriSite, iter_rewrite
from proxy.hls.scrub import LeakGuard
from proxy.hls.segments import Opener, SegmentCache, SegmentEntry
from proxy.hls.stitch import LivePlaylist
from proxy.hls.tokens import Target, TokenError, TokenSigner
from proxy.hls.url_mapper import ProxyUrlMapper
from proxy.hls.urls import TranscodeKey, split_hls_path
from proxy.hls.vod_index import VodIndex
from proxy.metrics import Metrics
from proxy.nextpvr.client import NextPVRClient
from proxy.nextpvr.playlists import fetch_transcode_playlist
from proxy.nextpvr.session import NextPVRSession
from proxy.nextpvr.streams import UpstreamStream

__all__ = ["PlaylistRefresher", "TranscodeServices", "segment_key"]

#: new live segments fetched ahead of viewers on the first playlist (players start ~3 from the end)
_FIRST_PREFETCH = 3
_EXTINF = re.compile(r"^#EXTINF:([0-9]+(?:\.[0-9]*)?)", re.MULTILINE)


log = logging.getLogger("proxy.hls")

@dataclass(frozen=True, slots=True)
class TranscodeServices:
    """What a transcode uses from the rest of the proxy, passed in explicitly."""

    config: Config
    client: NextPVRClient
    signer: TokenSigner
    cache: SegmentCache
    metrics: Metrics
    vod_index: VodIndex
    #: NextPVR's origin first, then the extra origins a playlist may point at
    origins: tuple[str, ...]
    #: what served playlists must not carry (origins, every sid held), current at each call
    leak_guard: Callable[[], LeakGuard]
    #: joins a new generation's segments onto the previous one's timeline (continuity.py)
    continuity: Continuity = field(default_factory=Continuity)
    #: the wall clock (Unix seconds) tokens are minted and renewed by
    clock: Callable[[], float] = time.time


def segment_key(scope: str, target: Target) -> Hashable:
    """The shared cache's key for a live segment: its generation keeps a segment of an earlier
    transcode apart from one of a new transcode that NextPVR happens to name the same."""
    return (scope, target.generation, target.path_query)


def _listed_seconds(text: str) -> float:
    """Total duration of a playlist's segments, known before the rewrite that signs its tokens
    (a quick scan: ~3 ms for 10,000 segments)."""
    return sum(float(d) for d in _EXTINF.findall(text))


class _MediaRecorder:
    """Wraps the mapper to remember, in order, the proxy URL of every segment URI line."""

    def __init__(self, inner: ProxyUrlMapper) -> None:
        self.inner = inner
        self.media: list[str] = []

    def __call__(self, url: str, site: UriSite) -> str | None:
        out = self.inner(url, site)
        if site.tag is None and site.kind is UriKind.MEDIA:
            self.media.append(out or "")
        return out


class PlaylistRefresher:
    """The prepared playlist of one transcode and the opening of its segments.

    ``session`` gives the transcode's current session (None once it stopped); ``on_segment_gone``
    is called when NextPVR answers 404 for a segment (the transcode may be gone: check now).
    """

    def __init__(self, key: TranscodeKey, services: TranscodeServices, *,
                 session: Callable[[], NextPVRSession | None], on_segment_gone: Callable[[], None]) -> None:
        self.key = key
        self.scope = key.scope
        self._s = services
        self._session = session
        self._on_segment_gone = on_segment_gone
        self.generation = 0
        # a recording still in progress is an EVENT playlist: it only grows, keep all of it
        self.live = (LivePlaylist(max_window=64, clock=time.time) if key.kind == "channel"
                     else LivePlaylist(max_window=1_000_000))
        self.vod: bytes | None = None
        self.is_vod = False
        self.target_duration = 2
        self._mapper: ProxyUrlMapper | None = None
        #: the earliest expiry of the tokens in the stitched live playlist (None: nothing listed)
        self._listed_expires: int | None = None
        #: tag names whose removal was logged (bounded: logged once each, 64 at most)
        self._dropped_logged: set[str] = set()
        #: the generation whose anchor segment was named to the continuity
        self._anchored = -1

    @property
    def has_playlist(self) -> bool:
        return self.vod is not None or self.live.last_sequence is not None

    def body(self) -> bytes:
        if self.vod is not None:
            return self.vod
        ttl = self._s.config.auth.token_ttl
        now = self._s.clock()
        if self._listed_expires is not None and self._listed_expires < now + ttl:
            # a segment listed for long: its URL must still be valid token_ttl after this playlist
            expires = rounded_expiry(now, ttl)
            self.live.renew(lambda line: renew_tokens(line, self._s.signer, self.scope, expires))
            self._listed_expires = expires
        return self.live.render()

    def segment(self, target: Target) -> SegmentEntry:
        """The (shared) download of a segment this transcode listed."""
        if target.kind != "media":
            raise NotFound("not a media segment")
        cache = self._s.cache
        if self.is_vod:
            index = self._s.vod_index.index(target)
            if index is None:
                raise NotFound("this recording segment is no longer known; reload the playlist")
            return cache.get((self.scope, "vod", index), functools.partial(self._open_index, index))
        key = segment_key(self.scope, target)
        if target.generation != self.generation:
            cached = cache.peek(key)
            if cached is None:
                raise NotFound("this segment belongs to an earlier transcode; reload the playlist")
            return cached
        return cache.get(key, self._opener(key, target))

    async def child_playlist(self, target: Target) -> bytes:
        """A playlist referenced from a multivariant playlist, fetched and rewritten."""
        session = self._session()
        assert session is not None and self._mapper is not None
        sid = await session.sid()
        text, base = await self._fetch(URL(self._mapper.resolve(target, sid), encoded=True))
        out, _job = await self._rewrite(text, base, self._new_mapper(sid))
        return out.encode()

    def cancel_downloads(self) -> None:
        """Drop this transcode's running segment downloads (they would ask NextPVR for what it
        just dropped)."""
        scope = self.scope
        self._s.cache.cancel(lambda key: isinstance(key, tuple) and key[:1] == (scope,))

    async def refresh(self, *, first: bool) -> None:
        session = self._session()
        assert session is not None
        sid = await session.sid()
        text, base = await self._fetch(self._s.client.transcode_playlist_url(sid, self.key.kind))
        playback = _listed_seconds(text) if self.key.kind == "recording" else 0.0
        recorder = _MediaRecorder(self._new_mapper(sid, playback=playback))
        tail = self._unseen_tail(text)
        rewritten, job = await self._rewrite(tail.text if tail is not None else text, base, recorder,
                                             media=True)
        info = job.info
        if info.target_duration:
            self.target_duration = info.target_duration
        if info.is_master or info.endlist:
            del job  # its kept lines: a 10,000-segment recording's are megabytes
        if info.is_master:
            self.vod = rewritten.encode()
            return
        if info.endlist:
            # a finished recording: a VOD playlist that never changes; segments are found by index
            self.is_vod = True
            self._s.vod_index.remember(self.generation, self.scope, recorder.media)
            self.vod = rewritten.encode()
            return
        try:
            # cut at the segment boundaries the rewriting pass recorded: the output is not parsed again
            parsed = job.media()
        except PlaylistError as exc:
            raise NextPVRUnparseable(f"NextPVR's playlist for {self.scope} is malformed ({exc})") from exc
        merged = parsed
        if tail is not None:
            # the segments cut off before the rewrite are merged already: they only say "still listed"
            merged = dataclasses.replace(parsed, blocks=[*tail.skipped, *parsed.blocks],
                                         media_sequence=tail.media_sequence,
                                         discontinuity_sequence=tail.discontinuity_sequence)
        fresh = self.live.update(self.generation, merged)
        if fresh:
            minted = recorder.inner.expires
            self._listed_expires = minted if self._listed_expires is None else min(self._listed_expires, minted)
        if fresh and self._anchored != self.generation:
            # a new generation's first playlist is rewritten whole (no tail: nothing of it is known yet)
            self._anchor(parsed.blocks, fresh[0], recorder.media)
        if fresh and self._s.config.hls.prefetch:
            self._prefetch(parsed.blocks, fresh, recorder.media, first=first)

    def _unseen_tail(self, text: str) -> Tail | None:
        """The part of a live playlist not merged yet (a growing EVENT playlist is rewritten line
        by line once, not whole at every refresh); None: rewrite all of it."""
        if self.is_vod or "#EXT-X-ENDLIST" in text:
            return None  # a finished playlist is kept whole (VOD index, bytes served as they are)
        known = {up for _seq, generation, up in self.live.segments() if generation == self.generation}
        return unseen_tail(text, known) if known else None

    # -- opening segments ---------------------------------------------------------
    def _opener(self, key: Hashable, target: Target) -> Opener:
        """The cache's opener of a live segment: its bytes continue the previous generation's."""
        return self._s.continuity.opener(self._s.cache, self.scope, target.generation, key,
                                         functools.partial(self._open, target))

    def _anchor(self, blocks: list[Block], first_seq: int, media: list[str]) -> None:
        """Name the first segment listed for this generation: it fixes the splice (continuity.py)."""
        if len(media) != len(blocks):
            return
        target = next((self._target_of(media[i]) for i, b in enumerate(blocks) if b.upstream_seq == first_seq),
                      None)
        if target is not None:
            self._anchored = self.generation
            self._s.continuity.begin(self.scope, self.generation, segment_key(self.scope, target),
                                     functools.partial(self._open, target))

    def _target_of(self, url: str) -> Target | None:
        parsed = split_hls_path(url)
        if parsed is None or parsed.scope != self.scope:
            return None
        try:
            return self._s.signer.verify(self.scope, parsed.token, now=time.time())
        except TokenError:
            return None

    async def _open(self, target: Target, offset: int = 0) -> UpstreamStream:
        session = self._session()
        if session is None or self._mapper is None:
            raise NotFound("this stream has stopped; reload the playlist")
        sid = await session.sid()
        url = URL(self._mapper.resolve(target, sid), encoded=True)
        # identity: a byte count must mean the same thing on the retry that resumes it
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            return await self._s.client.open_stream(url, headers=headers)
        except NotFound:
            self._on_segment_gone()
            raise

    async def _open_index(self, index: int, offset: int = 0) -> UpstreamStream:
        vod = self._s.vod_index.get(self.generation)
        if vod is None or index >= len(vod.paths):
            raise NotFound("this recording segment is not in the current playlist")
        target = self._s.signer.verify(self.scope, vod.paths[index], now=time.time())
        return await self._open(target, offset)

    def _prefetch(self, blocks: list[Block], fresh: list[int], media: list[str], *, first: bool) -> None:
        if len(media) != len(blocks):
            return  # a URI line the recorder did not see as media; skip rather than guess
        by_seq = {b.upstream_seq: i for i, b in enumerate(blocks)}
        wanted = fresh[-_FIRST_PREFETCH:] if first else fresh
        for seq in wanted:
            target = self._target_of(media[by_seq[seq]])
            if target is not None:
                key = segment_key(self.scope, target)
                self._s.cache.prefetch(key, self._opener(key, target))

    # -- fetching and rewriting ---------------------------------------------------
    def _new_mapper(self, sid: str, *, playback: float = 0.0) -> ProxyUrlMapper:
        # a VOD player fetches its playlist once and its last segment hours later: its tokens must
        # outlive the playback (``playback`` seconds) by the configured lifetime
        # rounded up (expiry.py): every viewer gets the same URL for a segment for up to an hour
        expires = rounded_expiry(self._s.clock(), self._s.config.auth.token_ttl + playback)
        mapper = ProxyUrlMapper(self._s.signer, scope=self.scope, generation=self.generation,
                                expires=expires, origins=self._s.origins, secrets=[sid],
                                forbidden_names=self._s.leak_guard().needles)
        self._mapper = mapper
        return mapper

    async def _fetch(self, url: URL) -> tuple[str, str]:
        fetched = await fetch_transcode_playlist(
            self._s.client, self._s.metrics, url, kind=self.key.kind,
            max_bytes=self._s.config.hls.playlist_max_bytes, total=self._s.config.nextpvr.timeouts.api_total,
            what=self.scope, profile=self.key.profile)
        check_counts(fetched.text, max_segments=self._s.config.hls.playlist_max_segments, what=self.scope)
        return fetched.text, fetched.base

    async def _rewrite(self, text: str, base: str, mapper: Callable[[str, UriSite], str | None], *,
                       media: bool = False) -> tuple[str, RewriteJob]:
        """Rewrite in slices, yielding to the event loop between them (large VOD playlists)."""
        # 250 lines: sealing a token (AES-SIV) costs a few microseconds; short slices keep the loop
        # responsive on a loaded 2-core machine (test_recordings measures the longest stall)
        job = iter_rewrite(text, base, mapper, lines_per_chunk=250, guard=self._s.leak_guard(),
                           passthrough_schemes=self._s.config.hls.passthrough_schemes, media=media)
        parts: list[str] = []
        budget = OutputBudget(self._s.config.hls.playlist_max_bytes, what=self.scope)
        spent = 0.0
        try:
            chunks = job.chunks()
            while True:
                t0 = time.perf_counter()
                part = next(chunks, None)
                spent += time.perf_counter() - t0
                if part is None:
                    break
                budget.spend(part)
                parts.append(part)
                if len(text) > 65536:
                    await asyncio.sleep(0)
            info = job.info
        except PlaylistError as exc:
            raise NextPVRUnparseable(f"NextPVR's playlist for {self.scope} is malformed ({exc})") from exc
        self._s.metrics.rewrite_duration.observe(spent)
        if info.dropped_tags or info.dropped_attributes:
            self._report_dropped(info)
        return "".join(parts), job

    def _report_dropped(self, info: PlaylistInfo) -> None:
        """Count every removal; log each tag name once per transcode (never the value)."""
        self._s.metrics.dropped_tags.labels("tag").inc(info.dropped_tags)
        self._s.metrics.dropped_tags.labels("attribute").inc(info.dropped_attributes)
        new = [name for name in info.dropped_names if name not in self._dropped_logged]
        if new and len(self._dropped_logged) < 64:
            self._dropped_logged.update(new)
            log.warning("%s: NextPVR's playlist named its own address or a session id in %s; "
                        "not served", self.scope, ", ".join(sorted(new)))
