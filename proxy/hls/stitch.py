"""One continuous live playlist across NextPVR transcode restarts.

NextPVR forgets its transcodes when it restarts or when a session expires. The proxy
then starts a new transcode (a new *generation*) and keeps serving the same playlist
URL. For the viewer's player the playlist must stay valid HLS across that join
(RFC 8216bis 6.2.2, 6.3.4):

- ``EXT-X-MEDIA-SEQUENCE`` never goes backwards: proxy sequence numbers continue from
  the last segment of the old generation, whatever NextPVR numbers the new one from;
- a segment that was already listed keeps its URI (its block text is stored once, the
  first time it is seen, and re-emitted verbatim);
- an ``EXT-X-DISCONTINUITY`` marks the first segment of a new generation, and
  ``EXT-X-DISCONTINUITY-SEQUENCE`` grows by one each time a segment carrying a
  discontinuity slides out of the window.

Input is an upstream media playlist that the rewriter has already rewritten, cut into
header, segment blocks and trailer by that same rewriting pass (``media_model.py``). This
module is pure (no I/O): it merges the blocks into its window and renders bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from proxy.hls.media_model import Block, ParsedMedia
from proxy.hls.numbering import wall_clock_sequence

__all__ = ["Block", "LivePlaylist", "ParsedMedia", "SequenceReset"]

_DISCONTINUITY = "#EXT-X-DISCONTINUITY"
_REPLACED_HEADER = ("#EXT-X-MEDIA-SEQUENCE:", "#EXT-X-DISCONTINUITY-SEQUENCE:", "#EXT-X-TARGETDURATION:")


class SequenceReset(Exception):
    """NextPVR's media sequence went backwards inside one transcode generation."""


@dataclass(slots=True)
class _Seg:
    seq: int
    generation: int
    upstream_seq: int
    text: str
    duration: float
    discontinuity: bool


