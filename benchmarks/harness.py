"""The benchmark machinery: media, nginx instances, the emulator, proxy processes, wrk, /proc readings.

Layout of one benchmark run (anchors.md's method):

- core 0 (``taskset -c 0``): the upstream nginx (sendfile, one worker, the media files), the
  NextPVR emulator behind it (the API only), the baseline nginx ``proxy_pass``, nginx with a
  memory-backed ``proxy_cache`` (``nginx/cache.conf``) and the proxy;
- core 1: the load generators (wrk with one thread, the Python clients) and this process.

Everything lives in one temporary directory that is removed at the end, and every process is
started in its own session so that it (and its children) can be stopped by process group, in
reverse order of start, even when a case fails. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
PIN = "0000"
#: the channel every live case watches, and the recording the relay cases read
CHANNEL = 7181
RECORDING = 866
START_CHANNELS = (7181, 7182, 7183, 7184)
SERVER_CORE = 0
CLIENT_CORE = 1
#: 4 MiB rounded down to whole 188-byte TS packets
RECORDING_BYTES = (4 * 1024 * 1024 // 188) * 188
LIVE_SEGMENTS = 10
SEGMENT_SECONDS = 2
VIDEO_BITRATE = "5M"


class BenchError(RuntimeError):
    """The machinery broke (a process did not start, a tool is missing): the run fails."""


# -- small helpers -------------------------------------------------------------------------------
def cores() -> int:
    return len(os.sched_getaffinity(0))


def can_pin() -> bool:
    return shutil.which("taskset") is not None and os.cpu_count() is not None and (os.cpu_count() or 1) >= 2


def pinned(cmd: Sequence[str], core: int) -> list[str]:
    """``taskset -c <core> cmd`` where that is possible (two cores or more), else ``cmd``."""
    if can_pin():
        return ["taskset", "-c", str(core), *cmd]
    return list(cmd)


def pin_self(core: int = CLIENT_CORE) -> None:
    """Run this process (and the clients it starts) on the load generator's core."""
    if can_pin():
        os.sched_setaffinity(0, {core})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def http_get(url: str, *, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, *, timeout: float, proc: Proc | None = None, want: int = 200) -> None:
    """Poll ``url`` until it answers ``want``; BenchError on timeout or when ``proc`` died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode} before answering; "
                             f"log: {proc.log_tail()}")
        try:
            status, _ = http_get(url, timeout=2.0)
            if status == want:
                return
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise BenchError(f"{url} did not answer {want} within {timeout:.0f}s (last: {last})")


# -- /proc ---------------------------------------------------------------------------------------
def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise BenchError(f"no VmHWM for pid {pid}")


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of ``pids`` (their threads included), in seconds."""
    user, system = cpu_split(pids)
    return user + system


def cpu_split(pids: Sequence[int]) -> tuple[float, float]:
    """User and system CPU time of ``pids`` (utime, stime of ``/proc/<pid>/stat``), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) / ticks
            system += int(fields[12]) / ticks
    return user, system


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# -- processes -----------------------------------------------------------------------------------
class Proc:
    """A child process in its own session, stopped (group-wide) by :meth:`stop`."""

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(list(cmd), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        # children that outlived their parent (nginx workers) go with the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


def run_tool(cmd: Sequence[str], *, timeout: float, what: str) -> str:
    """Run a bounded command; its stdout, or BenchError with its stderr."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} did not finish within {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise BenchError(f"{what} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-1500:]}")
    return done.stdout.decode(errors="replace")


# -- media ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Media:
    root: Path
    #: the live channel's byte rate (bytes/s): what nginx paces /live?channeloid= at
    channel_rate: int
    segment_bytes: int
    recording_bytes: int


