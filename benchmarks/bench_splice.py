"""Cost of joining a new NextPVR transcode onto the old timeline (``proxy/media/rejoin.py``).

    .venv/bin/python benchmarks/bench_splice.py

With the committed sample's 6-second segments (H.264 + AAC), it times, once per segment (the
splice runs when a segment enters the shared cache, never per viewer):

* ``base``: reading the old generation's end from its last segment (once per restart);
* ``anchor``: rewriting the new generation's first segment whole (offset, AAC trim, counters);
* ``later``: every later segment of the new generation, fed in 256 KiB reads as the cache reads
  them (shift + continuity constants), reported per MB;
* ``pass``: a segment of a generation with nothing to join (the first transcode), per MB;

and the ratio ``later / pass``. Times are the best of 5 repeats, in milliseconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a clean clone: the package is not installed
    sys.path.insert(0, str(ROOT))

from proxy.media.library import MediaLibrary  # noqa: E402
from proxy.media.rejoin import Join, SegmentRewriter, audio_ends  # noqa: E402
from proxy.media.timeline import timeline_end  # noqa: E402

_READ = 256 * 1024


def _stream(rewriter: SegmentRewriter, segment: bytes) -> None:
    for pos in range(0, len(segment), _READ):
        rewriter.feed(segment[pos : pos + _READ])
    rewriter.finish()


def main() -> int:
    source = MediaLibrary.load().source("testcard")
    old = source.segment(20, 6)
    new = [source.segment(n, 6) for n in range(18, 24)]
    later_mb = sum(map(len, new[1:])) / 1e6
    best: dict[str, float] = {}
    for _ in range(5):
        t0 = time.perf_counter()
        base = timeline_end([old])
        join = Join(base, audio_ends(old, base))
        t1 = time.perf_counter()
        anchor = SegmentRewriter(join, anchor=True)
        _stream(anchor, new[0])
        anchor.complete()
        t2 = time.perf_counter()
        for segment in new[1:]:
            _stream(SegmentRewriter(join, anchor=False), segment)
        t3 = time.perf_counter()
        for segment in new[1:]:
            _stream(SegmentRewriter(None, anchor=False), segment)
        t4 = time.perf_counter()
        for name, spent in (("base", t1 - t0), ("anchor", t2 - t1), ("later", t3 - t2), ("pass", t4 - t3)):
            best[name] = min(best.get(name, float("inf")), spent * 1000)
    print(f"segments: old {len(old) / 1e6:.2f} MB, anchor {len(new[0]) / 1e6:.2f} MB, "
          f"later {later_mb:.2f} MB in {len(new) - 1}")
    print(f"base {best['base']:.2f} ms, anchor {best['anchor']:.2f} ms, "
          f"later {best['later'] / later_mb:.2f} ms/MB, pass {best['pass'] / later_mb:.3f} ms/MB, "
          f"later/pass {best['later'] / max(best['pass'], 1e-9):.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
