"""Two replicas behind the repository's nginx configuration (deploy/nginx/replicas.conf), with real
nginx, real ffmpeg viewers and the emulator as the one NextPVR both replicas share (issue 15).

- 20 ffmpeg viewers over 2 channels: each channel runs on exactly one replica (one transcode per
  channel at the emulator), and each segment reaches a replica once (nginx's cache, with its lock,
  collapses every other viewer's request: its access log says so per request).
- The replica that runs a channel is killed with SIGKILL: its viewers keep decoding through the other
  replica within 10 s, and NextPVR (the emulator) frees the dead replica's transcode by its own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from proxy.emulator import Emulator
from tests.conftest import TEST_PIN, EmulatorFactory
from tests.players import FFMPEG, needs_ffmpeg
from tests.processes import ROOT, Proc, free_port, spawn

pytestmark = [needs_ffmpeg, pytest.mark.slow]

CHANNELS = (7181, 7183)
VIEWERS_PER_CHANNEL = 10
SECRET = "replicas-share-this-token-secret-0123456789"

_NGINX_WRAPPER = """\
{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format replicas '$request_uri $upstream_addr $upstream_cache_status $status';
    access_log {tmp}/access.log replicas;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy_temp;
    fastcgi_temp_path {tmp}/fastcgi_temp;
    uwsgi_temp_path {tmp}/uwsgi_temp;
    scgi_temp_path {tmp}/scgi_temp;
    include {tmp}/site.conf;
}}
"""


def _replace(text: str, old: str, new: str, count: int) -> str:
    found = text.count(old)
    assert found == count, f"expected {old!r} {count} time(s) in replicas.conf, found {found}"
    return text.replace(old, new)


def nginx_conf(tmp: Path, port: int, replicas: list[int]) -> Path:
    """The shipped configuration with local ports and cache folders; everything else byte for byte."""
    text = (ROOT / "deploy" / "nginx" / "replicas.conf").read_text()
    text = _replace(text, "server replica-a:8080 ", f"server 127.0.0.1:{replicas[0]} ", 1)
    text = _replace(text, "server replica-b:8080 ", f"server 127.0.0.1:{replicas[1]} ", 1)
    text = _replace(text, "listen 80;", f"listen 127.0.0.1:{port};", 1)
    text = _replace(text, "/dev/shm/nextpvr-hls ", f"{tmp}/cache-segments ", 1)
    text = _replace(text, "/dev/shm/nextpvr-playlists ", f"{tmp}/cache-playlists ", 1)
    (tmp / "site.conf").write_text(text)
    conf = tmp / "nginx.conf"
    # as root, nginx's workers would run as nobody and could not write the cache under the test's folder
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(_NGINX_WRAPPER.format(tmp=tmp, user=user))
    return conf


@dataclass
class Replica:
    port: int
    proc: Proc


@contextlib.asynccontextmanager
async def replica(tmp: Path, name: str, emulator: Emulator, mode: str) -> AsyncIterator[Replica]:
    port = free_port()
    config = {
        "nextpvr": {"base_url": emulator.url, "pin": TEST_PIN},
        "server": {"host": "127.0.0.1", "port": port, "trust_forwarded_headers": True},
        "auth": {"token_secret": SECRET},
        "hls": {"mode": mode},
        "logging": {"level": "INFO", "access_log": False},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    async with spawn([sys.executable, "-m", "proxy", "serve", "--config", str(path)]) as proc:
        await proc.wait_for_line("listening on", timeout=30)
        yield Replica(port, proc)
        if proc.proc.returncode is None:
            await proc.terminate()
        assert not any(TEST_PIN in line for line in proc.lines), "the PIN reached a replica's log"


@dataclass
class Viewer:
    channel: int
    proc: asyncio.subprocess.Process
    #: (wall clock, decoded media time) at every progress report
    progress: list[tuple[float, float]] = field(default_factory=list)

    def decoded_at(self, when: float) -> float:
        before = [out for t, out in self.progress if t <= when]
        return before[-1] if before else 0.0

    def longest_stall_after(self, when: float) -> float:
        """The longest wall-clock time after ``when`` in which the decoded media time did not advance."""
        longest, last_change, last_out = 0.0, when, self.decoded_at(when)
        for t, out in self.progress:
            if t <= when:
                continue
            if out > last_out:
                longest = max(longest, t - last_change)
                last_change, last_out = t, out
        return max(longest, time.monotonic() - last_change)


async def watch(url: str, channel: int) -> Viewer:
    assert FFMPEG is not None
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-i", url, "-f", "null", "-",
        "-progress", "pipe:1", "-stats_period", "0.25",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    return Viewer(channel, proc)


async def read_progress(viewer: Viewer, changed: asyncio.Event) -> None:
    assert viewer.proc.stdout is not None
    async for raw in viewer.proc.stdout:
        line = raw.decode(errors="replace").strip()
        if line.startswith("out_time_us=") and line[12:].lstrip("-").isdigit():
            viewer.progress.append((time.monotonic(), int(line[12:]) / 1e6))
            changed.set()


def access_log(tmp: Path) -> list[tuple[str, str, str, str]]:
    path = tmp / "access.log"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        uri, upstream, cache, status = line.rsplit(" ", 3)
        rows.append((uri, upstream, cache, status))
    return rows


def channel_of(uri: str) -> int | None:
    for channel in CHANNELS:
        if uri.startswith((f"/live/{channel}.", f"/hls/live.{channel}.", f"/remux/remux.{channel}/")):
            return channel
    return None


def upstreams(emulator: Emulator, mode: str) -> int:
    """What NextPVR is doing for the proxies: transcodes, or /live connections the packager reads."""
    return emulator.state.transcodes_active if mode == "transcode" else emulator.state.live_streams_active


@contextlib.asynccontextmanager
async def front(tmp: Path, replicas: list[Replica]) -> AsyncIterator[str]:
    """Real nginx with the shipped replicas.conf over ``replicas``; its base URL. Stopped (SIGQUIT, then
    SIGKILL after 10 s) on the way out; its error log must hold no [emerg]/[crit] line."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.fail("nginx is not installed (scripts/setup.sh installs it)")
    port = free_port()
    conf = nginx_conf(tmp, port, [r.port for r in replicas])
    check = await asyncio.create_subprocess_exec(
        nginx, "-t", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await check.communicate()
    assert check.returncode == 0, err.decode()
    server = await asyncio.create_subprocess_exec(
        nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(10):  # nginx prints nothing when ready
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGQUIT)
            try:
                async with asyncio.timeout(10):
                    await server.wait()
            except TimeoutError:
                server.kill()
                await server.wait()
    log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
    assert "[emerg]" not in log and "[crit]" not in log, log


def home_replicas(tmp: Path) -> dict[int, set[str]]:
    """The replicas (upstream addresses) nginx sent each channel's requests to, from its access log."""
    home: dict[int, set[str]] = defaultdict(set)
    for uri, upstream, _cache, _status in access_log(tmp):
        of = channel_of(uri)
        if of is not None and upstream != "-":
            home[of].update(a.strip() for a in upstream.split(",") if a.strip() != "-")
    return home


@pytest.mark.parametrize("mode", ["remux", "transcode"])
async def test_two_replicas_behind_nginx_share_tuners_cache_segments_and_survive_a_kill(
        tmp_path: Path, emulator_factory: EmulatorFactory, mode: str) -> None:
    emulator = await emulator_factory(tuners=4)
    async with replica(tmp_path, "a", emulator, mode) as first, replica(tmp_path, "b", emulator, mode) as second:
        replicas = {f"127.0.0.1:{r.port}": r for r in (first, second)}
        viewers: list[Viewer] = []
        readers: list[asyncio.Task[None]] = []
        async with front(tmp_path, [first, second]) as base:
            try:
                for channel in CHANNELS:
                    for _ in range(VIEWERS_PER_CHANNEL):
                        viewers.append(await watch(f"{base}/live/{channel}.m3u8", channel))
                changed = asyncio.Event()
                readers = [asyncio.create_task(read_progress(v, changed)) for v in viewers]

                # every viewer decodes 8 s of media
                async with asyncio.timeout(60):
                    while not all(v.decoded_at(time.monotonic()) >= 8 for v in viewers):
                        changed.clear()
                        await changed.wait()
                assert upstreams(emulator, mode) == len(CHANNELS)  # one per channel, however many viewers
                started = emulator.state.counters.transcodes_started + emulator.state.counters.live_opened
                assert started == len(CHANNELS)

                rows = access_log(tmp_path)
                home = home_replicas(tmp_path)
                reached: Counter[str] = Counter()
                hits = 0
                for uri, upstream, cache, _status in rows:
                    if uri.startswith(("/hls/", "/remux/")):
                        if upstream != "-":
                            reached[uri.split("?")[0]] += 1
                        hits += cache == "HIT"
                assert all(len(home[c]) == 1 for c in CHANNELS), home  # one replica per channel
                assert reached and max(reached.values()) == 1, reached.most_common(3)  # each segment once
                assert hits >= len(reached) * (VIEWERS_PER_CHANNEL - 1) // 2, (hits, len(reached))

                # kill the replica that runs the first channel
                (victim_addr,) = home[CHANNELS[0]]
                victim = replicas[victim_addr]
                victim.proc.proc.send_signal(signal.SIGKILL)
                await victim.proc.proc.wait()
                killed_at = time.monotonic()
                await asyncio.sleep(20)  # an observation window: the viewers' progress over 20 s is the result
                stalls = sorted(v.longest_stall_after(killed_at) for v in viewers)
                print(f"\nlongest stall after the kill: median {stalls[len(stalls) // 2]:.1f} s, "
                      f"max {stalls[-1]:.1f} s; segment requests {sum(reached.values())} reached a replica, "
                      f"{hits} were cache hits")
                for v in viewers:
                    assert v.proc.returncode is None, f"an ffmpeg viewer of {v.channel} ended"
                    assert v.decoded_at(time.monotonic()) > v.decoded_at(killed_at) + 6, v.channel
                    assert v.longest_stall_after(killed_at) < 10, (v.channel, v.longest_stall_after(killed_at))
                # the dead replica's transcode is dropped by NextPVR's own expiry (15 s without a request);
                # its /live connection ends with its socket
                if mode == "transcode":
                    await emulator.state.wait_for(lambda: emulator.state.counters.transcodes_expired >= 1,
                                                  seconds=20)
                await emulator.state.wait_for(lambda: upstreams(emulator, mode) == len(CHANNELS), seconds=20)
                assert emulator.state.tuners_in_use == len(CHANNELS)  # both channels on the survivor
            finally:
                for v in viewers:
                    if v.proc.returncode is None:
                        v.proc.kill()
                for v in viewers:
                    await v.proc.wait()
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)


def test_compose_example_runs_two_replicas_of_the_image_behind_the_nginx_config() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.replicas.yml").read_text())
    services = compose["services"]
    single = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())["services"]["proxy"]
    conf = (ROOT / "deploy" / "nginx" / "replicas.conf").read_text()
    replicas = [name for name in services if name.startswith("replica-")]
    assert len(replicas) == 2
    for name in replicas:
        service = services[name]
        assert service["image"] == single["image"] and service["build"] == single["build"]
        assert service["env_file"] == "proxy.env" and service["environment"]["PROXY_TRUST_FORWARDED"] == "true"
        assert f"server {name}:8080 " in conf  # nginx balances over exactly these services
    nginx = services["nginx"]
    assert nginx["image"] == "nginx:1.22"  # Debian 12's nginx is 1.22: the same configuration language
    assert "./nginx/replicas.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    for volume in nginx["volumes"]:
        assert (ROOT / "deploy" / volume.split(":")[0]).exists()
    # the token secret is what lets one replica verify another's URLs: the example says to set it
    assert "PROXY_TOKEN_SECRET" in (ROOT / "deploy" / "docker-compose.replicas.yml").read_text()
