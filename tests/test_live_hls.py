"""Live TV as HLS through the proxy, against the project's NextPVR emulator on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Any

import m3u8  # test oracle only
import pytest
from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.hls.manager import TranscodeManager
from proxy.keys import SIGNER_KEY, TRANSCODES_KEY
from tests.conftest import EmulatorFactory, ProxyFactory, app_of, uris
from tests.players import PlayerLog, ffmpeg_decode, needs_ffmpeg, play_hls

CHANNEL = 7181
OTHER = 7183


def manager(client: TestClient[Any, Any]) -> TranscodeManager:
    return app_of(client)[TRANSCODES_KEY]


async def test_playlist_rewritten_to_signed_proxy_paths(emulator: Emulator,
                                                        proxy: TestClient[Any, Any]) -> None:
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    # half the 2 s target duration: a cache in front may hold it that long (issue 15)
    assert resp.headers["Cache-Control"] == "public, max-age=1"
    assert "Vary" not in resp.headers or "X-API-Key" not in resp.headers["Vary"]  # no API keys here
    text = await resp.text()
    playlist = m3u8.loads(text)
    assert playlist.segments, text
    host = emulator.url.split("//")[1]
    assert host not in text
    for sid in emulator.state.issued_sids:
        assert sid not in text
    for uri in uris(text):
        assert uri.startswith(f"/hls/live.{CHANNEL}.720p/")
        seg = await proxy.get(uri)
        assert seg.status == 200
        assert seg.headers["Content-Type"] == "video/mp2t"
        assert "max-age" in seg.headers["Cache-Control"]
        body = await seg.read()
        assert body[:1] == b"\x47" and len(body) % 188 == 0


async def test_revenge_alias_serves_the_same_stream(proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    a = await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text()
    b = await (await proxy.get(f"/live.m3u8?channel={CHANNEL}")).text()
    assert uris(a)[0] in uris(b) or uris(b)[0] in uris(a)
    assert emulator.state.counters.transcodes_started == 1


async def test_twenty_viewers_share_one_transcode_and_each_segment_is_fetched_once(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory(tuners=2)
    proxy = await proxy_factory(emu)

    async def viewer() -> dict[str, bytes]:
        text = await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text()
        got = {}
        for uri in uris(text):
            resp = await proxy.get(uri)
            assert resp.status == 200
            got[uri] = await resp.read()
        return got

    results = await asyncio.gather(*(viewer() for _ in range(20)))
    counters = emu.state.counters
    assert counters.api_calls["channel.transcode.initiate"] == 1
    assert counters.transcodes_started == 1
    assert emu.state.tuners_in_use == 1
    fetched = emu.state.segment_fetches
    assert fetched, "the emulator saw no segment request"
    assert set(fetched.values()) == {1}, f"segments fetched more than once: {fetched}"
    # every viewer got identical bytes for the same URI
    by_uri: dict[str, set[bytes]] = {}
    for result in results:
        for uri, body in result.items():
            by_uri.setdefault(uri, set()).add(body)
    assert all(len(bodies) == 1 for bodies in by_uri.values())


@needs_ffmpeg
@pytest.mark.ffmpeg
@pytest.mark.parametrize("style", ["relative", "query", "absolute"])
async def test_each_segment_uri_shape_plays(style: str, emulator_factory: EmulatorFactory,
                                            proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(segment_uri_style=style, segment_seconds=1, initial_segments=3)
    proxy = await proxy_factory(emu)
    text = await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text()
    assert uris(text), text
    url = str(proxy.make_url(f"/live/{CHANNEL}.m3u8"))
    result = await ffmpeg_decode(url, seconds=3, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


async def test_all_tuners_busy_is_503_and_the_tuner_comes_back_after_idle(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory(tuners=1)
    proxy = await proxy_factory(emu, **{"hls.idle_timeout": 1.5})
    first = await proxy.get(f"/live/{CHANNEL}.m3u8")
    assert first.status == 200
    busy = await proxy.get(f"/live/{OTHER}.m3u8")
    assert busy.status == 503
    assert int(busy.headers["Retry-After"]) > 0
    assert busy.headers["Access-Control-Allow-Origin"] == "*"
    assert "tuner" in (await busy.text()).lower()
    # nobody watches channel 1 any more: the proxy stops the transcode and NextPVR frees the tuner
    started = time.monotonic()
    await emu.state.wait_for(lambda: emu.state.tuners_in_use == 0, seconds=1.5 + 5)
    assert time.monotonic() - started < 1.5 + 5
    assert emu.state.counters.api_calls["channel.transcode.stop"] == 1
    assert emu.state.transcodes_active == 0
    again = await proxy.get(f"/live/{OTHER}.m3u8")
    assert again.status == 200


async def test_restart_mid_stream_keeps_the_playlist_valid(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory(segment_seconds=1, initial_segments=3, transcode_ready_seconds=0.3)
    proxy = await proxy_factory(emu)
    stop = asyncio.Event()
    log = PlayerLog()
    player = asyncio.create_task(play_hls(proxy, f"/live/{CHANNEL}.m3u8", stop=stop, log=log,
                                          reload_seconds=0.5))
    await emu.state.wait_for(lambda: len(log.segments) >= 4, seconds=15)
    logins_before = emu.state.counters.logins_ok
    emu.state.restart()
    # the proxy notices, logs in again, starts a new transcode; the player sees new segments
    await emu.state.wait_for(lambda: emu.state.counters.transcodes_started >= 2, seconds=15)
    seen = len(log.segments)
    await emu.state.wait_for(lambda: len(log.segments) >= seen + 3 and log.saw_discontinuity, seconds=20)
    stop.set()
    await player
    assert log.errors == []
    assert set(log.statuses) == {200}
    assert log.media_sequences == sorted(log.media_sequences)
    assert log.saw_discontinuity
    assert log.discontinuity_sequences == sorted(log.discontinuity_sequences)
    # exactly one new login for the transcode's session
    assert emu.state.counters.logins_ok - logins_before == 1


@needs_ffmpeg
@pytest.mark.ffmpeg
@pytest.mark.slow
async def test_ffmpeg_decodes_twenty_seconds_with_the_real_lease_expiry(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    # NextPVR drops a transcode after 15 s without activity; ffmpeg alone would not keep it alive
    # long enough if the proxy relied on viewers: the keep-alive timer must do it
    emu = await emulator_factory(transcode_expiry=15.0)
    proxy = await proxy_factory(emu)
    url = str(proxy.make_url(f"/live/{CHANNEL}.m3u8"))
    result = await ffmpeg_decode(url, seconds=20, timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert emu.state.counters.transcodes_expired == 0
    assert emu.state.counters.transcodes_started == 1


# -- errors a client can act on ------------------------------------------------------------------


async def test_unknown_channel_is_404(proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    resp = await proxy.get("/live/999999.m3u8")
    assert resp.status == 404
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert emulator.state.counters.transcodes_started == 0


async def test_bad_channel_and_profile_are_400_naming_the_field(proxy: TestClient[Any, Any]) -> None:
    resp = await proxy.get("/live.m3u8?channel=abc")
    assert resp.status == 400
    assert "channel" in await resp.text()
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8?profile=4k")
    assert resp.status == 400
    assert "profile" in await resp.text()


async def test_wrong_pin_is_502_naming_the_cause(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, pin="111111")
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8")
    assert resp.status == 502
    body = await resp.text()
    assert "PIN" in body
    assert "111111" not in body


async def test_unreachable_nextpvr_is_502(proxy_factory: ProxyFactory, unused_tcp_port: int) -> None:
    proxy = await proxy_factory(f"http://127.0.0.1:{unused_tcp_port}")
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8")
    assert resp.status == 502
    assert "NextPVR" in await resp.text()


async def test_slow_nextpvr_is_504(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"nextpvr.timeouts.api_total": 0.5, "nextpvr.timeouts.read": 0.5})
    emulator.state.faults.slow_api(3.0, count=1, method="channel.transcode.initiate")
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8")
    assert resp.status == 504


async def test_profile_the_transcoder_refuses_is_502_naming_it(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory(profiles=("720p",))
    proxy = await proxy_factory(emu)
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8?profile=1080p")
    assert resp.status == 502
    assert "1080p" in await resp.text()
    assert emu.state.tuners_in_use == 0


async def test_forged_and_foreign_tokens_are_403(proxy: TestClient[Any, Any]) -> None:
    text = await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text()
    uri = uris(text)[0]
    scope, token, name = uri.split("/")[2:5]
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (f"/hls/{scope}/{flipped}/{name}", f"/hls/live.{OTHER}.720p/{token}/{name}",
                f"/hls/{scope}/not-a-token/{name}"):
        resp = await proxy.get(bad)
        assert resp.status == 403, bad
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_expired_token_is_403(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"auth.token_ttl": 30})
    text = await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text()
    uri = uris(text)[0]
    assert (await proxy.get(uri)).status == 200
    scope, token, name = uri.split("/")[2:5]
    signer = app_of(proxy)[SIGNER_KEY]
    target = signer.verify(scope, token, now=time.time())
    assert target.expires >= time.time() + 30
    # token_ttl is at least 30 s and expiries are rounded up to the hour: the same segment's token,
    # signed to have expired a second ago, stands for the wait
    expired = signer.sign(scope, dataclasses.replace(target, expires=int(time.time()) - 1))
    assert (await proxy.get(f"/hls/{scope}/{expired}/{name}")).status == 403


async def test_blocked_uri_is_403(proxy: TestClient[Any, Any]) -> None:
    resp = await proxy.get("/hls/blocked/abcdef/segment.ts")
    assert resp.status == 403


async def test_idle_stop_releases_session_to_pool(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"hls.idle_timeout": 1})
    assert (await proxy.get(f"/live/{CHANNEL}.m3u8")).status == 200
    assert len(manager(proxy).running()) == 1
    async with asyncio.timeout(6):
        await manager(proxy).wait_for(lambda: not manager(proxy).running())
    assert emulator.state.transcodes_active == 0
    counts = Counter(emulator.state.counters.api_calls)
    assert counts["channel.transcode.stop"] == 1


async def test_upstream_playlist_over_the_size_limit_is_502(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"hls.playlist_max_bytes": 200})
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8")
    assert resp.status == 502
    assert "larger than" in await resp.text()
    async with asyncio.timeout(5):
        await emulator.state.wait_for(lambda: emulator.state.tuners_in_use == 0, seconds=5)


async def test_a_transcode_restarted_after_idling_continues_the_sequence(emulator: Emulator,
                                                                         proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"hls.idle_timeout": 1})
    first = m3u8.loads(await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text())
    async with asyncio.timeout(6):
        await manager(proxy).wait_for(lambda: not manager(proxy).running())
    second = m3u8.loads(await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text())
    assert emulator.state.counters.transcodes_started == 2
    last_seen = first.media_sequence + len(first.segments) - 1
    assert second.media_sequence > last_seen  # a player that kept the old playlist never goes back
    assert second.segments[0].discontinuity


async def test_recording_segment_tokens_outlive_the_playback(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    """A VOD player fetches the playlist once; its last segment must still open at the end."""
    proxy = await proxy_factory(emulator, **{"auth.token_ttl": 30})
    recordings = await (await proxy.get("/api/recordings?filter=ready")).json()
    rec_id = recordings["recordings"][0]["id"]
    text = await (await proxy.get(f"/recordings/{rec_id}.m3u8")).text()
    playlist = m3u8.loads(text)
    total = sum(s.duration for s in playlist.segments)
    assert total >= 20
    scope, token = playlist.segments[-1].uri.split("/")[2:4]
    target = app_of(proxy)[SIGNER_KEY].verify(scope, token, now=time.time())
    assert target.expires >= time.time() + total + 30  # + the configured 30 s lifetime


async def test_every_refused_token_gets_its_clear_403(proxy: TestClient[Any, Any]) -> None:
    # issue 11: opaque tokens answer forged, truncated, bit-flipped, expired and wrong-scope URLs as before
    import base64
    import dataclasses

    text = await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text()
    uri = uris(text)[0]
    scope, token, name = uri.split("/")[2:5]
    assert (await proxy.get(uri)).status == 200  # verified once: now also in the signer's cache
    signer = app_of(proxy)[SIGNER_KEY]
    target = signer.verify(scope, token, now=time.time())
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[len(raw) // 2] ^= 0x10
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    expired = signer.sign(scope, dataclasses.replace(target, expires=int(time.time()) - 1))
    cases = {
        f"/hls/{scope}/{flipped}/{name}": "forged",
        f"/hls/{scope}/{token[:-3]}/{name}": "forged",
        f"/hls/{scope}/{'A' * len(token)}/{name}": "forged",
        f"/hls/live.{OTHER}.720p/{token}/{name}": "scope",
        f"/hls/{scope}/{expired}/{name}": "expired",
    }
    for bad, reason in cases.items():
        for _ in range(2):  # the second time a genuine token is answered from the cache
            resp = await proxy.get(bad)
            body = await resp.text()
            assert resp.status == 403, bad
            assert f"not valid ({reason}); reload the playlist" in body, (bad, body)
            assert "service" not in body and "transcode" not in body
