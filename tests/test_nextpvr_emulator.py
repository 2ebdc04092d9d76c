"""The NextPVR client against the project's emulator: login, code-8 recovery, session pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from proxy.config import NextPVRConfig
from proxy.emulator import Emulator
from proxy.errors import LoginRefused
from proxy.nextpvr.client import NextPVRClient
from proxy.nextpvr.models import RecordingStatus
from tests.conftest import TEST_PIN, EmulatorFactory


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(requote_redirect_url=False) as session:
        yield session


def client_for(emu: Emulator, http: aiohttp.ClientSession, *, pin: str = TEST_PIN, fmt: str = "xml",
               max_sessions: int = 8) -> NextPVRClient:
    config = NextPVRConfig(base_url=emu.url, pin=pin, response_format=fmt,  # type: ignore[arg-type]
                           max_sessions=max_sessions)
    return NextPVRClient(config, http)


async def test_login_with_the_right_pin(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    client = client_for(emulator, http)
    channels = await client.channel_list()
    assert [c.formatted_number for c in channels][:2] == ["4.1", "4.2"]
    assert emulator.state.counters.logins_ok == 1
    await client.logout_all()
    assert emulator.state.counters.logouts == 1


async def test_wrong_pin_is_login_refused_without_the_pin(emulator: Emulator,
                                                          http: aiohttp.ClientSession) -> None:
    client = client_for(emulator, http, pin="555666")
    with pytest.raises(LoginRefused) as err:
        await client.channel_list()
    assert "PIN" in err.value.message
    assert "rejected" in err.value.message
    assert "555666" not in str(err.value)
    assert emulator.state.counters.logins_failed == 1


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_fifty_concurrent_calls_on_an_expired_session_share_one_login(
    fmt: str, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    client = client_for(emulator, http, fmt=fmt)
    await client.setting_list()
    assert emulator.state.counters.logins_ok == 1
    emulator.state.expire_sessions()
    results = await asyncio.gather(*(client.recording_list("all") for _ in range(50)))
    assert all(results)
    assert emulator.state.counters.logins_ok == 2  # exactly one new login
    assert emulator.state.counters.code8 >= 1


async def test_restart_hook_then_next_call_logs_in_transparently(emulator: Emulator,
                                                                 http: aiohttp.ClientSession) -> None:
    client = client_for(emulator, http)
    before = await client.recording_list("ready")
    emulator.state.restart()
    after = await client.recording_list("ready")
    assert [r.id for r in after] == [r.id for r in before]
    assert all(r.status is RecordingStatus.READY for r in after)
    assert emulator.state.counters.logins_ok == 2


async def test_pool_holds_three_sessions_each_with_its_own_transcode(
    emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(tuners=4)
    client = client_for(emu, http, max_sessions=4)
    sessions = [await client.pool.lease() for _ in range(3)]
    sids = {await s.sid() for s in sessions}
    assert len(sids) == 3
    for session, channel in zip(sessions, (7181, 7182, 7183), strict=True):
        await client.transcode_initiate(session, "channel", channel, "720p")
    assert emu.state.transcodes_active == 3
    assert emu.state.tuners_in_use == 3
    for session in sessions:
        assert (await client.transcode_status(session, "channel")).percentage >= 0
        assert await client.transcode_stop(session, "channel")
        await client.pool.release(session)
    assert emu.state.transcodes_active == 0
    await client.logout_all()
    assert emu.state.counters.logouts >= 3
