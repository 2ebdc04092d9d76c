"""The live playlist stays valid HLS across transcode generations."""

from __future__ import annotations

import m3u8  # test oracle only: it parses the proxy's output, it never writes it
import pytest

from proxy.hls.rewrite import split_media_playlist
from proxy.hls.stitch import LivePlaylist, SequenceReset
from tests.conftest import uris


def upstream(first: int, count: int, *, prefix: str = "g1", ds: int | None = None, crlf: bool = False,
             disc_at: int | None = None) -> str:
    nl = "\r\n" if crlf else "\n"
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    if ds is not None:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{ds}")
    for seq in range(first, first + count):
        if disc_at == seq:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += ["#EXTINF:2.000,", f"/hls/s/{prefix}-{seq}/segment.ts"]
    return nl.join(lines) + nl


def test_split_keeps_every_byte() -> None:
    text = upstream(10, 4, crlf=True, disc_at=12) + "#EXT-X-ENDLIST\r\n"
    parsed = split_media_playlist(text)
    rebuilt = "".join(parsed.header) + "".join(b.text for b in parsed.blocks) + "".join(parsed.trailer)
    assert rebuilt == text
    assert [b.upstream_seq for b in parsed.blocks] == [10, 11, 12, 13]
    assert [b.discontinuity for b in parsed.blocks] == [False, False, True, False]
    assert parsed.endlist and parsed.newline == "\r\n" and parsed.target_duration == 2


def test_split_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="EXTM3U"):
        split_media_playlist("<html>oops</html>")


def test_single_generation_passes_through_sequence_and_uris() -> None:
    live = LivePlaylist()
    live.update(1, split_media_playlist(upstream(100, 6)))
    out = live.render()
    parsed = m3u8.loads(out.decode())
    assert parsed.media_sequence == 100
    assert uris(out) == [f"/hls/s/g1-{s}/segment.ts" for s in range(100, 106)]
    fresh = live.update(1, split_media_playlist(upstream(101, 6)))
    assert fresh == [106]
    assert m3u8.loads(live.render().decode()).media_sequence == 101


def test_new_generation_continues_sequence_marks_discontinuity_and_keeps_uris() -> None:
    live = LivePlaylist()
    live.update(1, split_media_playlist(upstream(500, 6)))
    before = uris(live.render())
    # NextPVR restarted: the new transcode numbers its segments from 0 again
    live.update(2, split_media_playlist(upstream(0, 3, prefix="g2")))
    out = live.render().decode()
    parsed = m3u8.loads(out)
    # the window keeps its size (6): three old segments slide out, three new arrive
    assert parsed.media_sequence == 503
    assert uris(out.encode())[:3] == before[3:]
    assert uris(out.encode())[3:] == [f"/hls/s/g2-{i}/segment.ts" for i in range(3)]
    assert [s.discontinuity for s in parsed.segments] == [False, False, False, True, False, False]
    seqs = [s for s, _, _ in live.segments()]
    assert seqs == list(range(503, 509))

    # the new transcode's window grows to 6, pushing the old generation out; then it slides
    expected = {4: (504, 0), 5: (505, 0), 6: (506, 0)}
    for count, (media_sequence, ds) in expected.items():
        live.update(2, split_media_playlist(upstream(0, count, prefix="g2")))
        parsed = m3u8.loads(live.render().decode())
        assert (parsed.media_sequence, parsed.discontinuity_sequence or 0) == (media_sequence, ds)
    assert parsed.segments[0].discontinuity
    # the segment carrying the discontinuity slides out: the discontinuity sequence counts it
    live.update(2, split_media_playlist(upstream(1, 6, prefix="g2")))
    out = live.render().decode()
    parsed = m3u8.loads(out)
    assert (parsed.media_sequence, parsed.discontinuity_sequence) == (507, 1)
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in out
    assert not any(s.discontinuity for s in parsed.segments)


def test_sequence_never_goes_backwards_over_many_joins() -> None:
    live = LivePlaylist()
    seen: list[int] = []
    gen = 0
    for _round in range(5):
        gen += 1
        for first in range(4):
            live.update(gen, split_media_playlist(upstream(first, 3, prefix=f"g{gen}")))
            parsed = m3u8.loads(live.render().decode())
            seen.append(parsed.media_sequence)
    assert seen == sorted(seen)
    assert live.last_sequence is not None and live.last_sequence >= 5 * 6 - 1


def test_upstream_sequence_reset_inside_a_generation_is_reported() -> None:
    live = LivePlaylist()
    live.update(1, split_media_playlist(upstream(50, 3)))
    with pytest.raises(SequenceReset):
        live.update(1, split_media_playlist(upstream(0, 3)))


def test_upstream_discontinuity_sequence_is_kept() -> None:
    live = LivePlaylist()
    live.update(1, split_media_playlist(upstream(10, 3, ds=7)))
    assert m3u8.loads(live.render().decode()).discontinuity_sequence == 7


def test_a_restarted_playlist_carries_on_where_the_stopped_one_left_off() -> None:
    old = LivePlaylist()
    old.update(1, split_media_playlist(upstream(40, 6, disc_at=43)))
    carry_on = old.continuation()
    assert carry_on == (46, 1)
    new = LivePlaylist()
    new.seed(*carry_on)
    new.update(9, split_media_playlist(upstream(0, 3, prefix="g9", ds=4)))
    parsed = m3u8.loads(new.render().decode())
    assert parsed.media_sequence == 46
    assert parsed.discontinuity_sequence == 1
    assert [s.discontinuity for s in parsed.segments] == [True, False, False]
    assert LivePlaylist().continuation() is None


def test_a_second_proxy_numbers_the_channel_above_every_number_of_the_first() -> None:
    """Replica A started the channel and served segments; replica B takes over with a transcode of
    its own, which NextPVR numbers from 0 again. B's numbers start above all of A's, so a player that
    keeps the playlist URL skips ahead, never back, and never sees one number given to two segments
    (hls.js stops on that: "media sequence mismatch"). After a minute, and one second after A began
    with six segments listed at once."""
    for served, listed in ((30, 3), (0, 6)):
        now = [1_780_000_000.0]

        def clock(now: list[float] = now) -> float:
            return now[0]

        first = LivePlaylist(clock=clock)
        first.update(1, split_media_playlist(upstream(0, listed)))
        for newest in range(listed, listed + served):  # 2 s segments
            now[0] += 2.0
            first.update(1, split_media_playlist(upstream(newest - listed + 1, listed)))
        last_of_first = first.last_sequence
        assert last_of_first is not None
        now[0] += 1.0
        second = LivePlaylist(clock=clock)
        second.update(1, split_media_playlist(upstream(0, listed, prefix="b")))
        assert second.media_sequence > last_of_first, (served, listed)
    # and without a clock (recordings, and the tests above) NextPVR's own numbers are kept
    plain = LivePlaylist()
    plain.update(1, split_media_playlist(upstream(0, 3)))
    assert plain.media_sequence == 0
