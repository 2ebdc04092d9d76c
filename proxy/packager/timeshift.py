"""Timeshift: every completed segment of a watched channel on disk, for pause, rewind and start-over.

``hls.timeshift`` > 0 turns it on. Each muxing session gets a folder of its own (removed when the
session stops; the whole run's folder is removed on shutdown, and the folders of earlier runs
whose process is gone are removed at start). What stays in memory per segment is one
:class:`DiskSegment` record (numbers, the signed URI and the file name: a few hundred bytes),
so the proxy's memory does not grow with the window; the bytes live in the files only.

Writes and deletions run off the event loop (the default executor), one at a time in order, from
a queue bounded in bytes (``_PENDING_BYTES``). A segment that does not fit in the queue (the disk
is slower than the stream) is not kept, and every older record goes with it: the listed window
must have no gaps, so it restarts after the lost segment.

Oldest segments leave first: a channel keeps at most ``window`` seconds and ``channel_bytes``;
all channels together at most ``total_bytes`` (then the oldest segment of any channel leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from proxy.packager.segment import Segment

__all__ = ["ChannelTimeshift", "DiskSegment", "TimeshiftStore", "default_root"]

log = logging.getLogger("proxy.packager")

#: bytes handed to the writer and not written yet (the segments' own buffers, not copies)
_PENDING_BYTES: Final = 64 * 1024 * 1024
#: the run folders' names; each holds a lock file its process keeps locked
_RUN_PREFIX: Final = "run-"
_LOCK: Final = ".lock"


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / "nextpvr-proxy-timeshift"


@dataclass(slots=True)
class DiskSegment:
    """One segment kept on disk: everything the playlist and the file response need."""

    sequence: int
    duration: float
    program_date_time: float
    uri: str
    name: str
    size: int
    discontinuity: bool
    written: bool = False
    gone: bool = False


class ChannelTimeshift:
    """One muxing session's segments on disk, oldest first."""

    def __init__(self, store: TimeshiftStore, session: str, folder: Path) -> None:
        self._store = store
        self.session = session
        self.folder = folder
        self.records: deque[DiskSegment] = deque()
        self._by_sequence: dict[int, DiskSegment] = {}
        self.bytes = 0
        self.seconds = 0.0
        #: EXT-X-DISCONTINUITY tags of segments that left the window
        self.left_discontinuities = 0
        self.closed = False
        self._behind = False

    def add(self, segment: Segment) -> None:
        """Keep a completed segment (called when the muxer lists it)."""
        if self.closed or not segment.complete:
            return
        record = DiskSegment(segment.sequence, segment.duration or 0.0, segment.wall_clock, segment.uri,
                             segment.name, segment.size, segment.discontinuity)
        if not self._store.write(self, record, segment.data()):
            if not self._behind:
                log.warning("channel session %s: the timeshift disk is behind the stream; segments are lost "
                            "and the window restarts after each", self.session)
            self._behind = True
            self.left_discontinuities += segment.discontinuity
            while self.records:
                self.evict_oldest()
            return
        self._behind = False
        self.records.append(record)
        self._by_sequence[record.sequence] = record
        self.bytes += record.size
        self.seconds += record.duration
        self._store.account(record.size)
        window, limit = self._store.window, self._store.channel_bytes
        while len(self.records) > 1 and (self.seconds > window or self.bytes > limit):
            self.evict_oldest()
        self._store.enforce_total()

    def evict_oldest(self) -> None:
        record = self.records.popleft()
        del self._by_sequence[record.sequence]
        self.bytes -= record.size
        self.seconds -= record.duration
        self.left_discontinuities += record.discontinuity
        record.gone = True
        self._store.account(-record.size)
        self._store.delete(self.folder / record.name)

    def find(self, sequence: int) -> DiskSegment | None:
        """The record of a segment whose file is complete on disk, or None."""
        record = self._by_sequence.get(sequence)
        return record if record is not None and record.written and not record.gone else None

    def listed_before(self, sequence: int) -> list[DiskSegment]:
        """The written records just before ``sequence``, without gaps (the older part of the playlist)."""
        out: list[DiskSegment] = []
        expected = sequence - 1
        for record in reversed(self.records):
            if record.sequence > expected:
                continue
            if record.sequence != expected or not record.written:
                break
            out.append(record)
            expected -= 1
        out.reverse()
        return out

    def path(self, record: DiskSegment) -> Path:
        return self.folder / record.name

    def close(self) -> None:
        """The session is over: forget the records and remove the folder."""
        if self.closed:
            return
        self.closed = True
        self._store.account(-self.bytes)
        for record in self.records:
            record.gone = True
        self.records.clear()
        self._by_sequence.clear()
        self.bytes = 0
        self._store.forget(self)


