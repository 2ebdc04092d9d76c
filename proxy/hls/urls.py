"""The proxy's HLS URL layout and scope strings: the one place that builds and parses them.

- A *scope* names what a token may open. Any scope is one URL path segment
  (:data:`ANY_SCOPE`); the transcodes use ``live.<channel>.<profile>`` and
  ``rec.<recording>.<profile>`` (:class:`TranscodeKey`, :func:`parse_scope`).
- A proxied resource is ``/hls/{scope}/{token}/{name}`` (:func:`hls_path`,
  :func:`split_hls_path`); ``/hls/blocked/{digest}/{name}`` is what a URI outside NextPVR
  becomes (:data:`BLOCKED_SCOPE`). The token mapper in ``url_mapper.py`` writes the same layout
  on its hot path from :data:`HLS_PREFIX`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ANY_SCOPE",
    "BLOCKED_SCOPE",
    "HLS_PREFIX",
    "HlsPath",
    "TranscodeKey",
    "TranscodeKind",
    "check_scope",
    "hls_path",
    "parse_scope",
    "split_hls_path",
]

TranscodeKind = Literal["channel", "recording"]

HLS_PREFIX: Final = "/hls"
BLOCKED_SCOPE: Final = "blocked"
# a scope is one path segment: it may not be "." or ".." (clients would collapse it) nor "blocked"
ANY_SCOPE: Final = re.compile(r"(?!blocked\Z)[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_TRANSCODE_SCOPE: Final = re.compile(r"(live|rec)\.([0-9]{1,10})\.([A-Za-z0-9_-]{1,32})")
_PREFIXES: Final[dict[TranscodeKind, str]] = {"channel": "live", "recording": "rec"}


def check_scope(scope: str) -> None:
    if not ANY_SCOPE.fullmatch(scope):
        raise ValueError("scope must be 1-64 characters of [A-Za-z0-9._-], not starting with '.', "
                         "and not 'blocked'")


@dataclass(frozen=True, slots=True)
class TranscodeKey:
    """What one NextPVR transcode is of: a channel or a recording, in one profile."""

    kind: TranscodeKind
    target_id: int
    profile: str

    @property
    def scope(self) -> str:
        return f"{_PREFIXES[self.kind]}.{self.target_id}.{self.profile}"


def parse_scope(scope: str) -> TranscodeKey | None:
    """The transcode a scope string names, or None when it names none."""
    match = _TRANSCODE_SCOPE.fullmatch(scope)
    if match is None:
        return None
    kind: TranscodeKind = "channel" if match.group(1) == "live" else "recording"
    return TranscodeKey(kind, int(match.group(2)), match.group(3))


@dataclass(frozen=True, slots=True)
class HlsPath:
    scope: str
    token: str
    name: str


def hls_path(scope: str, token: str, name: str) -> str:
    return f"{HLS_PREFIX}/{scope}/{token}/{name}"


def split_hls_path(url: str) -> HlsPath | None:
    """``/hls/{scope}/{token}/{name}`` -> its parts; None for anything else (a blocked URI too)."""
    parts = url.split("/")
    if len(parts) != 5 or parts[0] or f"/{parts[1]}" != HLS_PREFIX or parts[2] == BLOCKED_SCOPE:
        return None
    return HlsPath(parts[2], parts[3], parts[4])
