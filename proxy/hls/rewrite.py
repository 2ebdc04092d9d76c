"""Line-based HLS playlist rewriter (pure: no I/O, no aiohttp), lossless but for what would leak.

Every URI site listed in section 2 of the team's HLS notes is handed to a
:data:`Mapper` as an absolute upstream URL; every other byte is copied through
unchanged (tags, blank lines, attribute order, CRLF, a missing final newline) unless
it would hand a client NextPVR's address, a session id or ``sid=`` (see below).
The ``m3u8`` package is deliberately not used here: its
``loads()``/``dumps()`` round trip drops tags, corrupts attributes, crashes on
valid syntax and is several times slower (``benchmarks/bench_rewrite.py``).

Decisions (the proxy turns :class:`PlaylistError` into a 502):

* A text whose first line is not ``#EXTM3U`` is not a playlist (NextPVR answers
  failures with an XML body at HTTP 200): :class:`PlaylistError`.
* The values reported in :class:`PlaylistInfo` must parse, or the proxy could
  not time or stitch the playlist: a non-numeric ``EXT-X-TARGETDURATION``,
  ``EXT-X-MEDIA-SEQUENCE``, ``EXT-X-DISCONTINUITY-SEQUENCE``, ``EXT-X-VERSION``
  or ``EXTINF`` duration raises :class:`PlaylistError`. A decimal target
  duration (``6.0``, seen in the wild and tolerated by hls.js) is rounded up.
* A URI-bearing tag whose attribute list cannot be tokenised raises
  :class:`PlaylistError` rather than being passed on with an unproxied URI.
* ``data:`` URIs, URIs of a key-system scheme (``passthrough_schemes``, ``skd:`` by default)
  at key sites, and URIs holding an ``EXT-X-DEFINE`` reference (``{$name}``) are kept
  verbatim and never reach the mapper; ``PlaylistInfo.has_define`` tells the caller that
  variables are used. Any other URI that does not resolve to an http(s) URL with a host
  (``gopher://``, ``file:``, ``javascript:``, ``http:/host``), and any kept one that carries
  a leak, is handed to the mapper *as written*: the proxy's mapper turns it into its
  always-403 URL, as it does for other hosts.
* A fragment (``#t=0``) is not part of the URL given to the mapper and is
  appended to the replacement unchanged (dropped if it carries a leak).
* Nothing upstream-controlled reaches a client if the :class:`~proxy.hls.scrub.LeakGuard`
  finds an origin, a session id or ``sid=`` in it (any casing, any percent-encoding).
  Comment lines (``#`` not followed by ``EXT``) are always dropped: clients ignore them
  (RFC 8216 4.1) and they are free text. A tag carrying a leak outside its URIs is dropped
  (an ``EXT-X-STREAM-INF`` with its URI line); only a leaking ``X-`` client attribute is
  removed alone, and a leaking EXTINF title is emptied. ``PlaylistInfo`` counts what went.
* Interstitial ``X-ASSET-URI``/``X-ASSET-LIST`` and preload ``X-URI`` are
  rewritten unless the DATERANGE (or an earlier one with the same ID) names a
  different ``CLASS``; no other ``X-`` attribute is ever touched.

The syntax tables and tokenizer are in ``playlist_syntax.py``, the pass over the lines in
``rewrite_pass.py``; this module drives a pass in chunks and re-exports the public names.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from proxy.hls.media_model import ParsedMedia, build_media
from proxy.hls.playlist_syntax import PlaylistError, UriKind, UriSite
from proxy.hls.rewrite_pass import _DROP, Mapper, PlaylistInfo, _Pass
from proxy.hls.scrub import DEFAULT_PASSTHROUGH_SCHEMES, LeakGuard

__all__ = [
    "Mapper",
    "PlaylistError",
    "PlaylistInfo",
    "RewriteJob",
    "UriKind",
    "UriSite",
    "iter_rewrite",
    "rewrite_playlist",
    "split_media_playlist",
]



class RewriteJob:
    """One rewrite, done in chunks of lines so an async caller can yield between them.

    Iterate :meth:`chunks` (or the job itself); ``"".join`` of the chunks is the
    output of :func:`rewrite_playlist`. :attr:`info` is available once every chunk
    has been produced. A :class:`PlaylistError` may surface in any chunk, so
    collect all of them before sending anything to a client.

    With ``media=True`` the job keeps its rewritten lines, and :meth:`media` cuts them into the
    stitcher's :class:`~proxy.hls.media_model.ParsedMedia` at the segment boundaries the pass
    recorded: a live playlist is parsed once, by the pass that rewrites it.
    """

    def __init__(self, text: str, base_url: str, mapper: Mapper, *, lines_per_chunk: int = 2000,
                 guard: LeakGuard | None = None,
                 passthrough_schemes: Iterable[str] = DEFAULT_PASSTHROUGH_SCHEMES, media: bool = False) -> None:
        if lines_per_chunk < 1:
            raise ValueError("lines_per_chunk must be positive")
        self._pass = _Pass(base_url, mapper, guard if guard is not None else LeakGuard(),
                           frozenset(s.lower() for s in passthrough_schemes))
        self._text = text
        self._lines_per_chunk = lines_per_chunk
        self._info: PlaylistInfo | None = None
        self._started = False
        self._keep_lines = media
        self._lines: list[str] | None = None

    def chunks(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a RewriteJob can only be iterated once")
        self._started = True
        return self._chunks()

    __iter__ = chunks

    def _chunks(self) -> Iterator[str]:
        text = self._text
        self._text = ""
        if not text:
            raise PlaylistError("empty playlist")
        lines = text.split("\n")
        del text
        self._pass.check_header(lines[0])
        n = len(lines)
        step = self._lines_per_chunk
        removed = 0
        for start in range(0, n, step):
            stop = min(start + step, n)
            self._pass.run(lines, max(start, 1), stop)  # line 0 is the header
            if stop == n and lines[-1] is _DROP:
                # a removed last line (no final newline) leaves the line break before it: without
                # this the output would end in a bare CR from a CRLF
                lines[-1] = ""
            if self._pass.removed == removed:
                chunk = "\n".join(lines[start:stop])
                yield chunk + "\n" if stop < n else chunk
                continue
            removed = self._pass.removed
            kept = [line for line in lines[start:stop] if line is not _DROP]
            # a removed line takes its line break with it; a chunk of removed lines is empty
            chunk = "\n".join(kept)
            yield chunk + "\n" if stop < n and kept else chunk
        self._info = self._pass.info()
        if self._keep_lines:
            self._lines = lines

    @property
    def info(self) -> PlaylistInfo:
        if self._info is None:
            raise RuntimeError("the playlist info is known only after the last chunk")
        return self._info

    def media(self) -> ParsedMedia:
        """The rewritten media playlist as header, segment blocks and trailer (``media=True``,
        after the last chunk). Raises :class:`PlaylistError` for a multivariant playlist."""
        if self._lines is None:
            raise RuntimeError("the segments are known only after the last chunk of a media=True job")
        info = self.info
        return build_media(self._lines, _DROP, self._pass.marks(), media_sequence=info.media_sequence,
                           discontinuity_sequence=info.discontinuity_sequence,
                           target_duration=info.target_duration or 0, endlist=info.endlist)


def iter_rewrite(text: str, base_url: str, mapper: Mapper, *, lines_per_chunk: int = 2000,
                 guard: LeakGuard | None = None,
                 passthrough_schemes: Iterable[str] = DEFAULT_PASSTHROUGH_SCHEMES,
                 media: bool = False) -> RewriteJob:
    """Rewrite in chunks of ``lines_per_chunk`` lines; see :class:`RewriteJob`."""
    return RewriteJob(text, base_url, mapper, lines_per_chunk=lines_per_chunk, guard=guard,
                      passthrough_schemes=passthrough_schemes, media=media)


def rewrite_playlist(text: str, base_url: str, mapper: Mapper, *, guard: LeakGuard | None = None,
                     passthrough_schemes: Iterable[str] = DEFAULT_PASSTHROUGH_SCHEMES
                     ) -> tuple[str, PlaylistInfo]:
    """Rewrite every URI site of ``text`` through ``mapper``; ``base_url`` is the final upstream URL.

    ``guard`` names what must not leak (default: ``sid=`` only; the proxy passes its origins
    and the session ids it has held); ``passthrough_schemes`` are the key-system URI schemes
    kept verbatim at key sites. Raises :class:`PlaylistError` for input the proxy cannot serve
    and ``ValueError`` for a ``base_url`` that is not an absolute http(s) URL.
    """
    job = RewriteJob(text, base_url, mapper, lines_per_chunk=sys.maxsize, guard=guard,
                     passthrough_schemes=passthrough_schemes)
    out = "".join(job.chunks())
    return out, job.info


def split_media_playlist(text: str) -> ParsedMedia:
    """Cut an already rewritten media playlist into header, blocks and trailer: the same pass
    with a mapper that keeps every URI (comments and what ``sid=`` leaks still go, as in any
    rewrite). For tests and tools; the proxy gets its :class:`ParsedMedia` from its own rewrite."""
    job = RewriteJob(text, "http://playlist.invalid/", lambda _url, _site: None, lines_per_chunk=sys.maxsize,
                     media=True)
    for _chunk in job.chunks():
        pass
    return job.media()
