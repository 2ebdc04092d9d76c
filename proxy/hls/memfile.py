"""Finished segments in anonymous memory files, so they can be sent with ``sendfile(2)``.

Writing a cached segment to a socket from Python costs a copy from our memory into the kernel per
viewer, plus (asyncio 3.11) a second copy of whatever the socket did not take at once into the
transport's buffer; serving 200 viewers of a channel, ``transport.write`` was ~47 % of the event loop
(benchmarks/README.md, "zero-copy"). A segment in a ``memfd`` (shmem pages, like a file on
``/dev/shm``) goes to the socket with ``sendfile``: the kernel hands the pages to TCP without a copy
and nothing waits in our buffers, however slow the viewer.

A memfd has no name in any directory, so nothing is left behind when the process dies (SIGKILL
included), and its pages are freed when the last descriptor closes. The files hold exactly the
bytes the segment cache counts (``hls.segment_cache_bytes`` bounds them as before); their number is
bounded too (one descriptor each). A file that is evicted while a response is still sending from it
is closed when that response is done (:meth:`MemFile.release`), never under it.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Sequence
from typing import BinaryIO

__all__ = ["MemFile", "max_files", "supported"]

#: below this a segment stays in memory: one write is cheaper than a sendfile call
MIN_FILE_BYTES = 64 * 1024
#: at most this many files (descriptors) however large the cache; also at most a quarter of the
#: process's descriptor limit, so sockets always have room
_MAX_FILES = 1024


def supported(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether segments can go out with ``sendfile``: Linux's memfd and asyncio's own selector loop
    (its ``loop.sendfile`` uses ``os.sendfile``; uvloop has no sendfile, so it keeps the chunks)."""
    from asyncio.selector_events import BaseSelectorEventLoop

    return hasattr(os, "memfd_create") and hasattr(os, "sendfile") and isinstance(loop, BaseSelectorEventLoop)


def max_files() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_FILES
    return max(0, min(_MAX_FILES, soft // 4))


class MemFile:
    """One segment's bytes in a memfd; shared by every response sending it."""

    __slots__ = ("_dropped", "_users", "file", "size")

    def __init__(self, chunks: Sequence[bytes], size: int) -> None:
        fd = os.memfd_create("nextpvr-segment", os.MFD_CLOEXEC)
        # unbuffered, binary: loop.sendfile wants fileno() and a "b" mode, and we never read through it
        self.file: BinaryIO = os.fdopen(fd, "r+b", buffering=0)
        self.size = size
        self._users = 0
        self._dropped = False
        try:
            written = 0
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    written += n
                    view = view[n:]
            if written != size:
                raise OSError(f"wrote {written} of {size} bytes")
        except BaseException:
            self.file.close()
            raise

    def fileno(self) -> int:
        return self.file.fileno()

    def read(self) -> bytes:
        """The whole segment (for byte ranges and senders that cannot use sendfile): a copy."""
        return os.pread(self.file.fileno(), self.size, 0)

    def acquire(self) -> bool:
        """A response starts sending from the file: it stays open until :meth:`release`. False when
        the file was already closed (evicted, and its last sender done): nothing to send from."""
        if self.file.closed:
            return False
        self._users += 1
        return True

    def release(self) -> None:
        self._users -= 1
        if self._dropped and self._users == 0:
            self.file.close()

    def drop(self) -> bool:
        """The cache let go of the segment: close now, or when the last sender is done. True the
        first time (the cache counts its files by it)."""
        if self._dropped:
            return False
        self._dropped = True
        if self._users == 0:
            self.file.close()
        return True

    @property
    def closed(self) -> bool:
        return self.file.closed
