"""``nextpvr-proxy doctor`` as a user runs it (the real command line, in a child process) against
the emulator, a NextPVR that refuses the PIN, one that is down, and a fake serving MPEG-2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.doctor.checks import mask_uri
from proxy.emulator import Emulator
from tests.conftest import TEST_PIN
from tests.fakes.nextpvr_fake import FakeNextPVR, resource
from tests.players import ProcResult, run
from tests.processes import free_port

pytestmark = pytest.mark.ffmpeg


def write_config(tmp_path: Path, base_url: str, pin: str = TEST_PIN) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"nextpvr": {"base_url": base_url, "pin": pin}}))
    return path


async def doctor(config: Path, *args: str) -> ProcResult:
    return await run(sys.executable, "-m", "proxy", "doctor", "--config", str(config), "--seconds", "2", *args,
                     timeout=90)


def lines(result: ProcResult) -> dict[str, tuple[str, str]]:
    out = {}
    for line in result.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("OK", "WARN", "FAIL", "SKIP"):
            out[parts[1]] = (parts[0], parts[2])
    return out


def assert_no_secrets(result: ProcResult, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.stdout and secret not in result.stderr


async def test_against_the_emulator_everything_is_ok(emulator: Emulator, tmp_path: Path) -> None:
    result = await doctor(write_config(tmp_path, emulator.url), "--transcode")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = lines(result)
    assert list(checks) == ["reachable", "pin", "version", "channels", "guide", "tuners", "recordings", "live",
                            "transcode"]
    assert {status for status, _ in checks.values()} == {"OK"}, checks
    assert "7.1.3" in checks["version"][1]
    assert "h264 + aac" in checks["live"][1] and "remux possible" in checks["live"][1]
    assert "<sid>" in checks["transcode"][1]
    assert f"of {emulator.config.tuners} tuners" in checks["tuners"][1]
    assert_no_secrets(result, TEST_PIN, *emulator.state.issued_sids, emulator.url, "127.0.0.1")
    assert emulator.state.transcodes_active == 0  # the transcode was stopped

    report = json.loads((await doctor(write_config(tmp_path, emulator.url), "--json")).stdout)
    assert report["ok"] is True
    live = next(c for c in report["checks"] if c["name"] == "live")["data"]
    assert live["video_codec"] == "h264" and live["audio_codecs"] == ["aac"] and live["remux_possible"] is True
    assert 0.5 <= live["keyframe_interval"] <= 4 and live["bitrate"] > 50_000


async def test_a_wrong_pin_fails_naming_the_pin(emulator: Emulator, tmp_path: Path) -> None:
    wrong = "55501234"
    result = await doctor(write_config(tmp_path, emulator.url, pin=wrong))
    assert result.returncode == 1
    checks = lines(result)
    assert checks["reachable"][0] == "OK"
    assert checks["pin"][0] == "FAIL" and "PIN" in checks["pin"][1]
    assert checks["channels"][0] == "SKIP"
    assert_no_secrets(result, wrong, TEST_PIN, *emulator.state.issued_sids)


async def test_nextpvr_down_fails_unreachable(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = await doctor(write_config(tmp_path, f"http://127.0.0.1:{port}"), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    first = report["checks"][0]
    assert (first["name"], first["status"]) == ("reachable", "FAIL") and "unreachable" in first["detail"]
    assert str(port) not in result.stdout


async def test_a_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nextpvr: {base_url: nowhere}\n")
    result = await doctor(bad)
    assert result.returncode == 2 and "nextpvr.pin" in result.stderr


async def test_an_mpeg2_channel_cannot_be_remuxed(tmp_path: Path) -> None:
    sample = tmp_path / "mpeg2.ts"
    made = await run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                     "-f", "lavfi", "-i", "sine=frequency=440", "-t", "4", "-c:v", "mpeg2video", "-g", "12",
                     "-c:a", "ac3", "-f", "mpegts", str(sample), timeout=60)
    assert made.returncode == 0, made.stderr
    fake = FakeNextPVR(pin=TEST_PIN)
    for method, name in (("setting.list", "setting_list"), ("channel.list", "channel_list"),
                         ("channel.listings", "channel_listings"), ("system.status", "system_status"),
                         ("recording.list", "recording_list")):
        fake.on(method, resource(name))

    async def live(request: web.Request) -> web.StreamResponse:
        assert request.query.get("sid") in fake.issued_sids
        return web.Response(body=sample.read_bytes(), content_type="video/mp2t")

    fake.on_path("/live", live)
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    try:
        result = await doctor(write_config(tmp_path, str(server.make_url("")).rstrip("/")), "--json")
    finally:
        await server.close()
    assert fake.unexpected == []
    report = json.loads(result.stdout)
    live_check = next(c for c in report["checks"] if c["name"] == "live")
    assert live_check["status"] == "WARN" and "remux not possible" in live_check["detail"]
    assert live_check["data"]["video_codec"] == "mpeg2" and live_check["data"]["audio_codecs"] == ["ac3"]
    assert live_check["data"]["remux_possible"] is False
    assert live_check["data"]["keyframe_interval"] == pytest.approx(12 / 25, abs=0.05)
    assert result.returncode == 0  # a warning, not a failure: the transcoder still serves the channel
    assert_no_secrets(result, TEST_PIN, *fake.issued_sids)


def test_segment_uri_shapes_hide_the_sid_and_the_address() -> None:
    sid = "0123456789abcdef"
    base = "http://192.168.1.20:8866"
    assert mask_uri(f"transcode/2/0.ts?sid={sid}", sid, base) == "transcode/2/0.ts?sid=<sid>"
    assert mask_uri(f"{base}/service?method=x&sid={sid}&n=1", sid, base) == "<nextpvr>/service?method=x&sid=<sid>&n=1"
    assert mask_uri(f"http://nextpvr.lan:8866/{sid}/0.ts", sid, base) == "<nextpvr>/<sid>/0.ts"
