"""Configuration: the minimal file works, every bad input is one clear line and exit code 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from proxy.config import Config, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = """\
nextpvr:
  base_url: "http://127.0.0.1:8866"
  pin: "0000"
server:
  host: "127.0.0.1"
  port: 8080
"""


def test_minimal_file_is_enough(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL)
    cfg = load_config(path, env={})
    assert cfg.nextpvr.base_url == "http://127.0.0.1:8866"
    assert cfg.nextpvr.pin == "0000"
    assert cfg.server.port == 8080
    assert cfg.hls.idle_timeout == 30.0
    assert cfg.ts.linger == 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]


def test_env_interpolation_and_units() -> None:
    text = MINIMAL.replace('pin: "0000"', 'pin: "${PIN}"') + textwrap.dedent("""\
        ts:
          viewer_buffer_bytes: 2MiB
          linger: "1.5s"
        hls:
          idle_timeout: "${IDLE:-45}"
          segment_cache_bytes: "${CACHE}"
        auth:
          token_ttl: 2h
        """)
    cfg = parse_config(text, env={"PIN": "918273", "CACHE": "1048576"})
    assert cfg.nextpvr.pin == "918273"
    assert cfg.ts.viewer_buffer_bytes == 2 * 1024 * 1024
    assert cfg.ts.linger == 1.5
    assert cfg.hls.idle_timeout == 45.0
    assert cfg.hls.segment_cache_bytes == 1048576
    assert cfg.auth.token_ttl == 7200.0


def _keys(cls: type, prefix: str = "") -> set[str]:
    out: set[str] = set()
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, f in hints.items():
        key = f"{prefix}{name}"
        out.add(key)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out |= _keys(type(default), key + ".")
    return out


def _yaml_keys(data: object, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            out.add(f"{prefix}{k}")
            out |= _yaml_keys(v, f"{prefix}{k}.")
    return out


def test_example_config_loads_and_lists_every_option() -> None:
    example = ROOT / "config.example.yaml"
    cfg = load_config(example, env={})
    assert cfg.nextpvr.pin == "0000"
    documented = _yaml_keys(yaml.safe_load(example.read_text()))
    expected = _keys(Config)
    missing = sorted(k for k in expected if k not in documented)
    assert not missing, f"config.example.yaml does not document: {missing}"
    # and the example's values are the defaults (except the two required keys)
    assert cfg.hls == Config(nextpvr=cfg.nextpvr).hls
    assert cfg.ts == Config(nextpvr=cfg.nextpvr).ts
    assert cfg.server == Config(nextpvr=cfg.nextpvr).server
    assert cfg.auth == Config(nextpvr=cfg.nextpvr).auth
    assert cfg.guide == Config(nextpvr=cfg.nextpvr).guide


BAD_CASES = {
    "missing required key": ("nextpvr:\n  pin: '1'\n", "nextpvr.base_url", "required"),
    "wrong type": (MINIMAL.replace("port: 8080", "port: eighty"), "server.port", "integer"),
    "unknown key": (MINIMAL + "  colour: blue\n", "server.colour", "unknown key"),
    "unset variable": (MINIMAL.replace('"0000"', '"${NO_SUCH_PIN_VAR}"'), "nextpvr.pin", "NO_SUCH_PIN_VAR"),
    "malformed yaml": ("nextpvr: [unclosed\n", "malformed YAML", "line"),
    "not http": (MINIMAL.replace("http://127.0.0.1:8866", "ftp://127.0.0.1"), "nextpvr.base_url",
                 "http:// or https://"),
    "unquoted pin": (MINIMAL.replace('"0000"', "1234"), "nextpvr.pin", "quote"),
    "bad size": (MINIMAL + "ts:\n  viewer_buffer_bytes: lots\n", "ts.viewer_buffer_bytes", "size"),
    "bad choice": (MINIMAL + "logging:\n  format: xml\n", "logging.format", "'human'"),
    "passthrough http": (MINIMAL + "hls:\n  passthrough_schemes: [skd, HTTP]\n", "hls.passthrough_schemes[1]",
                         "not http"),
    "passthrough junk": (MINIMAL + "hls:\n  passthrough_schemes: ['s k d']\n", "hls.passthrough_schemes[0]",
                         "URI scheme"),
    "token cache": (MINIMAL + "auth:\n  token_cache_entries: -1\n", "auth.token_cache_entries", "between 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_config_is_one_clear_line(case: str) -> None:
    text, key, expected = BAD_CASES[case]
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="cfg.yaml", env={})
    message = str(err.value)
    assert key in message
    assert expected in message
    assert "cfg.yaml" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("case", ["wrong type", "unset variable", "malformed yaml", "not http"])
def test_cli_exit_code_2_without_traceback(case: str, tmp_path: Path) -> None:
    text, key, _ = BAD_CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "proxy", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0]
    assert key in lines[0]


def test_cli_check_config_ok(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(MINIMAL)
    proc = subprocess.run([sys.executable, "-m", "proxy", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
