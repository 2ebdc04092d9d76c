"""/metrics after real playback: promtool accepts it and the counters moved as they should."""

from __future__ import annotations

import asyncio
import re
import shutil
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.emulator import Emulator
from tests.conftest import EmulatorFactory, ProxyFactory, app_of
from tests.players import run

PROMTOOL = shutil.which("promtool")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample, sample_labels), v in all_samples.items():
        if sample == name and set(labels.items()) <= set(sample_labels):
            total += v
    return total


async def play_everything(proxy: TestClient[Any, Any]) -> None:
    text = await (await proxy.get("/live/7181.m3u8")).text()
    for line in text.splitlines():
        if line.startswith("/hls/"):
            assert (await proxy.get(line)).status == 200
    ts = await proxy.get("/live/7183.ts")
    got = 0
    async with asyncio.timeout(10):
        while got < 50_000:
            got += len(await ts.content.readany())
    ts.close()
    recordings = await (await proxy.get("/api/recordings?filter=ready")).json()
    rec_id = recordings["recordings"][0]["id"] if isinstance(recordings, dict) else recordings[0]["id"]
    rec = await proxy.get(f"/recordings/{rec_id}", headers={"Range": "bytes=0-99999"})
    assert rec.status == 206
    await rec.read()
    assert (await proxy.get("/live/999999.m3u8")).status == 404


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
async def test_promtool_accepts_the_scrape_after_playback(emulator: Emulator,
                                                          proxy: TestClient[Any, Any]) -> None:
    await play_everything(proxy)
    scrape = await (await proxy.get("/metrics")).text()
    assert PROMTOOL is not None
    result = await run(PROMTOOL, "check", "metrics", timeout=30, stdin=scrape.encode())
    assert result.returncode == 0, result.stdout + result.stderr


async def test_counters_move_with_playback(emulator: Emulator, proxy: TestClient[Any, Any]) -> None:
    await play_everything(proxy)
    s = samples(await (await proxy.get("/metrics")).text())
    assert value(s, "nextpvr_proxy_http_requests_total", route="/live/{channel_id}.m3u8", status_class="2xx") == 1
    assert value(s, "nextpvr_proxy_http_requests_total", route="/live/{channel_id}.m3u8", status_class="4xx") == 1
    assert value(s, "nextpvr_proxy_http_request_duration_seconds_count", route="/hls/{scope}/{token}/{name}") >= 3
    assert value(s, "nextpvr_proxy_client_sent_bytes_total", kind="hls") > 100_000
    assert value(s, "nextpvr_proxy_client_sent_bytes_total", kind="ts") >= 50_000
    assert value(s, "nextpvr_proxy_client_sent_bytes_total", kind="recording") == 100_000
    assert value(s, "nextpvr_proxy_nextpvr_received_bytes_total", kind="hls") > 100_000
    assert value(s, "nextpvr_proxy_nextpvr_api_calls_total", method="channel.transcode.initiate", outcome="ok") == 1
    assert value(s, "nextpvr_proxy_nextpvr_logins_total", kind="login", outcome="ok") >= 2
    assert value(s, "nextpvr_proxy_transcode_starts_total", outcome="ok") == 1
    fetched = value(s, "nextpvr_proxy_segment_cache_misses_total") + \
        value(s, "nextpvr_proxy_segment_prefetches_total")
    assert fetched >= 3
    assert value(s, "nextpvr_proxy_segment_cache_hits_total") + \
        value(s, "nextpvr_proxy_segment_cache_misses_total") >= 3
    assert value(s, "nextpvr_proxy_segment_cache_bytes") > 0
    assert value(s, "nextpvr_proxy_playlist_rewrite_duration_seconds_count") >= 1
    assert value(s, "nextpvr_proxy_active_upstream_streams", kind="hls_transcode") == 1
    assert value(s, "nextpvr_proxy_active_viewers", kind="hls") == 1
    assert value(s, "nextpvr_proxy_tuners_in_use") >= 1
    assert value(s, "nextpvr_proxy_errors_total", reason="channel_not_found") == 1


async def test_labels_are_bounded(emulator: Emulator, proxy: TestClient[Any, Any]) -> None:
    """No label value is a raw path, a channel id, a token or a session id."""
    await play_everything(proxy)
    for bogus in ("/nope", "/live/123.m3u8", "/hls/live.7181.720p/forged/0.ts"):
        await proxy.get(bogus)
    s = samples(await (await proxy.get("/metrics")).text())
    templates = {r.canonical for r in app_of(proxy).router.resources()} | {"<unmatched>"}
    for (_, labels), _ in s.items():
        for key, label in labels:
            assert "7181" not in label and "7183" not in label, (key, label)
            assert not re.fullmatch(r"[0-9a-f]{32}", label)
            if key == "route":
                assert label in templates, label


async def test_slow_viewer_and_tuner_exhaustion_are_counted(emulator_factory: EmulatorFactory,
                                                            proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(tuners=1)
    proxy = await proxy_factory(emu)
    holder = await proxy.get("/live/7181.ts")
    assert (await proxy.get("/live/7183.ts")).status == 503
    assert (await proxy.get("/live/7183.m3u8")).status == 503
    holder.close()
    s = samples(await (await proxy.get("/metrics")).text())
    assert value(s, "nextpvr_proxy_errors_total", reason="no_tuner") == 2
    assert value(s, "nextpvr_proxy_tuner_exhausted_total") == 2
