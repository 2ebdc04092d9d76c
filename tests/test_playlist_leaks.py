"""Served playlists never carry NextPVR's address or a session id (issue 11, section 2), end to end:
the emulator's "leaky playlists" fault puts them in a comment and unknown tags."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from tests.test_metrics import samples, value

CHANNEL = 7181


def normalised(text: str) -> str:
    """What a client could read: every depth of percent-encoding undone, lower-cased."""
    for _ in range(8):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text.lower()


async def test_leaky_upstream_playlists_are_scrubbed_counted_and_logged_once(
        emulator: Emulator, proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="proxy.hls")
    faults = emulator.state.faults
    faults.leak_in_next_playlists(1000)
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8")
    assert resp.status == 200
    # the keep-alive loop fetches (and scrubs) a few more leaky playlists
    await emulator.state.wait_for(lambda: faults.leaky_playlists <= 1000 - 4, seconds=20)
    text = await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text()
    seen = normalised(text)
    host = emulator.url.split("//")[1]
    assert host.split(":")[0] not in seen
    assert "sid=" not in seen
    assert emulator.state.issued_sids
    for sid in emulator.state.issued_sids:
        assert sid.lower() not in seen
    assert "#EXT-X-NEXTPVR-BUILD:7.0.1" in text  # an unknown tag that leaks nothing is served
    assert "#EXT-X-NEXTPVR-DEBUG" not in text and "#EXT-X-NEXTPVR-SESSION" not in text
    assert not any(line.startswith("#") and not line.startswith("#EXT") for line in text.splitlines())
    segment = next(line for line in text.splitlines() if line and not line.startswith("#"))
    assert (await proxy.get(segment)).status == 200

    s = samples(await (await proxy.get("/metrics")).text())
    # two leaking tags per playlist: the debug URI and the percent-encoded session tag
    assert value(s, "nextpvr_proxy_hls_dropped_tags_total", what="tag") >= 2 * 4
    warnings = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per transcode, however many playlists
    assert "EXT-X-NEXTPVR-DEBUG" in warnings[0] and "EXT-X-NEXTPVR-SESSION" in warnings[0]
    for sid in emulator.state.issued_sids:
        assert sid.lower() not in warnings[0].lower()
    assert host not in warnings[0]
