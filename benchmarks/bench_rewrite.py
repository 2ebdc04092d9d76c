"""Playlist rewriter benchmark: the line rewriter with the real ProxyUrlMapper against ``m3u8``.

    .venv/bin/python benchmarks/bench_rewrite.py [--quick]

For the 6-, 1,000- and 10,000-segment fixtures it times, in the same run:

* ``rewrite``: :func:`proxy.hls.rewrite.rewrite_playlist` with a fresh :class:`ProxyUrlMapper`
  (AES-SIV sealed tokens, sid scrubbing, file names): what the proxy really does per playlist;
* ``m3u8``: ``m3u8.loads(text, uri=base).dumps()``, which rewrites nothing at all;
* ``m3u8+map``: the same plus the same mapper applied to every segment URI, the like-for-like
  alternative (it still loses tags on other playlists, see the HLS notes);
* ``scan``: the rewriter with a mapper that returns a constant, i.e. everything but the token
  minting (tokenising, RFC 3986 resolution, PlaylistInfo, output), to show where the time goes;

and reports ``m3u8 / rewrite`` ratios, plus the longest single chunk of :func:`iter_rewrite`
(500 lines, the slice the proxy's transcodes use) on the 10,000-segment playlist, which must stay under 50 ms so that an
async caller yielding between chunks never blocks the event loop longer. Exit status 1 if not.
Times are the best of several repeats (``timeit``: garbage collection off), in milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a clean clone: the package is not installed
    sys.path.insert(0, str(ROOT))

import m3u8  # noqa: E402  (the baseline being compared against; never used by the proxy to write)

from proxy.hls.rewrite import UriKind, UriSite, iter_rewrite, rewrite_playlist  # noqa: E402
from proxy.hls.tokens import TokenSigner  # noqa: E402
from proxy.hls.url_mapper import ProxyUrlMapper  # noqa: E402

PLAYLISTS = ROOT / "tests" / "resources" / "playlists"
CASES = ("live_6seg", "vod_1000seg", "vod_10000seg")
BASE = "http://nextpvr.local:8866/hls/7.1/index.m3u8?client=livingroom&sid=9f1c2e"
CHUNK_LIMIT_MS = 50.0
#: what proxy/hls/transcode.py passes to iter_rewrite
CHUNK_LINES = 500
SEGMENT = UriSite(None, None, UriKind.MEDIA)


def make_mapper(signer: TokenSigner) -> ProxyUrlMapper:
    return ProxyUrlMapper(signer, scope="rec.866.720p", generation=1, expires=2_000_000_000,
                          origins=["http://nextpvr.local:8866"], secrets=["9f1c2e"])


def best_ms(fn: Callable[[], object], *, min_time: float, repeats: int) -> float:
    """Best per-call time in ms over ``repeats`` runs of a loop that lasts at least ``min_time``."""
    timer = timeit.Timer(fn)
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= min_time or number >= 1 << 20:
            break
        number *= 2 if elapsed <= 0 else max(2, min(10, int(min_time / elapsed) + 1))
    runs = [elapsed, *timer.repeat(repeat=repeats - 1, number=number)]
    return min(runs) / number * 1e3


def m3u8_with_mapper(text: str, signer: TokenSigner) -> str:
    mapper = make_mapper(signer)
    playlist = m3u8.loads(text, uri=BASE)
    for segment in playlist.segments:
        segment.uri = mapper(urljoin(BASE, segment.uri), SEGMENT)
    return str(playlist.dumps())


def constant(url: str, site: UriSite) -> str:
    return "/hls/scope/token/segment.ts"


def longest_chunk_ms(text: str, signer: TokenSigner, runs: int) -> tuple[float, int]:
    worst = 0.0
    count = 0
    for _ in range(runs):
        chunks = iter_rewrite(text, BASE, make_mapper(signer), lines_per_chunk=CHUNK_LINES).chunks()
        count = 0
        while True:
            started = time.perf_counter()
            chunk = next(chunks, None)
            elapsed = (time.perf_counter() - started) * 1e3
            if chunk is None:
                break
            count += 1
            worst = max(worst, elapsed)
    return worst, count


def run(quick: bool) -> dict[str, object]:
    """Measure everything; returns the rows (for a caller that aggregates benchmarks)."""
    min_time, repeats = (0.02, 3) if quick else (0.2, 7)
    signer = TokenSigner(b"benchmark-secret-benchmark-secret")
    rows = []
    for case in CASES:
        text = (PLAYLISTS / f"{case}.m3u8").read_text(encoding="utf-8")
        out, info = rewrite_playlist(text, BASE, make_mapper(signer))
        assert info.segment_count == len(m3u8.loads(text).segments), case
        rewrite = best_ms(lambda t=text: rewrite_playlist(t, BASE, make_mapper(signer)),  # type: ignore[misc]
                          min_time=min_time, repeats=repeats)
        plain = best_ms(lambda t=text: m3u8.loads(t, uri=BASE).dumps(),  # type: ignore[misc]
                        min_time=min_time, repeats=repeats)
        mapped = best_ms(lambda t=text: m3u8_with_mapper(t, signer),  # type: ignore[misc]
                         min_time=min_time, repeats=repeats)
        scan = best_ms(lambda t=text: rewrite_playlist(t, BASE, constant),  # type: ignore[misc]
                       min_time=min_time, repeats=repeats)
        rows.append({"playlist": case, "segments": info.segment_count, "bytes_in": len(text),
                     "bytes_out": len(out), "rewrite_ms": rewrite, "m3u8_ms": plain,
                     "m3u8_map_ms": mapped, "scan_ms": scan, "ratio": plain / rewrite,
                     "ratio_map": mapped / rewrite})
    worst, chunks = longest_chunk_ms((PLAYLISTS / "vod_10000seg.m3u8").read_text(encoding="utf-8"), signer,
                                     runs=3 if quick else 10)
    return {"rows": rows, "longest_chunk_ms": worst, "chunks": chunks, "quick": quick}


def report(result: dict[str, object]) -> str:
    rows = result["rows"]
    assert isinstance(rows, list)
    lines = [
        f"{'playlist':<14}{'segments':>9}{'rewrite ms':>12}{'m3u8 ms':>10}{'ratio':>7}"
        f"{'m3u8+map ms':>13}{'ratio':>7}{'scan ms':>9}{'out/in bytes':>14}",
    ]
    for r in rows:
        lines.append(
            f"{r['playlist']:<14}{r['segments']:>9}{r['rewrite_ms']:>12.3f}{r['m3u8_ms']:>10.3f}"
            f"{r['ratio']:>6.1f}x{r['m3u8_map_ms']:>13.3f}{r['ratio_map']:>6.1f}x{r['scan_ms']:>9.3f}"
            f"{r['bytes_out'] / r['bytes_in']:>13.2f}x")
    lines.append(f"iter_rewrite on vod_10000seg: {result['chunks']} chunks of {CHUNK_LINES} lines, longest "
                 f"{result['longest_chunk_ms']:.2f} ms (limit {CHUNK_LIMIT_MS:.0f} ms)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few short repeats (CI smoke run, seconds)")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print(report(result))
    longest = result["longest_chunk_ms"]
    assert isinstance(longest, float)
    if longest >= CHUNK_LIMIT_MS:
        print(f"FAIL: a chunk blocked for {longest:.1f} ms", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
