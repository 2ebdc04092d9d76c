"""One /service request as the method handlers see it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from proxy.emulator.render import Reply, invalid_args
from proxy.emulator.state import EmulatorState, Session

__all__ = ["Call", "Handler", "stream_sid"]

_SID_IN_CLIENT = re.compile(r"([0-9a-fA-F]{32})$")


@dataclass(slots=True)
class Call:
    request: web.Request
    state: EmulatorState
    params: Mapping[str, str]
    json: bool
    method: str
    session: Session | None = None

    @property
    def sid(self) -> str:
        assert self.session is not None, "handler registered as public but needs a session"
        return self.session.sid

    def arg(self, name: str) -> str | None:
        value = self.params.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.arg(name)
        if value is None:
            raise invalid_args()
        return value

    def int_arg(self, name: str, default: int | None = None) -> int:
        value = self.arg(name)
        if value is None:
            if default is None:
                raise invalid_args()
            return default
        try:
            return int(value)
        except ValueError:
            raise invalid_args() from None

    def bool_arg(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        return default if value is None else value.lower() in ("true", "1", "yes")


Handler = Callable[[Call], Awaitable[Reply | web.StreamResponse]]


def stream_sid(query: Mapping[str, str]) -> str | None:
    """The sid of a media request: ``sid=``, or the suffix of ``client=XBMC-<sid>``."""
    sid = query.get("sid", "").strip()
    if sid:
        return sid
    match = _SID_IN_CLIENT.search(query.get("client", "").strip())
    return match.group(1) if match else None
