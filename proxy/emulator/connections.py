"""Media and slow responses that restart() (or their owner) can cut off at once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Iterator

from aiohttp import web

from proxy.emulator.state import EmulatorState

__all__ = ["abortable", "nap", "reset_connection"]


def reset_connection(request: web.Request) -> Callable[[], None]:
    """Abort the connection with a TCP reset, as a crashing or restarting server would."""

    def abort() -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    return abort


@contextlib.contextmanager
def abortable(
    state: EmulatorState, request: web.Request, owner: dict[int, Callable[[], None]] | None = None
) -> Iterator[asyncio.Event]:
    """Make the response abortable by restart() (and by ``owner``); the event is set once aborted."""
    wake = asyncio.Event()
    reset = reset_connection(request)

    def abort() -> None:
        wake.set()
        reset()

    key = state.next_id()
    state.connections[key] = abort
    if owner is not None:
        owner[key] = abort
    try:
        yield wake
    finally:
        state.connections.pop(key, None)
        if owner is not None:
            owner.pop(key, None)


async def nap(wake: asyncio.Event, seconds: float) -> bool:
    """Sleep, unless the stream is aborted first; True when it was."""
    if seconds > 0 and not wake.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
    return wake.is_set()
