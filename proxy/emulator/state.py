"""Everything the emulated server remembers: sessions, tuners, streams, transcodes, counters.

All of it lives on one event loop, so nothing here locks. Tests read the counters and live values,
wait for a condition with :meth:`EmulatorState.wait_for`, and use the hooks (``restart``,
``expire_sessions``, ``faults``) to make the server misbehave.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aiohttp import web

from proxy.emulator.config import EmulatorConfig
from proxy.emulator.data import Channel, Guide, load_icons
from proxy.emulator.faults import Faults
from proxy.emulator.feeds import Feeds, SegmentedFile
from proxy.emulator.recordings import Recording, RecordingStore
from proxy.emulator.tuners import TunerLease, TunerPool

__all__ = ["STATE_KEY", "Counters", "EmulatorState", "LiveHandle", "Session", "Timeshift", "Transcode"]

log = logging.getLogger("proxy.emulator")

#: bounded histories kept for tests and benchmarks
MAX_SID_HISTORY = 100_000
MAX_TRANSCODE_HISTORY = 1000
MAX_SEGMENT_KEYS = 20_000


@dataclass(slots=True)
class Session:
    sid: str
    salt: str
    device: str
    last_used: float
    authenticated: bool = False


@dataclass(slots=True)
class Counters:
    logins_ok: int = 0
    logins_failed: int = 0
    session_initiates: int = 0
    logouts: int = 0
    code8: int = 0
    transcodes_started: int = 0
    transcodes_stopped: int = 0
    transcodes_expired: int = 0
    transcodes_replaced: int = 0
    live_opened: int = 0
    live_closed: int = 0
    live_expired: int = 0
    tuner_refusals: int = 0
    segment_requests: int = 0
    playlist_requests: int = 0
    recording_stream_requests: int = 0
    timeshifts_started: int = 0
    restarts: int = 0
    api_calls: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True, eq=False)
class Transcode:
    """One transcoder; NextPVR keys it by the session id alone."""

    id: int
    sid: str
    kind: Literal["channel", "recording"]
    channel: Channel
    recording_id: int | None
    profile: str
    started_at: float
    ready_at: float
    #: source segment index of the transcode's segment 0
    base_index: int
    last_activity: float
    lease: TunerLease | None
    #: VOD length for recording transcodes of finished recordings
    total_segments: int | None = None
    first_playlist_at: float | None = None
    dead: bool = False
    ended_at: float | None = None
    end_reason: str = ""

    def percentage(self, now: float, ready_seconds: float) -> int:
        if now >= self.ready_at:
            return 100
        return min(99, int(100 * (now - self.started_at) / ready_seconds)) if ready_seconds else 100

    def timing(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "channel": self.channel.oid,
            "recording_id": self.recording_id,
            "profile": self.profile,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "first_playlist_at": self.first_playlist_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
        }


@dataclass(slots=True, eq=False)
class LiveHandle:
    """One /live channel connection."""

    id: int
    channel: Channel
    lease: TunerLease
    opened_at: float
    abort: Callable[[], None]
    #: the write timeout of the reader that has stopped consuming, so a lease can push it back
    renew: Callable[[], None] | None = None
    sid: str | None = None
    #: set when the handle is closed: wakes the writer out of its pacing sleep
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def is_open(self) -> bool:
        return not self.wake.is_set()


@dataclass(slots=True, eq=False)
class Timeshift:
    """channel.stream.start: a buffer that grows from the moment the tuner started."""

    sid: str
    channel: Channel
    lease: TunerLease
    started_at: float
    last_renewal: float
    file: SegmentedFile
    #: abort() of each /live reader of this buffer: a dropped buffer ends them
    readers: dict[int, Callable[[], None]] = field(default_factory=dict)

    def segments(self, feeds: Feeds, max_seconds: int, now: float) -> int:
        grown = int((now - self.started_at) // feeds.duration(self.channel)) + 1
        return min(grown, feeds.segments_for(max_seconds))


class EmulatorState:
    def __init__(self, config: EmulatorConfig, feeds: Feeds) -> None:
        self.config = config
        self.feeds = feeds
        self.faults = Faults()
        self.counters = Counters()
        self.guide = Guide()
        self.icons = load_icons()
        self.tuners = TunerPool(config.tuners)
        self.store = RecordingStore(config, self.guide)
        self.started_wall = time.time()
        self.store.seed(self.started_wall)
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.transcodes: dict[str, Transcode] = {}
        self.timeshifts: dict[str, Timeshift] = {}
        self.live: dict[int, LiveHandle] = {}
        self.issued_sids: deque[str] = deque(maxlen=MAX_SID_HISTORY)
        self.transcode_history: deque[Transcode] = deque(maxlen=MAX_TRANSCODE_HISTORY)
        #: requests per transcode segment, keyed "<transcode id>/<n>" (the newest MAX_SEGMENT_KEYS)
        self.segment_fetches: OrderedDict[str, int] = OrderedDict()
        #: abort() of every open media response (live, recordings, segments), for restart()
        self.connections: dict[int, Callable[[], None]] = {}
        self._recording_files: dict[int, SegmentedFile] = {}
        self._ids = 0
        self._changed = asyncio.Event()

    # -- live values -------------------------------------------------------------------------------
    @property
    def tuners_in_use(self) -> int:
        return self.tuners.in_use + (self.recordings_on_air() if self.config.recordings_use_tuners else 0)

    @property
    def transcodes_active(self) -> int:
        return sum(1 for t in self.transcodes.values() if not t.dead)

    @property
    def live_streams_active(self) -> int:
        return len(self.live)

    def recordings_on_air(self) -> int:
        now = time.time()
        return sum(1 for r in self.store.recordings.values() if r.status(now) == "recording")

    def acquire_tuner(self, channel: Channel, *, share: bool = False) -> TunerLease | None:
        reserved = self.recordings_on_air() if self.config.recordings_use_tuners else 0
        lease = self.tuners.acquire(channel, share=share, reserved=reserved)
        if lease is None:
            self.counters.tuner_refusals += 1
        self.changed()
        return lease

    def count_segment_fetch(self, transcode_id: int, n: int) -> None:
        key = f"{transcode_id}/{n}"
        self.segment_fetches[key] = self.segment_fetches.get(key, 0) + 1
        self.segment_fetches.move_to_end(key)
        if len(self.segment_fetches) > MAX_SEGMENT_KEYS:
            self.segment_fetches.popitem(last=False)

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- recording media ---------------------------------------------------------------------------
    def recording_file(self, rec: Recording) -> SegmentedFile:
        found = self._recording_files.get(rec.id)
        if found is None:
            found = SegmentedFile(self.feeds, rec.channel, 0)
            self._recording_files[rec.id] = found
        return found

    def recording_segments(self, rec: Recording, now: float) -> tuple[int, int]:
        """(segments captured so far, segments when complete) of a recording at wall time ``now``."""
        captured = min(rec.capture_end - rec.capture_start, self.config.recording_media_cap_seconds)
        total = self.feeds.segments_for(captured)
        status = rec.status(now)
        if status == "ready":
            return total, total
        if status == "recording":
            grown = int((now - rec.capture_start) // self.feeds.duration(rec.channel))
            return min(total, grown), total
        return 0, total

    def recording_size(self, rec: Recording, now: float) -> int:
        if not rec.has_media(now):
            return 0
        return self.recording_file(rec).size(self.recording_segments(rec, now)[0])

    def forget_recording(self, rec_id: int) -> None:
        self._recording_files.pop(rec_id, None)

    # -- change notification -----------------------------------------------------------------------
    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 5.0) -> None:
        """Return once ``predicate()`` holds; TimeoutError after ``seconds``.

        Woken by every state change, and every 50 ms for conditions that only time changes.
        """
        async with asyncio.timeout(seconds):
            while not predicate():
                event = self._changed
                try:
                    async with asyncio.timeout(0.05):
                        await event.wait()
                except TimeoutError:
                    pass

    # -- sessions ----------------------------------------------------------------------------------
    def new_session(self, device: str) -> Session:
        while len(self.sessions) >= self.config.max_sessions:
            stale = next((s for s in self.sessions.values() if not s.authenticated), None)
            self.drop_session(stale.sid if stale else next(iter(self.sessions)))
        session = Session(uuid.uuid4().hex, str(uuid.uuid4()), device[:64], time.monotonic())
        self.sessions[session.sid] = session
        self.issued_sids.append(session.sid)
        self.counters.session_initiates += 1
        self.changed()
        return session

    def session(self, sid: str | None, *, authenticated: bool = True) -> Session | None:
        """The live session for ``sid``, renewed (sliding expiry); None if unknown or expired."""
        if not sid:
            return None
        session = self.sessions.get(sid.lower())
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_used > self.config.session_expiry:
            self.drop_session(session.sid)
            return None
        if authenticated and not session.authenticated:
            return None
        session.last_used = now
        self.sessions.move_to_end(session.sid)
        return session

    def drop_session(self, sid: str) -> None:
        if self.sessions.pop(sid, None) is not None:
            self.changed()

    def expire_sessions(self) -> int:
        """Test hook: every sid is now unknown (code 8); transcodes are left to expire on their own."""
        count = len(self.sessions)
        self.sessions.clear()
        self.changed()
        log.info("emulator: %d sessions expired by request", count)
        return count

    # -- transcodes --------------------------------------------------------------------------------
    def end_transcode(self, sid: str, reason: Literal["stopped", "expired", "replaced", "restart"]) -> bool:
        transcode = self.transcodes.pop(sid, None)
        if transcode is None:
            return False
        self.tuners.release(transcode.lease)
        transcode.lease = None
        transcode.ended_at = time.monotonic()
        transcode.end_reason = reason
        if reason == "expired":
            self.counters.transcodes_expired += 1
            log.info("emulator: transcode %d expired without playlist/segment/lease", transcode.id)
        elif reason == "replaced":
            self.counters.transcodes_replaced += 1
        else:
            self.counters.transcodes_stopped += 1
        self.changed()
        return True

    def end_timeshift(self, sid: str) -> bool:
        shift = self.timeshifts.pop(sid, None)
        if shift is None:
            return False
        self.tuners.release(shift.lease)
        for abort in list(shift.readers.values()):
            abort()
        self.changed()
        return True

    def kill_transcoder(self, transcode: Transcode) -> None:
        """The ffmpeg behind it died: status says fail, the tuner is freed, the sid still maps to it."""
        transcode.dead = True
        self.tuners.release(transcode.lease)
        transcode.lease = None
        self.changed()

    # -- live handles ------------------------------------------------------------------------------
    def close_live(self, handle: LiveHandle, *, expired: bool = False) -> None:
        if self.live.pop(handle.id, None) is None:
            return
        handle.wake.set()
        self.tuners.release(handle.lease)
        if expired:
            self.counters.live_expired += 1
            log.warning("Live stream expired without 15 second renewal. (handle:%d)", handle.id)
            handle.abort()
        else:
            self.counters.live_closed += 1
        self.changed()

    def end_live_streams(self) -> int:
        """NextPVR ends every live channel stream cleanly (the body finishes; no reset)."""
        handles = list(self.live.values())
        for handle in handles:
            self.close_live(handle)
        return len(handles)

    def renew(self, sid: str) -> bool:
        """channel.transcode.lease: renew whatever this session is streaming."""
        now = time.monotonic()
        found = False
        if (transcode := self.transcodes.get(sid)) is not None:
            transcode.last_activity = now
            found = True
        if (shift := self.timeshifts.get(sid)) is not None:
            shift.last_renewal = now
            found = True
        for handle in self.live.values():
            if handle.sid == sid and handle.renew is not None:
                handle.renew()
                found = True
        return found

    # -- housekeeping ------------------------------------------------------------------------------
    def sweep(self) -> None:
        now = time.monotonic()
        for sid, transcode in list(self.transcodes.items()):
            if now - transcode.last_activity > self.config.transcode_expiry:
                self.end_transcode(sid, "expired")
        for sid, shift in list(self.timeshifts.items()):
            if now - shift.last_renewal > self.config.live_expiry:
                log.warning("Live stream expired without 15 second renewal. (timeshift)")
                self.counters.live_expired += 1
                self.end_timeshift(sid)
        for session in list(self.sessions.values()):
            if now - session.last_used > self.config.session_expiry:
                self.drop_session(session.sid)

    def sweep_interval(self) -> float:
        return max(0.02, min(0.5, self.config.transcode_expiry / 10, self.config.live_expiry / 10))

    def abort_streams(self) -> None:
        """Reset every open media connection (/live, recordings, faulted segments)."""
        for handle in list(self.live.values()):
            self.close_live(handle)
            handle.abort()
        for abort in list(self.connections.values()):
            abort()
        self.connections.clear()

    def restart(self) -> None:
        """A server restart: every session, transcode and stream is gone; recordings stay."""
        self.counters.restarts += 1
        self.sessions.clear()
        for sid in list(self.transcodes):
            self.end_transcode(sid, "restart")
        for sid in list(self.timeshifts):
            self.end_timeshift(sid)
        self.abort_streams()
        self.tuners.reset()
        self.changed()
        log.info("emulator: restarted")

    # -- reporting ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        counters = asdict(self.counters)
        counters["api_calls"] = dict(self.counters.api_calls)
        counters["faults_injected"] = self.faults.injected
        return {
            "counters": counters,
            "tuners": self.config.tuners,
            "tuners_in_use": self.tuners_in_use,
            "transcodes_active": self.transcodes_active,
            "live_streams_active": self.live_streams_active,
            "timeshifts_active": len(self.timeshifts),
            "sessions": len(self.sessions),
            "issued_sids": list(self.issued_sids),
            "transcodes": [t.timing() for t in self.transcode_history],
            "segment_fetches": dict(self.segment_fetches),
            "faults": self.faults.snapshot(),
        }


STATE_KEY = web.AppKey("nextpvr_emulator_state", EmulatorState)
