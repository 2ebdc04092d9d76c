"""Child processes for tests that run the real command line: free ports, line waits, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    """A running child whose stdout+stderr is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def wait_for_line(self, needle: str, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    pytest.fail(f"process ended before printing {needle!r}: {self.lines[-20:]}")
                line = raw.decode(errors="replace").rstrip()
                self.lines.append(line)
                if needle in line:
                    return line

    async def terminate(self, timeout: float = 20) -> int:
        """SIGTERM, then the exit code (the rest of its output lands in ``lines``)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            rest, _ = await self.proc.communicate()
        self.lines += rest.decode(errors="replace").splitlines()
        return self.proc.returncode if self.proc.returncode is not None else -1


@contextlib.asynccontextmanager
async def spawn(argv: list[str], env: dict[str, str] | None = None) -> AsyncIterator[Proc]:
    """Start ``argv`` in the repository root; killed on exit if it is still running."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    wrapped = Proc(proc)
    try:
        yield wrapped
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
