"""Start over: the guide's programmes of a timeshifted channel, as playlist tags.

:class:`ProgrammeTracker` keeps the programmes around now of one channel (NextPVR's
``channel.listings``, the source of the XMLTV guide), fetched in the background when the session
starts and again when the current programme ends, so the playlist never waits on NextPVR.

The pure half writes what RFC 8216bis gives for it:

- ``EXT-X-DATERANGE`` (4.4.5.1) per programme that *starts* inside the listed window: ``ID`` is
  stable (the channel and the guide's event id and start), ``CLASS`` names these ranges,
  ``START-DATE`` / ``DURATION`` from the guide, ``X-TITLE`` the programme's title (a quoted-string
  cannot hold ``"``, CR or LF: those are replaced). Nothing else of the guide is copied.
- ``EXT-X-START:TIME-OFFSET=-<s>,PRECISE=YES`` (4.4.2.2) for ``?start=programme``: counted from the
  end of the playlist, so the point stays the programme's start while the window slides between
  the player's load and its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from proxy.errors import ProxyError

__all__ = ["DATERANGE_CLASS", "ListingSource", "Programme", "ProgrammeTracker", "StartPoint", "daterange_tags",
           "programme_start", "start_tag"]

log = logging.getLogger("proxy.packager")

DATERANGE_CLASS: Final = "org.nextpvr-hls-proxy.programme"
#: programmes kept per channel (a day of half-hour shows and more)
_MAX_PROGRAMMES: Final = 64
#: look this far ahead of now for the next boundaries
_AHEAD: Final = 6 * 3600.0
#: refetch at least this often (a guide that changed) and at most this often (a guide with gaps)
_REFRESH_MAX: Final = 1800.0
_REFRESH_MIN: Final = 30.0
_RETRY: Final = 60.0
_UNQUOTABLE = re.compile(r'["\r\n\x00-\x1f\x7f]+')


class _Listing(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


ListingSource = Callable[[int, float, float], Awaitable[Sequence[_Listing]]]


@dataclass(frozen=True, slots=True)
class Programme:
    event_id: int
    title: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class StartPoint:
    """Where ``?start=programme`` begins: ``offset`` seconds before the playlist's end."""

    offset: float
    #: False: the window does not reach back to the programme's start (playback starts at the oldest segment)
    held: bool
    programme: Programme | None


class ProgrammeTracker:
    """The programmes of one channel around now, refreshed in the background."""

    def __init__(self, channel_id: int, listings: ListingSource, *, lookback: float,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time) -> None:
        self.channel_id = channel_id
        self._listings = listings
        self._lookback = lookback
        self._on_change = on_change
        self._clock = clock
        self.programmes: tuple[Programme, ...] = ()
        self.fetches = 0
        self._fetched = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"programmes-{self.channel_id}")

    async def wait_fetched(self) -> None:
        """Until the first fetch finished (or failed): for tests, bound it with ``asyncio.timeout``."""
        await self._fetched.wait()

    async def _run(self) -> None:
        while True:
            delay = await self._fetch()
            await asyncio.sleep(delay)

    async def _fetch(self) -> float:
        now = self._clock()
        try:
            found = await self._listings(self.channel_id, now - self._lookback, now + _AHEAD)
        except ProxyError as exc:
            log.info("channel %d: no guide for start-over marks (%s); retrying", self.channel_id, exc.message)
            self._fetched.set()
            return _RETRY
        except Exception:  # the marks are an extra: never let a surprise end the refreshes
            log.exception("channel %d: reading the guide for start-over marks failed; retrying", self.channel_id)
            self._fetched.set()
            return _RETRY
        wanted = sorted((p for p in found if p.end > now - self._lookback and p.end > p.start),
                        key=lambda p: p.start)[:_MAX_PROGRAMMES]
        programmes = tuple(Programme(p.id, p.title, float(p.start), float(p.end)) for p in wanted)
        self.fetches += 1
        if programmes != self.programmes:
            self.programmes = programmes
            self._on_change()
        self._fetched.set()
        current = self.current(now)
        until = (current.end - now) if current is not None else _REFRESH_MIN
        return min(max(until + 1.0, _REFRESH_MIN), _REFRESH_MAX)

    def current(self, now: float | None = None) -> Programme | None:
        when = self._clock() if now is None else now
        return next((p for p in self.programmes if p.start <= when < p.end), None)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class _Timed(Protocol):
    @property
    def duration(self) -> float: ...
    @property
    def program_date_time(self) -> float: ...


def _date_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _quoted(text: str) -> str:
    return _UNSAFE_SPACES.sub(" ", _UNQUOTABLE.sub(" ", text.replace('"', "'"))).strip()


_UNSAFE_SPACES = re.compile(r"\s{2,}")


def daterange_tags(channel_id: int, programmes: Sequence[Programme], entries: Sequence[_Timed]) -> list[str]:
    """An ``EXT-X-DATERANGE`` per programme starting within the listed segments."""
    if not entries:
        return []
    first = entries[0].program_date_time
    last = entries[-1].program_date_time + entries[-1].duration
    tags = []
    for p in programmes:
        if first <= p.start < last:
            tags.append(f'#EXT-X-DATERANGE:ID="programme-{channel_id}-{p.event_id}-{int(p.start)}",'
                        f'CLASS="{DATERANGE_CLASS}",START-DATE="{_date_time(p.start)}",'
                        f'DURATION={p.end - p.start:.3f},X-TITLE="{_quoted(p.title)}"')
    return tags


def programme_start(current: Programme | None, entries: Sequence[_Timed], *, hold_back: float = 0.0) -> StartPoint:
    """Where the current programme begins in the listed segments, as an offset from the end (at
    least ``hold_back``: a programme that began moments ago starts that far from the end).

    Positions follow the segments' EXTINF (media time): the wall clock of a segment's first byte
    (its PDT) places the programme's start inside that segment."""
    point = _programme_start(current, entries)
    total = sum(e.duration for e in entries)
    return dataclasses.replace(point, offset=max(point.offset, min(hold_back, total)))


def _programme_start(current: Programme | None, entries: Sequence[_Timed]) -> StartPoint:
    total = sum(e.duration for e in entries)
    if current is None or not entries:
        return StartPoint(total, False, current)
    if current.start < entries[0].program_date_time:
        # it began before the oldest listed segment: the window does not reach back that far
        return StartPoint(total, False, current)
    position = 0.0
    for entry in entries:
        if entry.program_date_time + entry.duration > current.start:
            # (a start between two segments' wall clocks falls at the later one's beginning)
            into = min(max(current.start - entry.program_date_time, 0.0), entry.duration)
            return StartPoint(total - position - into, True, current)
        position += entry.duration
    return StartPoint(0.0, True, current)


def start_tag(point: StartPoint) -> str:
    return f"#EXT-X-START:TIME-OFFSET={-point.offset:.3f},PRECISE=YES"
