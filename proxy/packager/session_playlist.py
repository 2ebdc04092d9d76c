"""What one muxer session's playlist says: the rendered bytes, and with hls.timeshift the listed window.

``PlaylistRenderer`` turns listed entries into the playlist and its delta update (plain, or LL-HLS
with the parts and the live edge), reusing the rendered segment lines between rebuilds.
``TimeshiftListing`` lists the timeshift window (older segments from disk, the newest from memory)
with the guide's programme marks, and the start-over variant (``EXT-X-START`` at the current
programme's start), built once per rebuild. Both belong to a ``Muxer``, which passes in what they
need at each rebuild; neither holds a reference to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from proxy.packager.ll_playlist import LiveEdge, PartEntry, ll_media_playlist
from proxy.packager.parts import PartCutter
from proxy.packager.playlist import PlaylistEntry, media_playlist
from proxy.packager.programmes import (
    ProgrammeTracker,
    StartPoint,
    daterange_tags,
    programme_start,
    start_tag,
)
from proxy.packager.segment import Segment
from proxy.packager.timeshift import ChannelTimeshift, DiskSegment

__all__ = ["PlaylistRenderer", "TimeshiftListing", "Writer"]

#: ``(entries, discontinuity sequence, tags) -> (playlist, delta update)``: the muxer's renderer call
Writer = Callable[[list[PlaylistEntry], int, Sequence[str]], tuple[bytes, bytes]]


class PlaylistRenderer:
    """Playlist bytes of one session; ``part_uri(sequence, index)`` signs a part's URL."""

    def __init__(self, parts: PartCutter, *, low_latency: bool, part_target: float,
                 part_uri: Callable[[int, int], str]) -> None:
        self._parts = parts
        self._low_latency = low_latency
        self._part_target = part_target
        self._part_uri = part_uri
        #: rendered segment lines of the listed window, reused at every rebuild (playlist.Blocks)
        self._blocks: dict[PlaylistEntry, str] = {}

    def write(self, entries: list[PlaylistEntry], discontinuity_sequence: int, tags: Sequence[str] = (), *,
              target: int, ended: bool, live: bool, current: Segment | None,
              next_sequence: int) -> tuple[bytes, bytes]:
        """The playlist and its delta update (the same bytes without low latency), with ``tags``
        (EXT-X-START, EXT-X-DATERANGE) for the timeshift window. ``live``: neither ended nor failed;
        ``current`` is the growing segment."""
        if len(self._blocks) > 2 * len(entries) + 64:  # bounded by the listed window
            self._blocks = {e: self._blocks[e] for e in entries if e in self._blocks}
        if not self._low_latency:
            body = media_playlist(entries, target=target, ended=ended,
                                  discontinuity_sequence=discontinuity_sequence, tags=tags, blocks=self._blocks)
            return body, body
        return self._write_ll(entries, discontinuity_sequence, tags, target=target, ended=ended, live=live,
                              current=current, next_sequence=next_sequence)

    def _write_ll(self, entries: list[PlaylistEntry], discontinuity_sequence: int, tags: Sequence[str], *,
                  target: int, ended: bool, live: bool, current: Segment | None,
                  next_sequence: int) -> tuple[bytes, bytes]:
        parts = {sequence: [PartEntry(p.duration, p.uri, p.independent) for p in listed]
                 for sequence, listed in self._parts.parts.items()}
        edge: LiveEdge | None = None
        if live:
            sequence = current.sequence if current is not None else next_sequence
            growing = [PartEntry(p.duration, p.uri, p.independent) for p in self._parts.parts.get(sequence, [])]
            edge = LiveEdge(sequence, current.wall_clock if current is not None else time.time(), growing,
                            self._part_uri(sequence, len(growing)),
                            discontinuity=current.discontinuity if current is not None else False)
            if entries and sequence != entries[-1].sequence + 1:
                edge = None  # evicted segments at the end of the window (a store under pressure)

        def build(skip: bool) -> bytes:
            return ll_media_playlist(entries, parts, target=target, part_target=self._part_target,
                                     edge=edge, discontinuity_sequence=discontinuity_sequence, ended=ended,
                                     skip=skip, tags=tags, blocks=self._blocks)

        return build(False), build(True)


class TimeshiftListing:
    """The timeshift window of one session, its programme marks and its start-over variant."""

    def __init__(self, channel_id: int, timeshift: ChannelTimeshift, programmes: ProgrammeTracker | None, *,
                 first_sequence: int, discontinuity_sequence: int, write: Writer) -> None:
        self._channel_id = channel_id
        self._timeshift = timeshift
        self._programmes = programmes
        self._write = write
        self._discontinuity_start = discontinuity_sequence
        #: the first listed sequence never goes down, even if a disk write lagged
        self._listed_floor = first_sequence
        self.listed: list[PlaylistEntry] = []
        self._dateranges: list[str] = []
        self._discontinuity_listed = discontinuity_sequence
        self._start_playlist: tuple[bytes, bytes] | None = None
        self._start_point = StartPoint(0.0, False, None)

    def rebuild(self, segments: list[Segment], next_sequence: int) -> tuple[bytes, bytes]:
        """The whole timeshift window: older segments from disk, the newest (``segments``, the
        muxer's window) from memory; returns the playlist and its delta update."""
        timeshift = self._timeshift
        window = [s for s in segments if not s.evicted]
        older: list[DiskSegment] = []
        if window:
            older = [r for r in timeshift.listed_before(window[0].sequence) if r.sequence >= self._listed_floor]
        entries = [PlaylistEntry(r.sequence, r.duration, r.program_date_time, r.uri, r.discontinuity)
                   for r in older]
        entries += [PlaylistEntry(s.sequence, s.duration or 0.0, s.wall_clock, s.uri, s.discontinuity)
                    for s in window]
        if entries:
            self._listed_floor = entries[0].sequence
        first = entries[0].sequence if entries else next_sequence
        # tags of this session's segments that left the listed window count (RFC 8216bis 4.4.3.3)
        left = timeshift.left_discontinuities + sum(
            1 for r in timeshift.records if r.sequence < first and r.discontinuity)
        self.listed = entries
        self._discontinuity_listed = self._discontinuity_start + left
        programmes = self._programmes.programmes if self._programmes is not None else ()
        self._dateranges = daterange_tags(self._channel_id, programmes, entries)
        playlists = self._write(entries, self._discontinuity_listed, self._dateranges)
        self._start_playlist = None
        return playlists

    def start_point(self, *, target: int, ended: bool) -> StartPoint:
        """Where ``?start=programme`` begins in the current playlist."""
        self.start_over(target=target, ended=ended)
        return self._start_point

    def start_over(self, *, target: int, ended: bool) -> tuple[bytes, bytes]:
        """The playlist (and its delta update) with ``EXT-X-START`` at the current programme's start,
        built once per rebuild."""
        if self._start_playlist is None:
            current = self._programmes.current() if self._programmes is not None else None
            # RFC 8216bis 4.4.2.2: a live playlist's start SHOULD NOT be within three target durations of its end
            self._start_point = programme_start(current, self.listed,
                                                hold_back=0.0 if ended else 3.0 * target)
            self._start_playlist = self._write(self.listed, self._discontinuity_listed,
                                               [start_tag(self._start_point), *self._dateranges])
        return self._start_playlist
