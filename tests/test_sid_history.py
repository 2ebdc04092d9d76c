"""The session ids the proxy has held: what served playlists are checked against (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.keys import CLIENT_KEY, TRANSCODES_KEY
from proxy.nextpvr.session import SidHistory
from tests.conftest import app_of


def test_history_is_bounded_ordered_and_versioned() -> None:
    history = SidHistory(limit=3)
    for sid in ["a" * 32, "b" * 32, "a" * 32, "c" * 32, "d" * 32]:
        history.add(sid)
    assert list(history) == ["b" * 32, "c" * 32, "d" * 32]
    assert len(history) == 3 and history.version == 4  # the repeated id changed nothing
    with pytest.raises(ValueError, match="limit"):
        SidHistory(limit=0)


async def test_every_login_of_the_proxy_lands_in_the_pool_history(emulator: Emulator,
                                                                    proxy: TestClient[Any, Any]) -> None:
    assert (await proxy.get("/live/7181.m3u8")).status == 200
    history = app_of(proxy)[CLIENT_KEY].pool.history
    assert len(history) == 2  # the main session and the transcode's
    emulator.state.expire_sessions()  # the transcode's keep-alive sees code 8 and logs in again
    await emulator.state.wait_for(lambda: len(history) >= 3, seconds=15)
    held = set(history)
    assert len(held) >= 3
    assert held <= set(emulator.state.issued_sids)
    guard = app_of(proxy)[TRANSCODES_KEY].leak_guard()
    assert all(guard.found(sid) for sid in held)
    assert guard is app_of(proxy)[TRANSCODES_KEY].leak_guard()  # rebuilt only for a new sid
