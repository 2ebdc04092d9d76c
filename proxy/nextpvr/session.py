"""NextPVR sessions: one sid with single-flight (re-)login, and a pool of them.

NextPVR ties one transcode to one sid (no call carries a transcode id), so every
concurrent transcode needs its own logged-in session; :class:`SessionPool` hands them
out. API calls share the client's main :class:`NextPVRSession`.

Login follows aiohttp's ``examples/token_refresh_middleware.py``: check, take an
``asyncio.Lock``, check again, so concurrent callers share one login. Re-login after
code 8 is keyed on the sid the caller saw: whoever gets the lock first logs in again,
and everyone who saw the same stale sid then finds a newer one and uses it. A login
that fails is reported to every caller that was already waiting for it, instead of
each of them trying again in turn.

Session ids and the PIN never appear in ``repr``, messages or logs; sessions are
numbered locally ("session #3") for the logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from proxy.errors import LoginRefused, NextPVRError, NextPVRFailed, ServiceUnavailable, SessionPoolExhausted
from proxy.log import register_secret
from proxy.nextpvr.auth import login_hash
from proxy.nextpvr.envelope import Envelope, safe_message
from proxy.nextpvr.parse import parse_initiate, parse_login

__all__ = ["NextPVRSession", "SessionPool", "SessionTransport", "SidHistory"]

log = logging.getLogger("proxy.nextpvr")


class SessionTransport(Protocol):
    """One raw API round trip, without any re-login (implemented by the client)."""

    async def session_call(self, method: str, params: Mapping[str, str], sid: str | None) -> Envelope: ...


class SidHistory:
    """The session ids this process has held, newest last, at most ``limit`` of them.

    Served playlists must never carry any of them (a stale one may still sit in a NextPVR
    playlist); ``version`` changes with every new id, so a caller can rebuild what it derives.
    """

    def __init__(self, limit: int = 64) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._ids: deque[str] = deque(maxlen=limit)
        self.version = 0

    def add(self, sid: str) -> None:
        if sid and sid not in self._ids:
            self._ids.append(sid)
            self.version += 1

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._ids))

    def __len__(self) -> int:
        return len(self._ids)


class NextPVRSession:
    """One NextPVR session id, logged in on demand."""

    def __init__(
        self,
        transport: SessionTransport,
        pin: str,
        *,
        number: int,
        device: str,
        on_login: Callable[[bool, bool], None] | None = None,
        history: SidHistory | None = None,
    ) -> None:
        self._transport = transport
        self._history = history
        self._pin = pin
        self._device = device
        self._on_login = on_login
        self._lock = asyncio.Lock()
        self._sid: str | None = None
        #: login attempts finished; a waiter that saw fewer shares the failure of a newer one
        self._finished = 0
        self._failure: tuple[int, NextPVRError] | None = None
        #: local number used in logs instead of the sid
        self.number = number
        #: increments on every successful login (a transcode started before a re-login is gone)
        self.generation = 0
        #: monotonic time of the last successful login
        self.logged_in_at: float | None = None

    def __repr__(self) -> str:
        state = "logged in" if self._sid is not None else "logged out"
        return f"<NextPVRSession #{self.number} {state} generation={self.generation}>"

    @property
    def logged_in(self) -> bool:
        return self._sid is not None

    async def sid(self) -> str:
        """The current sid, logging in first if there is none."""
        sid = self._sid
        if sid is not None:
            return sid
        seen = self._finished
        async with self._lock:
            if self._sid is not None:
                return self._sid
            self._raise_failure_since(seen)
            return await self._login(relogin=False)

    async def relogin(self, stale_sid: str) -> str:
        """Replace ``stale_sid`` (NextPVR said code 8) with a fresh one, once for all callers."""
        seen = self._finished
        async with self._lock:
            if self._sid is not None and self._sid != stale_sid:
                return self._sid
            self._raise_failure_since(seen)
            if self._sid == stale_sid:
                log.info("NextPVR session #%d is no longer valid; logging in again", self.number)
            self._sid = None
            return await self._login(relogin=True)

    async def logout(self) -> None:
        """End the session at NextPVR. Best effort: failures are logged, not raised."""
        async with self._lock:
            sid, self._sid = self._sid, None
            self.logged_in_at = None
            if sid is None:
                return
            try:
                await self._transport.session_call("session.logout", {}, sid)
            except NextPVRError as exc:
                log.debug("logout of NextPVR session #%d failed: %s", self.number, exc.message)
            else:
                log.debug("logged out of NextPVR (session #%d)", self.number)

    def _raise_failure_since(self, seen: int) -> None:
        failure = self._failure
        if failure is not None and failure[0] > seen:
            raise failure[1]

    async def _login(self, *, relogin: bool) -> str:
        try:
            sid = await self._initiate_and_login()
        except NextPVRError as exc:
            # a cancelled login records nothing: the next waiter simply tries itself
            self._finished += 1
            self._failure = (self._finished, exc)
            if self._on_login is not None:
                self._on_login(relogin, False)
            raise
        self._finished += 1
        self._failure = None
        self._sid = sid
        self.generation += 1
        self.logged_in_at = time.monotonic()
        if self._on_login is not None:
            self._on_login(relogin, True)
        log.info("logged in to NextPVR (session #%d, login %d)", self.number, self.generation)
        return sid

    async def _initiate_and_login(self) -> str:
        env = await self._transport.session_call(
            "session.initiate", {"ver": "1.0", "device": self._device}, None)
        if not env.ok:
            raise NextPVRFailed(
                f"NextPVR refused to start a session ({safe_message(env)})", code=env.code)
        sid, salt = parse_initiate(env)
        register_secret(sid)
        if self._history is not None:
            self._history.add(sid)
        env = await self._transport.session_call(
            "session.login", {"md5": login_hash(self._pin, salt)}, sid)
        if not env.ok:
            log.warning("NextPVR rejected the PIN (session #%d)", self.number)
            detail = safe_message(env).replace(self._pin, "***") if self._pin else safe_message(env)
            raise LoginRefused(f"NextPVR rejected the PIN (login refused: {detail})")
        confirmed = parse_login(env)
        if confirmed is not None and confirmed != sid:
            register_secret(confirmed)
            if self._history is not None:
                self._history.add(confirmed)
            return confirmed
        return sid


class SessionPool:
    """Up to ``max_sessions`` logged-in sessions, leased one per transcode.

    Released sessions stay logged in for the next lease, up to ``idle_sessions`` of
    them; the rest are logged out at once. Idle ones are logged out after ``idle_ttl``
    seconds by one background task (started on demand, cancelled by :meth:`close`).
    """

    def __init__(
        self,
        factory: Callable[[], NextPVRSession],
        *,
        max_sessions: int,
        idle_sessions: int,
        idle_ttl: float,
        history: SidHistory | None = None,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._factory = factory
        #: every sid the sessions handed out by this pool (and the client's own) have held
        self.history = history if history is not None else SidHistory()
        self.max_sessions = max_sessions
        self.idle_sessions = max(0, min(idle_sessions, max_sessions))
        self.idle_ttl = idle_ttl
        self._in_use: set[NextPVRSession] = set()
        #: (session, monotonic time it became idle), most recently released last
        self._idle: list[tuple[NextPVRSession, float]] = []
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def lease(self) -> NextPVRSession:
        """A logged-in session for the caller's exclusive use; give it back with :meth:`release`."""
        if self._closed:
            raise ServiceUnavailable("the proxy is shutting down")
        await self._reap_expired()
        if self._idle:
            session, _ = self._idle.pop()
            self._in_use.add(session)
            return session
        if len(self._in_use) >= self.max_sessions:
            raise SessionPoolExhausted()
        session = self._factory()
        # reserve the slot before the first await so concurrent leases respect the limit
        self._in_use.add(session)
        try:
            await session.sid()
        except BaseException:
            self._in_use.discard(session)
            raise
        return session

    async def release(self, session: NextPVRSession, *, discard: bool = False) -> None:
        """Give a leased session back; ``discard`` logs it out instead of keeping it warm."""
        if session not in self._in_use:
            log.debug("NextPVR session #%d released twice or not leased here", session.number)
            return
        self._in_use.discard(session)
        keep = not (discard or self._closed) and session.logged_in and len(self._idle) < self.idle_sessions
        if keep:
            self._idle.append((session, time.monotonic()))
            self._start_reaper()
        else:
            await session.logout()

    async def close(self) -> None:
        """Log out every session, idle or leased; later leases are refused."""
        self._closed = True
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
        sessions = [s for s, _ in self._idle] + list(self._in_use)
        self._idle.clear()
        self._in_use.clear()
        await asyncio.gather(*(s.logout() for s in sessions))

    async def _reap_expired(self) -> None:
        deadline = time.monotonic() - self.idle_ttl
        expired = [s for s, since in self._idle if since <= deadline]
        if not expired:
            return
        self._idle = [(s, since) for s, since in self._idle if since > deadline]
        for session in expired:
            log.debug("logging out idle NextPVR session #%d", session.number)
        await asyncio.gather(*(s.logout() for s in expired))

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    async def _reap_loop(self) -> None:
        while self._idle and not self._closed:
            oldest = min(since for _, since in self._idle)
            await asyncio.sleep(max(0.0, oldest + self.idle_ttl - time.monotonic()))
            await self._reap_expired()
