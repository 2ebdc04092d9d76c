"""Sending a segment's memory file (``proxy/hls/memfile.py``) to a client with ``sendfile(2)``.

The kernel hands the file's pages to TCP without a copy through Python and nothing waits in the
transport's buffer, however slow the client (benchmarks/README.md, "zero-copy"). The socket is
watched through a ``dup()`` of its descriptor, registered once per response: asyncio's own
``loop.sendfile`` unregisters and re-registers the transport's socket around every call and every
EAGAIN, which cost more than it saved. ``server.send_timeout`` is enforced by one timer per
response: no progress for that long closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from aiohttp import web

from proxy.hls.memfile import MemFile

__all__ = ["FileSender", "cork", "send_file"]

log = logging.getLogger("proxy.relay")


def cork(sock: socket.socket, on: bool) -> bool:
    """TCP_CORK (nginx's ``tcp_nopush``) from before the headers to the first sendfile: the headers
    leave in the first full-sized packet of the body instead of a small packet of their own
    (asyncio sets TCP_NODELAY); uncorked right after, so the rest goes out as usual."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)
    except OSError:  # the client went away meanwhile, or no TCP_CORK here
        return False
    return True


async def send_file(request: web.Request, file: MemFile, send_timeout: float, *,
                    corked: bool = False) -> bool | None:
    """The file's bytes with ``sendfile(2)`` straight to the client's socket, after the response's
    headers; True when all went out. A client that went away, or took nothing for ``send_timeout`` s,
    has its connection closed (False): the response is over, there is nobody to tell. None: nothing
    was sent because the headers still wait in the transport's buffer (write the bytes instead)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if transport is None or sock is None or transport.is_closing():
        return False
    if transport.get_write_buffer_size():
        if corked:
            cork(sock, False)
        return None
    # a descriptor of our own for the same socket: the loop watches it for writability while the
    # transport keeps its own registration (asyncio's loop.sendfile instead unregisters and
    # re-registers the socket around every call and every EAGAIN: ~10 % of the loop serving 200 viewers)
    fd = os.dup(sock.fileno())
    sender = FileSender(asyncio.get_running_loop(), fd, file, send_timeout)
    try:
        started = sender.start()
        if corked:
            cork(sock, False)
            corked = False
        await started
        return True
    except TimeoutError:
        log.info("%s: client accepted nothing for %.0fs; disconnecting it", request.path[:40], send_timeout)
        transport.abort()
        return False
    except OSError:  # peer reset, broken pipe
        transport.abort()
        return False
    finally:
        if corked:
            cork(sock, False)
        sender.stop()
        os.close(fd)


class FileSender:
    """One ``sendfile`` transfer driven by writability callbacks; fails when nothing moved for
    ``timeout`` seconds (checked twice per timeout by one timer, as relay.py's ``_SendGuard`` does)."""

    __slots__ = ("fd", "file", "future", "last", "loop", "offset", "timeout", "timer", "watching")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, file: MemFile, timeout: float) -> None:
        self.loop = loop
        self.fd = fd
        self.file = file
        self.timeout = timeout
        self.offset = 0
        self.last = loop.time()
        self.future: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.watching = False

    def start(self) -> asyncio.Future[None]:
        self._step()  # often most of it fits at once
        if not self.future.done():
            self.loop.add_writer(self.fd, self._step)
            self.watching = True
            self.timer = self.loop.call_later(self.timeout / 2, self._check)
        return self.future

    def _step(self) -> None:
        if self.future.done():
            return
        size = self.file.size
        try:
            while self.offset < size:
                want = size - self.offset
                sent = os.sendfile(self.fd, self.file.fileno(), self.offset, want)
                if sent == 0:
                    raise ConnectionResetError("sendfile sent nothing")
                self.offset += sent
                self.last = self.loop.time()
                if sent < want:
                    return  # the socket's buffer is full: wait until it is writable again
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.future.set_exception(exc)
            self.stop()
            return
        self.future.set_result(None)
        self.stop()

    def _check(self) -> None:
        self.timer = None
        if self.future.done():
            return
        if self.loop.time() - self.last >= self.timeout:
            self.future.set_exception(TimeoutError())
            self.stop()
            return
        self.timer = self.loop.call_later(self.timeout / 2, self._check)

    def stop(self) -> None:
        if self.watching:
            self.watching = False
            self.loop.remove_writer(self.fd)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
