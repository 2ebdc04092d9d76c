"""Command line: ``nextpvr-proxy serve | emulator | demo | check-config | doctor``.

Exit codes: 0 success, 2 bad configuration or usage, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

from proxy import __version__
from proxy.config import Config, ConfigError, load_config, parse_config
from proxy.log import register_secret, setup_logging

__all__ = ["main"]

log = logging.getLogger("proxy")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nextpvr-proxy", description="HLS / MPEG-TS reverse proxy for NextPVR")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the proxy")
    s.add_argument("--config", "-c", required=True, help="YAML configuration file")

    c = sub.add_parser("check-config", help="validate a configuration file and exit")
    c.add_argument("config", help="YAML configuration file")

    dr = sub.add_parser("doctor", help="check everything the proxy needs from the configured NextPVR")
    dr.add_argument("--config", "-c", required=True, help="YAML configuration file")
    dr.add_argument("--json", action="store_true", help="one JSON document (attach it to bug reports)")
    dr.add_argument("--transcode", action="store_true",
                    help="also start a transcode, fetch its playlist and stop it (uses a tuner briefly)")
    dr.add_argument("--channel", type=int, help="NextPVR channel id to read (default: the first TV channel)")
    dr.add_argument("--seconds", type=float, default=5.0, help="length of the live read (default 5)")

    e = sub.add_parser("emulator", help="run the built-in NextPVR emulator")
    _emulator_args(e, default_port=8866)
    e.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    d = sub.add_parser("demo", help="run the emulator and the proxy in one process on loopback")
    d.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    d.add_argument("--config", "-c",
                   help="optional proxy config; nextpvr.base_url is replaced by the emulator")
    _emulator_args(d, default_port=8866, prefix="emulator-")
    d.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _emulator_args(p: argparse.ArgumentParser, *, default_port: int, prefix: str = "") -> None:
    p.add_argument(f"--{prefix}host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument(f"--{prefix}port", type=int, default=default_port, help=f"port (default {default_port})")
    p.add_argument("--pin", default="0000", help="the emulated NextPVR's PIN (default 0000)")
    p.add_argument("--tuners", type=int, default=4, help="number of emulated tuners (default 4)")
    p.add_argument("--segment-uri-style", choices=["relative", "query", "absolute"], default="relative",
                   help="shape of segment URIs in transcoder playlists")
    p.add_argument("--segment-seconds", type=int, default=2, help="HLS segment length (default 2)")
    p.add_argument("--transcode-expiry", type=float, default=15.0,
                   help="seconds without activity before a transcode is dropped (default 15)")


def _emulator_config(args: argparse.Namespace) -> object:
    from proxy.emulator import EmulatorConfig

    return EmulatorConfig(pin=args.pin, tuners=args.tuners, segment_uri_style=args.segment_uri_style,
                          segment_seconds=args.segment_seconds, transcode_expiry=args.transcode_expiry)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            cfg = load_config(args.config)
            print(f"{args.config}: ok (NextPVR at {cfg.nextpvr.base_url}, "
                  f"listening on {cfg.server.host}:{cfg.server.port})")
            return 0
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "serve":
            cfg = load_config(args.config)
            return _run(cfg, _serve_coro(cfg))
        if args.command == "emulator":
            setup_logging(args.log_level)
            from proxy.runner import new_event_loop

            loop = new_event_loop("asyncio")
            try:
                loop.run_until_complete(_emulator(args))
            finally:
                loop.close()
            return 0
        if args.command == "demo":
            cfg = _demo_config(args)
            return _run(cfg, _demo(args, cfg))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 2


def _doctor(args: argparse.Namespace) -> int:
    from proxy.doctor import run_doctor
    from proxy.runner import new_event_loop

    cfg = load_config(args.config)
    # only warnings reach stderr: the checks' own lines are the output
    setup_logging("WARNING", cfg.logging.format)
    register_secret(cfg.nextpvr.pin)
    loop = new_event_loop("asyncio")
    try:
        return loop.run_until_complete(run_doctor(cfg, sys.stdout, as_json=args.json, transcode=args.transcode,
                                                  channel_id=args.channel, probe_seconds=args.seconds))
    finally:
        loop.close()


def _run(cfg: Config, coro: object) -> int:
    from proxy.runner import new_event_loop

    setup_logging(cfg.logging.level, cfg.logging.format)
    register_secret(cfg.nextpvr.pin)
    for key in cfg.auth.api_keys:
        register_secret(key)
    register_secret(cfg.auth.admin_key)
    register_secret(cfg.auth.token_secret)
    loop = new_event_loop(cfg.server.event_loop)
    try:
        loop.run_until_complete(coro)  # type: ignore[arg-type]
    except OSError as exc:
        log.error("cannot start: %s", exc.strerror or exc)
        return 1
    finally:
        loop.close()
    return 0


async def _serve_coro(cfg: Config) -> None:
    from proxy.runner import serve

    await serve(cfg)


def _demo_config(args: argparse.Namespace) -> Config:
    emulator_url = f"http://{args.emulator_host}:{args.emulator_port}"
    if args.config:
        cfg = load_config(args.config)
        cfg = replace(cfg, nextpvr=replace(cfg.nextpvr, base_url=emulator_url, pin=args.pin))
    else:
        text = (f"nextpvr:\n  base_url: {emulator_url!r}\n  pin: {args.pin!r}\n"
                f"server:\n  host: '127.0.0.1'\n  port: {args.port}\n"
                f"logging:\n  level: {args.log_level}\n")
        cfg = parse_config(text, source="<demo>", env={})
    return replace(cfg, server=replace(cfg.server, port=args.port))


async def _emulator(args: argparse.Namespace) -> None:
    from proxy.emulator import Emulator
    from proxy.runner import run_forever

    async def main(stop: asyncio.Event) -> None:
        emulator = Emulator(_emulator_config(args))  # type: ignore[arg-type]
        await emulator.start(args.host, args.port)
        print(f"NextPVR emulator on {emulator.url} (PIN {args.pin}, {args.tuners} tuners)", flush=True)
        try:
            await stop.wait()
        finally:
            await emulator.stop()

    await run_forever(main)


async def _demo(args: argparse.Namespace, cfg: Config) -> None:
    from proxy.app import create_app
    from proxy.emulator import Emulator
    from proxy.runner import run_forever, start_site

    async def main(stop: asyncio.Event) -> None:
        emulator = Emulator(_emulator_config(args))  # type: ignore[arg-type]
        await emulator.start(args.emulator_host, args.emulator_port)
        app = create_app(cfg)
        runner, port = await start_site(app, cfg.server.host, cfg.server.port,
                                        shutdown_timeout=cfg.server.shutdown_grace)
        base = f"http://{cfg.server.host}:{port}"
        try:
            from proxy.emulator.data import CHANNELS

            channels = [(c.formatted_number, c.name, c.oid) for c in CHANNELS]
            lines = [
                "",
                f"nextpvr-hls-proxy demo: proxy on {base}, NextPVR emulator on {emulator.url}",
                "",
                f"  Channel list (VLC, Kodi IPTV Simple):  {base}/playlist.m3u",
                f"  TV guide (XMLTV):                      {base}/epg.xml",
                f"  HDHomeRun tuner (Plex/Jellyfin/Emby):  {base}",
                f"  Metrics:                               {base}/metrics",
                "",
                "  Channels:",
            ]
            for number, name, oid in channels:
                lines.append(f"    {number:>5}  {name:<14} "
                             f"HLS: {base}/live/{oid}.m3u8   TS: {base}/live/{oid}.ts")
            lines += ["", f"  Try:  ffplay {base}/live/{channels[0][2]}.m3u8", "  Stop with Ctrl-C.", ""]
            print("\n".join(lines), flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()
            await emulator.stop()

    await run_forever(main)
