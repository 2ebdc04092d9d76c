"""Cached segments in memory files (memfd), sent with sendfile (issue 15; proxy/hls/memfile.py).

Against the real proxy app and the emulator on 127.0.0.1, with raw sockets where a client must
stall: the bytes are the segment's, byte ranges work, a file the cache evicts stays open until the
response sending from it is done, a client that stops reading is cut off after server.send_timeout,
and no memory file outlives the app.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.hls import memfile
from proxy.keys import SEGMENTS_KEY
from tests.conftest import EmulatorFactory, ProxyFactory, app_of, uris

CHANNEL = 7181
SEND_TIMEOUT = 1.0


def memfds() -> int:
    """This process's open memory files of the segment cache."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("/memfd:nextpvr-segment"):
                count += 1
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    return count


async def segments(proxy: TestClient[Any, Any], count: int) -> list[str]:
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8")
    assert resp.status == 200
    paths = [u for u in uris(await resp.text()) if u.startswith("/hls/")]
    assert len(paths) >= count, paths
    return paths[:count]


async def stalled_get(proxy: TestClient[Any, Any], path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                                       int]:
    """A GET from a client that reads the head and then nothing: a 4 KiB receive buffer and a real
    MSS (so the proxy's send buffer stays small too). The body's Content-Length."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (proxy.host, proxy.port))
    # a small stream buffer too: asyncio would otherwise read up to 128 KiB ahead for the client
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return reader, writer, length


def file_of(proxy: TestClient[Any, Any], size: int) -> memfile.MemFile:
    """The memory file of the cached segment of ``size`` bytes that a response is sending from."""
    cache = app_of(proxy)[SEGMENTS_KEY]
    found = [e.file for e in cache._lru.values() if e.file is not None and e.size == size and e.file._users]
    assert len(found) == 1, "no memory file is being sent from: the segment did not go out with sendfile"
    return found[0]


async def test_cached_segments_go_out_of_memory_files_with_their_own_bytes(
        emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory()
    before = memfds()
    proxy = await proxy_factory(emu)
    paths = await segments(proxy, 2)
    first = [await (await proxy.get(p)).read() for p in paths]  # the fetch (from the download's chunks)
    assert all(len(b) >= memfile.MIN_FILE_BYTES for b in first), [len(b) for b in first]
    # both cached segments moved into memory files (and any the proxy prefetched meanwhile)
    files = app_of(proxy)[SEGMENTS_KEY].files
    assert files >= 2 and memfds() == before + files
    for path, body in zip(paths, first, strict=True):
        again = await proxy.get(path)
        assert again.status == 200 and again.headers["Content-Length"] == str(len(body))
        assert await again.read() == body  # the cached bytes, from the file
        part = await proxy.get(path, headers={"Range": "bytes=100-1099"})
        assert part.status == 206 and await part.read() == body[100:1100]
        assert part.headers["Content-Range"] == f"bytes 100-1099/{len(body)}"
    await proxy.close()
    assert memfds() == before  # the app's cleanup closed every file


async def test_an_evicted_file_stays_open_until_its_response_is_sent(
        emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory) -> None:
    # long segments (~0.4 MB): more than the kernel's buffers take for a client that reads nothing
    emu = await emulator_factory(segment_seconds=10)
    before = memfds()
    probe = await proxy_factory(emu)
    size = len(await (await probe.get((await segments(probe, 1))[0])).read())
    await probe.close()
    # a cache that holds one segment: caching the next evicts the one before
    # (no prefetching: only the requests below decide what the cache holds)
    proxy = await proxy_factory(emu, **{"hls.segment_cache_bytes": size + size // 2, "hls.prefetch": False})
    paths = await segments(proxy, 3)
    body = await (await proxy.get(paths[0])).read()
    reader, writer, length = await stalled_get(proxy, paths[0])
    try:
        assert length == len(body)
        sending = file_of(proxy, len(body))
        for path in paths[1:]:
            assert (await (await proxy.get(path)).read())
        cache = app_of(proxy)[SEGMENTS_KEY]
        assert all(e.file is not sending for e in cache._lru.values()), "the first segment was not evicted"
        assert not sending.closed  # evicted, but a response still sends from it
        rest = await reader.readexactly(length)  # the client reads again: the whole segment arrives
        assert rest == body
    finally:
        writer.close()
    # the response is done: the evicted file is closed, and only the cached one is left
    await proxy.get("/healthz")  # a request after it, so its handler has surely returned
    assert sending.file.closed
    assert memfds() == before + app_of(proxy)[SEGMENTS_KEY].files


async def test_a_client_that_stops_reading_a_file_backed_segment_is_cut_off(
        emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(segment_seconds=10)  # segments larger than the kernel's buffers
    proxy = await proxy_factory(emu, **{"server.send_timeout": SEND_TIMEOUT})
    (path,) = await segments(proxy, 1)
    body = await (await proxy.get(path)).read()
    reader, writer, length = await stalled_get(proxy, path)
    try:
        sending = file_of(proxy, len(body))
        # the client takes nothing for three send timeouts: what the proxy must not wait out forever
        await asyncio.sleep(3 * SEND_TIMEOUT)
        received = b""
        # bounded generously (the proxy must already have given up; this only reads what was queued)
        async with asyncio.timeout(10):
            try:
                while len(received) < length and (chunk := await reader.read(65536)):
                    received += chunk
            except ConnectionResetError:
                pass
        assert len(received) < length, "the stalled client got the whole segment: it was never cut off"
        assert received == body[:len(received)]
        assert sending._users == 0  # the response released its file
    finally:
        writer.close()