class LivePlaylist:
    """The proxy's view of a live playlist, merged across transcode generations."""

    def __init__(self, *, min_window: int = 3, max_window: int = 64,
                 clock: Callable[[], float] | None = None) -> None:
        #: wall clock (Unix seconds) for the first numbering of a live playlist, see ``update``
        self._clock = clock
        self._segs: deque[_Seg] = deque()
        self._generation: int | None = None
        self._offset = 0  # proxy seq = upstream seq + offset, for the current generation
        self._discontinuity_sequence = 0
        self._target_duration = 0
        self._window = min_window
        self._max_window = max_window
        self._header: list[str] = ["#EXTM3U\n"]
        self._trailer: list[str] = []
        self._newline = "\n"
        self._rendered: bytes | None = None
        self.endlist = False
        #: set by seed(): the first segment's number, and whether the first update joins on
        self._seed: int | None = None
        self._seeded = False

    def continuation(self) -> tuple[int, int] | None:
        """Where a later playlist for the same URL must carry on: (next media sequence,
        discontinuity sequence once everything listed now has slid out). None if empty."""
        if not self._segs:
            return None
        gone = sum(1 for s in self._segs if s.discontinuity)
        return self._segs[-1].seq + 1, self._discontinuity_sequence + gone

    def seed(self, next_sequence: int, discontinuity_sequence: int) -> None:
        """Continue the numbering of an earlier playlist served at the same URL (a transcode
        stopped for idleness and started again): the first segment gets ``next_sequence`` and a
        discontinuity, so a player that kept the old playlist never sees a sequence go back."""
        self._seed = next_sequence
        self._discontinuity_sequence = discontinuity_sequence
        self._seeded = True

    @property
    def media_sequence(self) -> int:
        return self._segs[0].seq if self._segs else 0

    @property
    def discontinuity_sequence(self) -> int:
        return self._discontinuity_sequence

    @property
    def target_duration(self) -> int:
        return self._target_duration

    @property
    def last_sequence(self) -> int | None:
        return self._segs[-1].seq if self._segs else None

    def segments(self) -> list[tuple[int, int, int]]:
        """(proxy seq, generation, upstream seq) of every listed segment, oldest first."""
        return [(s.seq, s.generation, s.upstream_seq) for s in self._segs]

    def update(self, generation: int, parsed: ParsedMedia) -> list[int]:
        """Merge a freshly fetched (and rewritten) upstream playlist of ``generation``.

        Returns the upstream sequence numbers that are new in this update (for prefetch).
        Raises :class:`SequenceReset` when the upstream sequence went backwards inside
        the current generation: the caller must start a new generation.
        """
        if self._generation is None and not self._seeded:
            self._discontinuity_sequence = parsed.discontinuity_sequence
        new_generation = generation != self._generation
        if not new_generation:
            current = [s for s in self._segs if s.generation == generation]
            if current and parsed.blocks and parsed.blocks[0].upstream_seq < current[0].upstream_seq:
                raise SequenceReset("NextPVR's media sequence went backwards")
        self._target_duration = max(self._target_duration, parsed.target_duration)
        self._window = min(max(self._window, len(parsed.blocks)), self._max_window)
        self._header, self._trailer, self._newline = parsed.header, parsed.trailer, parsed.newline
        self.endlist = parsed.endlist
        if not parsed.blocks:
            self._rendered = None
            return []

        if new_generation:
            # continue the proxy's numbering right after what viewers have already seen
            last = self.last_sequence
            if last is None and self._seed is not None:
                last = self._seed - 1
            if last is None and self._clock is not None:
                # Numbered from the wall clock, faster than segments come (numbering.py): a second
                # proxy (a replica taking over after the first died) numbers the channel strictly
                # above every number the first listed, so a player that keeps the playlist URL skips
                # ahead and never sees a number given to another segment
                last = wall_clock_sequence(self._clock()) - 1
            first_up = parsed.blocks[0].upstream_seq
            self._offset = (last + 1 - first_up) if last is not None else 0
            join_marked = (self._generation is not None and bool(self._segs)) or self._seeded
            self._seeded = False
            self._seed = None
            self._generation = generation
        else:
            join_marked = False

        known = {s.upstream_seq: s for s in self._segs if s.generation == generation}
        fresh: list[int] = []
        for i, block in enumerate(parsed.blocks):
            if block.upstream_seq in known:
                continue
            seq = block.upstream_seq + self._offset
            last = self.last_sequence
            if last is not None and seq <= last:
                continue  # already listed under another generation's numbering
            self._segs.append(_Seg(seq, generation, block.upstream_seq, block.text, block.duration,
                                   block.discontinuity or (join_marked and i == 0)))
            fresh.append(block.upstream_seq)
        # segments of the current generation that NextPVR no longer lists leave the window
        still_listed = {b.upstream_seq for b in parsed.blocks}
        while self._segs and (
            (self._segs[0].generation == generation and self._segs[0].upstream_seq not in still_listed)
            or len(self._segs) > self._window
        ):
            gone = self._segs.popleft()
            if gone.discontinuity:
                self._discontinuity_sequence += 1
        self._rendered = None
        return fresh

    def renew(self, change: Callable[[str], str]) -> None:
        """Apply ``change`` to every stored line (``expiry.renew_tokens``: the one exception to "a
        listed segment keeps its URI", for URLs that would otherwise expire while listed)."""
        for seg in self._segs:
            seg.text = change(seg.text)
        self._header = [change(line) for line in self._header]
        self._trailer = [change(line) for line in self._trailer]
        self._rendered = None

    def render(self) -> bytes:
        if self._rendered is not None:
            return self._rendered
        nl = self._newline
        out: list[str] = []
        wrote_ds = False
        for line in self._header:
            stripped = line.strip()
            if stripped.startswith(_REPLACED_HEADER):
                if stripped.startswith("#EXT-X-TARGETDURATION:"):
                    out.append(f"#EXT-X-TARGETDURATION:{self._target_duration}{nl}")
                elif stripped.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                    out.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}{nl}")
                    if self._discontinuity_sequence and not wrote_ds:
                        out.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}{nl}")
                        wrote_ds = True
                elif not wrote_ds:
                    out.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}{nl}")
                    wrote_ds = True
                continue
            out.append(line)
        if not any(line.startswith("#EXT-X-MEDIA-SEQUENCE:") for line in out):
            out.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}{nl}")
            if self._discontinuity_sequence and not wrote_ds:
                out.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}{nl}")
        for seg in self._segs:
            if seg.discontinuity and _DISCONTINUITY not in seg.text:
                out.append(_DISCONTINUITY + nl)
            out.append(seg.text)
        out.extend(self._trailer)
        self._rendered = "".join(out).encode()
        return self._rendered
