"""``nextpvr-proxy doctor``: checks against the configured NextPVR, printed one line each.

Exit status: 0 when no check failed (warnings allowed), 1 otherwise (2, a bad config, is the
CLI's). ``--json`` prints the same as one JSON document for bug reports.
"""

from __future__ import annotations

import json
from typing import TextIO

from proxy import __version__
from proxy.config import Config
from proxy.doctor.checks import Check, Doctor, new_http
from proxy.nextpvr.client import NextPVRClient

__all__ = ["Check", "Doctor", "format_lines", "run_doctor"]


def format_lines(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    return "\n".join(f"{c.status:<4}  {c.name:<{width}}  {c.detail}" for c in checks)


async def run_doctor(config: Config, out: TextIO, *, as_json: bool = False, transcode: bool = False,
                     channel_id: int | None = None, probe_seconds: float = 5.0) -> int:
    async with new_http() as http:
        client = NextPVRClient(config.nextpvr, http)
        try:
            checks = await Doctor(config, client, probe_seconds=probe_seconds, channel_id=channel_id,
                                  transcode=transcode).run()
        finally:
            await client.logout_all()
    failed = any(c.status == "FAIL" for c in checks)
    if as_json:
        document = {"proxy_version": __version__, "ok": not failed, "checks": [c.as_dict() for c in checks]}
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(format_lines(checks) + "\n")
        out.write(("FAILED: " + ", ".join(c.name for c in checks if c.status == "FAIL") if failed
                   else "all checks passed" if all(c.status == "OK" for c in checks)
                   else "passed with warnings") + "\n")
    return 1 if failed else 0