def make_media(root: Path, *, seconds: int = 20, loops: int = 4) -> Media:
    """Real ffmpeg output (H.264 720p at 5 Mbit/s + AAC in MPEG-TS, a keyframe every 2 s):

    - ``live/seg0.ts`` .. ``seg9.ts``: 2 s segments of about 1.33 MB (transcode segment n is seg<n mod 10>);
    - ``recording.ts``: the first 4 MiB of the stream (whole packets), the recording;
    - ``channel.ts``: the stream repeated ``loops`` times, the live channel (paced by nginx).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BenchError("ffmpeg is not installed (bash scripts/setup.sh)")
    (root / "live").mkdir(parents=True)
    stream = root / "stream.ts"
    run_tool([ffmpeg, "-v", "error", "-y",
              "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25",
              "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
              "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", VIDEO_BITRATE,
              "-minrate", VIDEO_BITRATE, "-maxrate", VIDEO_BITRATE, "-bufsize", "2M",
              "-g", str(25 * SEGMENT_SECONDS), "-keyint_min", str(25 * SEGMENT_SECONDS), "-sc_threshold", "0",
              "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", str(stream)],
             timeout=120, what="ffmpeg (media)")
    run_tool([ffmpeg, "-v", "error", "-y", "-i", str(stream), "-c", "copy", "-map", "0",
              "-f", "segment", "-segment_time", str(SEGMENT_SECONDS), "-segment_format", "mpegts",
              str(root / "live" / "part%d.ts")], timeout=60, what="ffmpeg (segments)")
    parts = sorted((root / "live").glob("part*.ts"), key=lambda p: int(p.stem[4:]))
    # a last short piece would make one segment much smaller than the others
    parts = [p for p in parts if p.stat().st_size > 0.8 * parts[0].stat().st_size] or parts
    for n in range(LIVE_SEGMENTS):
        shutil.copyfile(parts[n % len(parts)], root / "live" / f"seg{n}.ts")
    data = stream.read_bytes()
    if len(data) < RECORDING_BYTES:
        raise BenchError(f"ffmpeg made only {len(data)} bytes")
    (root / "recording.ts").write_bytes(data[:RECORDING_BYTES])
    with open(root / "channel.ts", "wb") as out:
        for _ in range(loops):
            out.write(data)
    sizes = [(root / "live" / f"seg{n}.ts").stat().st_size for n in range(LIVE_SEGMENTS)]
    return Media(root, channel_rate=len(data) // seconds, segment_bytes=int(median(sizes)),
                 recording_bytes=RECORDING_BYTES)


# -- nginx ---------------------------------------------------------------------------------------
def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        raise BenchError("nginx is not installed (bash scripts/setup.sh)")
    return found


def nginx_version() -> str:
    done = subprocess.run([nginx_binary(), "-v"], capture_output=True, timeout=10, check=False)
    return done.stderr.decode().strip().replace("nginx version: ", "")


@dataclass
class Nginx:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)


def per_gb(cpu: float, delivered: int) -> float:
    """CPU seconds per 10^9 bytes delivered."""
    return cpu / (delivered / 1e9) if delivered else float("nan")


def memory_dir(prefix: str) -> tuple[Path, bool]:
    """A fresh directory on a memory-backed file system (``/dev/shm`` when it is tmpfs), and whether it
    is one; else a plain temporary directory (and False), so the run still works and says so."""
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        mounts = Path("/proc/mounts").read_text().split("\n")
        if any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts if line.strip()) \
                and os.access(shm, os.W_OK):
            return Path(tempfile.mkdtemp(prefix=prefix, dir=shm)), True
    return Path(tempfile.mkdtemp(prefix=prefix)), False


def start_nginx(name: str, template: str, workdir: Path, subs: dict[str, str]) -> Nginx:
    port = free_port()
    text = (HERE / "nginx" / template).read_text()
    values = {"DIR": str(workdir), "PORT": str(port),
              "USER": "user root root;" if os.geteuid() == 0 else "", **subs}
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BenchError(f"unfilled placeholders in {template}: {sorted(set(left))}")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / f"{name}-tmp" / sub).mkdir(parents=True, exist_ok=True)
    conf = workdir / f"{name}.conf"
    conf.write_text(text)
    cmd = [nginx_binary(), "-p", str(workdir), "-e", str(workdir / f"{name}-error.log"), "-c", str(conf),
           "-g", "daemon off;"]
    run_tool([*cmd[:-2], "-t"], timeout=20, what=f"nginx -t ({name})")
    proc = Proc(name, pinned(cmd, SERVER_CORE), workdir / f"{name}.out")
    nginx = Nginx(proc, port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise BenchError(f"nginx {name} exited: {proc.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return nginx
        time.sleep(0.05)
    raise BenchError(f"nginx {name} did not listen within 10s")


# -- wrk -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WrkResult:
    seconds: float
    requests: int
    bytes: int
    errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds

    def as_dict(self) -> dict[str, float]:
        return {"mb_per_s": self.mb_per_s, "req_per_s": self.req_per_s, "p50_ms": self.p50_ms,
                "p90_ms": self.p90_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms,
                "requests": self.requests, "errors": self.errors, "timeouts": self.timeouts}


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not installed (bash scripts/setup.sh installs it)")
    return found


def run_wrk(url: str, *, connections: int, seconds: float, paths: Path | None = None,
            timeout: float = 30.0) -> WrkResult:
    """wrk with one thread on the client core; ``paths``: round-robin over these request paths."""
    cmd = [wrk_binary(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout:.0f}s",
           "-s", str(HERE / "wrk_report.lua"), url]
    if paths is not None:
        cmd += ["--", str(paths)]
    out = run_tool(pinned(cmd, CLIENT_CORE), timeout=seconds + timeout + 30, what="wrk")
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            d = json.loads(line[len("WRK_JSON "):])
            errors = d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["status_errors"]
            return WrkResult(seconds=d["duration_us"] / 1e6, requests=d["requests"], bytes=d["bytes"],
                             errors=errors, timeouts=d["timeouts"], p50_ms=d["lat_p50_us"] / 1e3,
                             p90_ms=d["lat_p90_us"] / 1e3, p99_ms=d["lat_p99_us"] / 1e3,
                             max_ms=d["lat_max_us"] / 1e3)
    raise BenchError(f"wrk printed no summary: {out[-1000:]}")


# -- the proxy -----------------------------------------------------------------------------------
@dataclass
class ProxyProc:
    proc: Proc
    port: int
    loop: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def hwm_mb(self) -> float:
        return vm_hwm_kib(self.pid) / 1024

    def rss_mb(self) -> float:
        return vm_rss_kib(self.pid) / 1024


def proxy_config(upstream_port: int, port: int, loop: str, extra: str = "") -> str:
    # access logs off on both sides (nginx too): the benchmark measures serving, not logging.
    # The cases compare the proxy with nginx ``proxy_pass`` of NextPVR's transcode, so HLS goes
    # through the transcode unless a case asks for another mode (``hls.mode`` defaults to auto,
    # which would remux and leave the transcode baseline nothing to compare with).
    hls = "" if "hls:" in extra else "hls:\n  mode: transcode\n"
    return (f"nextpvr:\n  base_url: 'http://127.0.0.1:{upstream_port}'\n  pin: '{PIN}'\n"
            f"server:\n  host: '127.0.0.1'\n  port: {port}\n  event_loop: {loop}\n"
            f"logging:\n  level: WARNING\n  access_log: false\n{hls}{extra}")


# -- the whole set-up ------------------------------------------------------------------------------
@dataclass
class Workspace:
    """Media, upstream nginx + emulator, baseline nginx; proxies started per case."""

    dir: Path
    media: Media
    emulator_port: int
    upstream: Nginx
    baseline: Nginx
    #: nginx ``proxy_cache`` + ``proxy_cache_lock`` on tmpfs in front of the same upstream
    cache: Nginx
    #: whether that cache really is memory-backed (tmpfs)
    cache_in_memory: bool
    stack: contextlib.ExitStack
    #: the directory whose ``proxy`` package is benchmarked (another checkout, to compare a change)
    proxy_src: Path = ROOT
    #: a second proxy source measured next to it in the same run (``run.py --against``), or None
    against_src: Path | None = None
    _proxies: int = 0

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def emulator_state(self) -> dict[str, Any]:
        status, body = http_get(self.emulator_url + "/_emulator/state")
        if status != 200:
            raise BenchError(f"emulator state: HTTP {status}")
        result: dict[str, Any] = json.loads(body)
        return result

    @contextlib.contextmanager
    def proxy(self, loop: str, extra_config: str = "", *, src: Path | None = None) -> Iterator[ProxyProc]:
        """A fresh proxy process (``serve --config``) on core 0, ready (``/readyz``), stopped on exit."""
        self._proxies += 1
        port = free_port()
        conf = self.dir / f"proxy{self._proxies}.yaml"
        conf.write_text(proxy_config(self.upstream.port, port, loop, extra_config))
        src = src or self.proxy_src
        env = {**os.environ, "PYTHONPATH": str(src)}
        proc = Proc(f"proxy-{loop}", pinned([PYTHON, "-m", "proxy", "serve", "--config", str(conf)], SERVER_CORE),
                    self.dir / f"proxy{self._proxies}.log", cwd=src, env=env)
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30, proc=proc)
            yield ProxyProc(proc, port, loop)
        finally:
            proc.stop()

    def cache_fetches(self) -> int:
        """Requests nginx-cache passed to the upstream so far (not HITs), by its own log."""
        path = self.dir / "cache-fetched.log"
        return len(path.read_bytes().splitlines()) if path.exists() else 0

    def segment_log_size(self) -> int:
        path = self.dir / "segments.log"
        return path.stat().st_size if path.exists() else 0

    def segment_fetches(self, since: int) -> Counter[str]:
        """Upstream requests per transcode segment path since byte ``since`` of nginx's segment log."""
        path = self.dir / "segments.log"
        if not path.exists():
            return Counter()
        with open(path, "rb") as f:
            f.seek(since)
            return Counter(line.strip() for line in f.read().decode().splitlines() if line.strip())


