"""Optional direct access to recording files when NextPVR's folder is mounted here.

NextPVR reports a recording's ``file`` as a path on *its* machine (``D:\\Recordings\\News\\x.ts``
or ``/recordings/News/x.ts``). ``recordings.path_map`` says where such folders are mounted on
the proxy's machine. :class:`RecordingFiles` turns a reported path into a local file the
handler may serve itself, or None: then the handler streams from NextPVR as if no mapping
existed. None is also the answer for a path that is refused, because falling back to
NextPVR exposes nothing NextPVR would not serve anyway, whereas reading a local file
outside the configured folder would.

Matching, decided here:

- ``\\`` and ``/`` are both separators; repeated separators and ``.`` components are
  ignored. A prefix matches whole components only: ``/rec`` never matches
  ``/recordings/...``.
- Windows-style prefixes (a drive letter ``D:`` or a UNC ``\\\\server\\share``) match
  case-insensitively, as Windows does; POSIX prefixes match case-sensitively. The part
  after the prefix keeps its case: the local filesystem decides.
- When several prefixes match, the longest one decides alone (no fall-through).

Refused (None, one warning per distinct path; bounded memory): a NUL byte, a ``..``
component anywhere, a drive-letter component after the prefix, and any path whose real
path (all symlinks followed, :meth:`Path.resolve` with ``strict=True``) is not strictly
inside the real path of the configured folder. A symlink that stays inside the folder is
followed. The returned path is that real path, so the handler opens exactly what was
checked rather than a name whose symlinks could be swapped afterwards.

Missing files, directories and an unmounted folder are None without a warning.

:meth:`RecordingFiles.resolve` blocks (a few ``lstat``/``readlink`` calls, a network mount
can hang). Handlers call :meth:`RecordingFiles.resolve_async`: the textual checks run on
the loop, the filesystem part in the loop's default executor, with at most
``max_blocking`` calls in flight (a hung mount cannot eat the executor that aiohttp's DNS
resolver shares) and a ``timeout`` after which the handler falls back to NextPVR.
"""

from __future__ import annotations

import asyncio
import logging
import re
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from proxy.config import PathMapping

__all__ = ["RecordingFiles"]

log = logging.getLogger("proxy.recordings")

_DRIVE = re.compile(r"[A-Za-z]:")
#: distinct refused paths remembered so each is warned about once
_MAX_WARNED = 1024


@dataclass(frozen=True, slots=True)
class _Split:
    #: "" (relative), "/" (POSIX), "//" (UNC) or a lower-case drive such as "d:"
    anchor: str
    parts: tuple[str, ...]

    @property
    def windows(self) -> bool:
        return self.anchor not in ("", "/")

    def keys(self) -> tuple[str, ...]:
        return tuple(p.casefold() for p in self.parts) if self.windows else self.parts


@dataclass(frozen=True, slots=True)
class _Mapping:
    prefix: _Split
    keys: tuple[str, ...]
    local: Path


def _split(path: str) -> _Split:
    p = path.replace("\\", "/")
    if _DRIVE.match(p):
        anchor, rest = p[:2].lower(), p[2:]
    elif p.startswith("//"):
        anchor, rest = "//", p[2:]
    elif p.startswith("/"):
        anchor, rest = "/", p[1:]
    else:
        anchor, rest = "", p
    return _Split(anchor, tuple(c for c in rest.split("/") if c not in ("", ".")))


def _safe_component(name: str) -> bool:
    if name == ".." or _DRIVE.match(name):
        return False
    # on Windows a component such as "C:" or one with an alternate stream would re-anchor the join
    pure = PurePath(name)
    return not pure.anchor and pure.parts == (name,)


def _consume(future: asyncio.Future[Path | None]) -> None:
    # an abandoned lookup that failed must not be reported as "exception never retrieved"
    if not future.cancelled():
        future.exception()