class TimeshiftStore:
    """The timeshift folders of one proxy process, and the one writer that fills them."""

    def __init__(self, root: Path, *, window: float, channel_bytes: int, total_bytes: int,
                 pending_bytes: int = _PENDING_BYTES) -> None:
        self.root = root
        self.window = window
        self.channel_bytes = channel_bytes
        self.total_bytes = total_bytes
        self._pending_limit = pending_bytes
        self.run_folder = root / f"{_RUN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._channels: dict[str, ChannelTimeshift] = {}
        #: (work for the executor, what to do on the loop once it ran)
        self._ops: deque[tuple[Callable[[], None], Callable[[bool], None] | None]] = deque()
        self._lock: int | None = None
        self._pending = 0
        self._total = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def stored_bytes(self) -> int:
        """Bytes of the segments kept on disk now (all channels)."""
        return self._total

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def channels(self) -> list[ChannelTimeshift]:
        return list(self._channels.values())

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)
        self._task = asyncio.get_running_loop().create_task(self._writer(), name="timeshift-writer")

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(f"{_RUN_PREFIX}*"):
            if stale.is_dir() and _abandoned(stale):
                log.info("timeshift: removing %s, left by an earlier run", stale.name)
                shutil.rmtree(stale, ignore_errors=True)
        self.run_folder.mkdir(mode=0o700)
        # held for the life of the process: a later run sees the folder is in use (pids say
        # nothing in a container, where every run is pid 1)
        self._lock = os.open(self.run_folder / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def open(self, session: str) -> ChannelTimeshift:
        folder = self.run_folder / session
        channel = ChannelTimeshift(self, session, folder)
        self._channels[session] = channel
        self._queue(lambda: folder.mkdir(mode=0o700, exist_ok=True))
        return channel

    # -- called by ChannelTimeshift ---------------------------------------------------------------------

    def write(self, channel: ChannelTimeshift, record: DiskSegment, data: bytes) -> bool:
        if self._pending + len(data) > self._pending_limit:
            return False
        self._pending += len(data)
        path = channel.folder / record.name

        def write() -> None:
            if not record.gone:
                path.write_bytes(data)

        def written(ok: bool) -> None:
            self._pending -= len(data)
            # a record whose file failed is never listed (the window restarts after it)
            record.written = ok and not record.gone

        self._queue(write, written)
        return True

    def delete(self, path: Path) -> None:
        self._queue(lambda: path.unlink(missing_ok=True))

    def forget(self, channel: ChannelTimeshift) -> None:
        self._channels.pop(channel.session, None)
        folder = channel.folder
        self._queue(lambda: shutil.rmtree(folder, ignore_errors=True))

    def account(self, delta: int) -> None:
        self._total += delta

    def enforce_total(self) -> None:
        while self._total > self.total_bytes:
            victims = [c for c in self._channels.values() if len(c.records) > 1]
            if not victims:
                return
            min(victims, key=lambda c: c.records[0].program_date_time).evict_oldest()

    # -- the writer -------------------------------------------------------------------------------------

    def _queue(self, op: Callable[[], None], done: Callable[[bool], None] | None = None) -> None:
        self._ops.append((op, done))
        self._idle.clear()
        self._wake.set()

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._ops:
                op, done = self._ops.popleft()
                try:
                    await loop.run_in_executor(None, op)
                except OSError as exc:
                    log.warning("timeshift: disk operation failed: %s", exc)
                    if done is not None:
                        done(False)
                    continue
                if done is not None:
                    done(True)
            self._idle.set()
            self._wake.clear()
            await self._wake.wait()

    async def drain(self) -> None:
        """Wait until every queued write and deletion is done (tests, shutdown)."""
        await self._idle.wait()

    async def close(self) -> None:
        for channel in list(self._channels.values()):
            channel.close()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.drain()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(shutil.rmtree, self.run_folder, True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _abandoned(folder: Path) -> bool:
    """No live process holds the folder's lock (a folder without one is left for a minute: its
    process may be about to take it)."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            return time.time() - folder.stat().st_mtime > 60
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