def proxy_source(spec: str | Path, tmp: Path) -> Path:
    """The directory whose ``proxy`` package is run: ``spec`` itself, or for ``git:REV`` that commit's
    ``proxy/`` exported into ``tmp`` (so uncommitted work in the checkout does not leak in)."""
    text = str(spec)
    if text.startswith("git:"):
        rev = text[4:] or "HEAD"
        dest = tmp / f"src-{rev.replace('/', '_')}"
        dest.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "proxy"], capture_output=True,
                                 timeout=60, check=False)
        if archive.returncode != 0:
            raise BenchError(f"git archive {rev}: {archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, timeout=60, check=True)
        return dest
    path = Path(text).resolve()
    if not (path / "proxy" / "__main__.py").exists():
        raise BenchError(f"no proxy package in {path}")
    return path


@contextlib.contextmanager
def workspace(*, keep: bool = False, proxy_src: str | Path = ROOT, live_loops: int = 4,
              live_speed: float = 1.0, against: str | Path | None = None) -> Iterator[Workspace]:
    """Build everything in a temporary directory; tear it all down (processes, files) on exit.

    ``live_loops`` (20 s each) sets how long the live channel runs before it ends; ``live_speed``
    sends it that many times faster than its bitrate (the timeshift case fills 10 minutes in one);
    ``against``: a second proxy source measured in the same fan-out runs."""
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="nextpvr-bench-"))
        if not keep:
            stack.callback(shutil.rmtree, tmp, True)
        # nginx workers may run as another user: let them read the media
        os.chmod(tmp, 0o755)
        media = make_media(tmp / "media", loops=live_loops)
        for path in [tmp / "media", *(tmp / "media").rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        static = tmp / "static"
        (static / "static").mkdir(parents=True)
        os.chmod(static, 0o755)
        os.chmod(static / "static", 0o755)

        emulator_port = free_port()
        emulator = Proc("emulator", pinned([PYTHON, "-m", "proxy", "emulator", "--port", str(emulator_port),
                                            "--tuners", "32", "--pin", PIN, "--log-level", "WARNING",
                                            "--segment-seconds", str(SEGMENT_SECONDS)], SERVER_CORE),
                        tmp / "emulator.log", cwd=ROOT)
        stack.callback(emulator.stop)
        wait_http(f"http://127.0.0.1:{emulator_port}/_emulator/state", timeout=30, proc=emulator)

        upstream = start_nginx("upstream", "upstream.conf", tmp, {
            "MEDIA": str(media.root), "EMULATOR_PORT": str(emulator_port),
            "CHANNEL_RATE": str(int(media.channel_rate * live_speed))})
        stack.callback(upstream.proc.stop)
        baseline = start_nginx("baseline", "baseline.conf", tmp, {
            "UPSTREAM_PORT": str(upstream.port), "STATIC": str(static)})
        stack.callback(baseline.proc.stop)
        cache_dir, in_memory = memory_dir("nextpvr-bench-cache-")
        stack.callback(shutil.rmtree, cache_dir, True)
        os.chmod(cache_dir, 0o777)  # nginx's workers may run as another user
        cache = start_nginx("cache", "cache.conf", tmp, {
            "UPSTREAM_PORT": str(upstream.port), "CACHE_DIR": str(cache_dir)})
        stack.callback(cache.proc.stop)
        ws = Workspace(tmp, media, emulator_port, upstream, baseline, cache, in_memory, stack,
                       proxy_source(proxy_src, tmp), proxy_source(against, tmp) if against else None)
        yield ws


def write_static(ws: Workspace, name: str, body: bytes) -> str:
    """Serve ``body`` from the baseline nginx as a static file; its URL."""
    path = ws.dir / "static" / "static" / name
    path.write_bytes(body)
    os.chmod(path, 0o644)
    return f"{ws.baseline.url}/static/{name}"


def describe_source(spec: str | Path) -> str:
    """What ``--proxy-src`` named, with the commit for ``git:REV``."""
    text = str(spec)
    rev = (text[4:] or "HEAD") if text.startswith("git:") else "HEAD"
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True,
                          timeout=10, check=False)
    commit = done.stdout.strip() or "?"
    if text.startswith("git:"):
        return f"commit {commit} ({text})"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "proxy"], capture_output=True,
                           text=True, timeout=10, check=False).stdout.strip()
    return f"{text} (checkout at {commit}{', with uncommitted changes in proxy/' if dirty else ''})"


def machine() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": subprocess.run(["date"], capture_output=True, text=True, check=False).stdout.strip(),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "nginx": nginx_version(),
        "wrk": shutil.which("wrk") or "missing",
        "pinning": "taskset -c 0 (servers) / -c 1 (clients)" if can_pin() else "none (fewer than 2 cores)",
    }
