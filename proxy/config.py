"""Configuration: one YAML file, parsed once into frozen, typed objects.

``load_config(path)`` reads the file, substitutes ``${VAR}`` (and ``${VAR:-default}``)
from the environment inside string values, and validates every key against the
dataclasses of ``config_model``. Anything wrong raises :class:`ConfigError`, whose message names
the file, the dotted key and what was expected, one line per problem. The CLI turns
it into exit code 2.

Sizes accept integers (bytes) or strings such as ``"4MiB"``; durations accept numbers
(seconds) or strings such as ``"30s"``, ``"5m"``, ``"1h"``.

The dataclasses live in ``config_model`` and the validating loader in ``config_loader``; this module
is the entry point and re-exports the dataclasses, so ``from proxy.config import Config`` works.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from proxy.config_loader import _Loader
from proxy.config_model import (
    AuthConfig,
    Config,
    DVRConfig,
    GuideConfig,
    HDHomeRunConfig,
    HLSConfig,
    LoggingConfig,
    NextPVRConfig,
    PathMapping,
    RecordingsConfig,
    ServerConfig,
    TimeoutConfig,
    TSConfig,
    UIConfig,
)

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "DVRConfig",
    "GuideConfig",
    "HDHomeRunConfig",
    "HLSConfig",
    "LoggingConfig",
    "NextPVRConfig",
    "PathMapping",
    "RecordingsConfig",
    "ServerConfig",
    "TSConfig",
    "TimeoutConfig",
    "UIConfig",
    "load_config",
    "parse_config",
]


class ConfigError(Exception):
    """The configuration file is unusable. ``str()`` is the message for the user."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"config error in {source}: {p}" for p in problems))


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, ["the file is not UTF-8 text"]) from None
    return parse_config(text, source=source, env=os.environ if env is None else env)


def parse_config(text: str, *, source: str = "<config>", env: Mapping[str, str]) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise ConfigError(source, [f"malformed YAML{where}: {problem}"]) from None
    if raw is None:
        raw = {}
    loader = _Loader(env)
    cfg = loader.build(Config, raw, "")
    loader.check(cfg)
    if loader.problems:
        raise ConfigError(source, loader.problems)
    assert isinstance(cfg, Config)
    return cfg