class RecordingFiles:
    """Maps paths NextPVR reports to files under the configured local folders."""

    def __init__(
        self, mappings: Sequence[PathMapping], *, max_blocking: int = 4, timeout: float = 5.0
    ) -> None:
        if max_blocking < 1 or timeout <= 0:
            raise ValueError("max_blocking must be >= 1 and timeout > 0")
        built: list[_Mapping] = []
        for m in mappings:
            prefix = _split(m.nextpvr)
            if "\x00" in m.nextpvr or ".." in prefix.parts:
                raise ValueError(f"unusable recordings prefix {m.nextpvr!r}")
            if "\x00" in m.local or not Path(m.local).is_absolute():
                raise ValueError(f"recordings folder must be an absolute path, got {m.local!r}")
            built.append(_Mapping(prefix, prefix.keys(), Path(m.local)))
        # most specific first; sorted() is stable, so equal lengths keep the configured order
        self._mappings = sorted(built, key=lambda m: len(m.keys), reverse=True)
        self._timeout = timeout
        self._max_blocking = max_blocking
        self._slots = threading.BoundedSemaphore(max_blocking)
        self._warned: set[tuple[str, str]] = set()
        self._warned_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._mappings)

    def resolve(self, nextpvr_path: str) -> Path | None:
        """The local file for ``nextpvr_path``, or None (stream from NextPVR). Blocks on the filesystem."""
        target = self._match(nextpvr_path)
        return None if target is None else self._check(nextpvr_path, *target)

    async def resolve_async(self, nextpvr_path: str) -> Path | None:
        """:meth:`resolve` without blocking the event loop; None also when the folder is too slow."""
        target = self._match(nextpvr_path)
        if target is None:
            return None
        mapping, rest = target
        if not self._slots.acquire(blocking=False):
            self._warn_once(("busy", str(mapping.local)), "recordings folder %s still has %d lookups "
                            "pending; streaming from NextPVR", mapping.local, self._max_blocking)
            return None
        slots = self._slots

        def job() -> Path | None:
            try:
                return self._check(nextpvr_path, mapping, rest)
            finally:
                # released when the filesystem call really ends, not when the caller gave up
                slots.release()

        try:
            future = asyncio.get_running_loop().run_in_executor(None, job)
        except BaseException:
            slots.release()
            raise
        # an abandoned lookup must not be cancelled while it waits in the executor's queue:
        # it would never run, and its slot would never come back
        future.add_done_callback(_consume)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._timeout)
        except TimeoutError:
            self._warn_once(("slow", str(mapping.local)), "recordings folder %s did not answer within "
                            "%g s; streaming from NextPVR", mapping.local, self._timeout)
            return None

    # -- internals --------------------------------------------------------
    def _match(self, nextpvr_path: str) -> tuple[_Mapping, tuple[str, ...]] | None:
        """The mapping and the components below its prefix; pure, runs on the loop."""
        if not self._mappings:
            return None
        if "\x00" in nextpvr_path:
            self._refuse(nextpvr_path, "contains a NUL byte")
            return None
        path = _split(nextpvr_path)
        if ".." in path.parts:
            self._refuse(nextpvr_path, "contains '..'")
            return None
        keys = path.keys()
        for mapping in self._mappings:
            n = len(mapping.keys)
            if path.anchor == mapping.prefix.anchor and keys[:n] == mapping.keys and len(keys) > n:
                rest = path.parts[n:]
                if not all(_safe_component(c) for c in rest):
                    self._refuse(nextpvr_path, "has an absolute component after the prefix")
                    return None
                return mapping, rest
        return None

    def _check(self, nextpvr_path: str, mapping: _Mapping, rest: tuple[str, ...]) -> Path | None:
        """Follow every symlink and keep the file only if it is still inside the folder."""
        try:
            root = mapping.local.resolve(strict=True)
        except (OSError, RuntimeError):
            log.debug("recordings folder %s is not available", mapping.local)
            return None
        try:
            # RuntimeError: a symlink loop on Python < 3.13
            real = mapping.local.joinpath(*rest).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if real == root or not real.is_relative_to(root):
            self._refuse(nextpvr_path, f"leads outside {mapping.local}")
            return None
        try:
            mode = real.stat().st_mode
        except OSError:
            return None
        return real if stat.S_ISREG(mode) else None

    def _refuse(self, nextpvr_path: str, why: str) -> None:
        self._warn_once(("refused", nextpvr_path),
                        "refusing recording path %r: it %s; streaming from NextPVR", nextpvr_path, why)

    def _warn_once(self, key: tuple[str, str], msg: str, *args: object) -> None:
        with self._warned_lock:
            if key in self._warned:
                return
            if len(self._warned) >= _MAX_WARNED:
                self._warned.clear()
            self._warned.add(key)
        log.warning(msg, *args)
