"""Failures a test can inject into the emulated server, each for the next N matching requests."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["FaultKind", "Faults", "SlowSegments"]

FaultKind = Literal["api", "playlist", "segment", "live", "recording", "any"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
#: a garbage playlist: HTTP 200, no #EXTM3U, nothing a parser can use
GARBAGE_PLAYLIST = b"<html><body>Internal transcoder error\x00\xff</body></html>\n"


@dataclass(frozen=True, slots=True)
class SlowSegments:
    #: seconds before the first byte
    delay: float
    #: trickle rate once started; None means full speed after the delay
    bytes_per_second: float | None


class Faults:
    """Pending faults. Each ``take_*`` consumes one and says whether it applies to this request."""

    def __init__(self) -> None:
        #: faults that fired so far (not reset by clear())
        self.injected = 0
        self.clear()

    def clear(self) -> None:
        self.reset_segments = 0
        self.slow_segments = 0
        self.slow = SlowSegments(0.0, None)
        self.http_500: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.garbage_playlists = 0
        self.stall_live_until = 0.0
        self.transcode_die = 0
        self.slow_api_count = 0
        self.slow_api_seconds = 0.0
        self.slow_api_method: str | None = None

    # -- arming ------------------------------------------------------------------------------------
    def fail_500(self, kind: FaultKind, count: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        self.http_500[kind] += _count(count)

    def reset_next_segments(self, count: int = 1) -> None:
        self.reset_segments += _count(count)

    def slow_next_segments(
        self, count: int = 1, *, delay: float = 0.0, bytes_per_second: float | None = None
    ) -> None:
        if delay < 0 or (bytes_per_second is not None and bytes_per_second <= 0):
            raise ValueError("delay must be >= 0 and bytes_per_second > 0")
        self.slow_segments += _count(count)
        self.slow = SlowSegments(float(delay), None if bytes_per_second is None else float(bytes_per_second))

    def garbage_next_playlists(self, count: int = 1) -> None:
        self.garbage_playlists += _count(count)

    def stall_live(self, seconds: float) -> None:
        """Every /live channel stream sends nothing for this long (a stuck tuner, not a slow reader)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self.stall_live_until = max(self.stall_live_until, time.monotonic() + seconds)

    def slow_api(self, seconds: float, count: int = 1, *, method: str | None = None) -> None:
        """The next N API answers (/service methods other than playlists and segments) wait ``seconds``.

        With ``method``, only calls of that method count, so a client's background calls cannot
        use the fault up.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self.slow_api_count += _count(count)
        self.slow_api_seconds = float(seconds)
        self.slow_api_method = method.lower() if method else None

    def kill_next_transcodes(self, count: int = 1) -> None:
        """The transcoder of the next N initiates dies: status answers stat=fail."""
        self.transcode_die += _count(count)

    def apply(self, spec: Mapping[str, Any]) -> None:
        """Arm faults from the JSON body of POST /_emulator/faults (see control.py)."""
        unknown = set(spec) - {
            "clear",
            "http_500",
            "reset_segments",
            "slow_segments",
            "garbage_playlists",
            "stall_live",
            "kill_transcodes",
            "slow_api",
        }
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
        if spec.get("clear"):
            self.clear()
        if "http_500" in spec:
            entries = spec["http_500"]
            for entry in entries if isinstance(entries, list) else [entries]:
                self.fail_500(entry["kind"], int(entry.get("count", 1)))
        if "reset_segments" in spec:
            self.reset_next_segments(int(spec["reset_segments"]))
        if "slow_segments" in spec:
            slow = spec["slow_segments"]
            rate = slow.get("bytes_per_second")
            self.slow_next_segments(
                int(slow.get("count", 1)),
                delay=float(slow.get("delay", 0.0)),
                bytes_per_second=None if rate is None else float(rate),
            )
        if "garbage_playlists" in spec:
            self.garbage_next_playlists(int(spec["garbage_playlists"]))
        if "stall_live" in spec:
            self.stall_live(float(spec["stall_live"]))
        if "kill_transcodes" in spec:
            self.kill_next_transcodes(int(spec["kill_transcodes"]))
        if "slow_api" in spec:
            slow_api = spec["slow_api"]
            self.slow_api(
                float(slow_api["seconds"]), int(slow_api.get("count", 1)), method=slow_api.get("method")
            )

    # -- consuming ---------------------------------------------------------------------------------
    def take_500(self, kind: FaultKind) -> bool:
        for key in (kind, "any"):
            if self.http_500[key] > 0:
                self.http_500[key] -= 1
                self.injected += 1
                return True
        return False

    def take_reset(self) -> bool:
        if self.reset_segments > 0:
            self.reset_segments -= 1
            self.injected += 1
            return True
        return False

    def take_slow(self) -> SlowSegments | None:
        if self.slow_segments > 0:
            self.slow_segments -= 1
            self.injected += 1
            return self.slow
        return None

    def take_slow_api(self, method: str) -> float:
        """Seconds to hold this API answer back (0: none)."""
        if self.slow_api_count > 0 and self.slow_api_method in (None, method):
            self.slow_api_count -= 1
            self.injected += 1
            return self.slow_api_seconds
        return 0.0

    def take_garbage(self) -> bool:
        if self.garbage_playlists > 0:
            self.garbage_playlists -= 1
            self.injected += 1
            return True
        return False

    def take_transcode_death(self) -> bool:
        if self.transcode_die > 0:
            self.transcode_die -= 1
            self.injected += 1
            return True
        return False

    def stall_remaining(self) -> float:
        return max(0.0, self.stall_live_until - time.monotonic())

    def snapshot(self) -> dict[str, Any]:
        return {
            "http_500": {k: v for k, v in self.http_500.items() if v},
            "reset_segments": self.reset_segments,
            "slow_segments": {
                "count": self.slow_segments,
                "delay": self.slow.delay,
                "bytes_per_second": self.slow.bytes_per_second,
            },
            "garbage_playlists": self.garbage_playlists,
            "stall_live_seconds": round(self.stall_remaining(), 3),
            "kill_transcodes": self.transcode_die,
            "slow_api": {
                "count": self.slow_api_count,
                "seconds": self.slow_api_seconds,
                "method": self.slow_api_method,
            },
            "injected": self.injected,
        }


def _count(count: int) -> int:
    if count < 0:
        raise ValueError("count must be >= 0")
    return count
