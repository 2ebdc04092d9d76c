"""Where packaged segments live: in memory, once for every viewer, bounded in bytes.

Each muxing session has its own shelf (segments in sequence order). A shelf keeps at most
``keep`` segments (the listed window plus as many again: RFC 8216bis 6.2.2 wants a segment to stay
available for a while after it left the playlist) and at most ``channel_bytes``; all shelves
together hold at most ``total_bytes``, evicting the oldest complete segment of any shelf first.
A segment being written is never evicted. Asking for an evicted segment finds nothing (404).

The interface (``add``, ``get``, ``drop``, ``evicted`` callbacks) is small on purpose: a disk
timeshift store can stand behind it later.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from proxy.packager.segment import Segment

__all__ = ["SegmentStore"]


class SegmentStore:
    def __init__(self, *, channel_bytes: int, total_bytes: int,
                 on_evict: Callable[[Segment], None] = lambda segment: None) -> None:
        self.channel_bytes = channel_bytes
        self.total_bytes = total_bytes
        self._on_evict = on_evict
        self._shelves: dict[str, OrderedDict[int, Segment]] = {}
        self._bytes: dict[str, int] = {}
        self._total = 0

    @property
    def bytes(self) -> int:
        """Bytes held now (growing segments included)."""
        return self._total

    def shelf_bytes(self, session: str) -> int:
        return self._bytes.get(session, 0)

    def open(self, session: str) -> None:
        self._shelves.setdefault(session, OrderedDict())
        self._bytes.setdefault(session, 0)

    def add(self, session: str, segment: Segment) -> None:
        """Shelve a new (usually still growing) segment."""
        self._shelves[session][segment.sequence] = segment

    def refresh(self, session: str, *, keep: int) -> None:
        """Account what ``session``'s segments grew by and evict until every bound holds.

        Summing a shelf (a dozen segments) per chunk is cheaper than hooking every append."""
        shelf = self._shelves[session]
        size = sum(segment.size for segment in shelf.values())
        self._total += size - self._bytes[session]
        self._bytes[session] = size
        while len(shelf) > keep or self._bytes[session] > self.channel_bytes:
            if not self._evict_oldest(session):
                break
        while self._total > self.total_bytes:
            victim = min((s for s in self._shelves if self._evictable(s)),
                         key=lambda s: next(iter(self._shelves[s].values())).wall_clock, default=None)
            if victim is None or not self._evict_oldest(victim):
                break

    def get(self, session: str, sequence: int) -> Segment | None:
        shelf = self._shelves.get(session)
        return shelf.get(sequence) if shelf is not None else None

    def segments(self, session: str) -> list[Segment]:
        return list(self._shelves.get(session, {}).values())

    def drop(self, session: str) -> None:
        """The session is over: free everything it holds."""
        shelf = self._shelves.pop(session, None)
        self._total -= self._bytes.pop(session, 0)
        for segment in (shelf or {}).values():
            segment.evict()

    def _evictable(self, session: str) -> bool:
        shelf = self._shelves[session]
        return bool(shelf) and next(iter(shelf.values())).complete

    def _evict_oldest(self, session: str) -> bool:
        if not self._evictable(session):
            return False
        _, segment = self._shelves[session].popitem(last=False)
        self._bytes[session] -= segment.size
        self._total -= segment.size
        segment.evict()
        self._on_evict(segment)
        return True
