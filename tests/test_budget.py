"""budget.py: the counts checked before a playlist is split, and the unseen tail of a live one."""

from __future__ import annotations

import pytest

from proxy.errors import UpstreamTooLarge
from proxy.hls.budget import OutputBudget, check_counts, unseen_tail
from proxy.hls.rewrite import split_media_playlist


def playlist(first: int, count: int, *, nl: str = "\n") -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}",
             "#EXT-X-DISCONTINUITY-SEQUENCE:3", '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"']
    for seq in range(first, first + count):
        if seq % 7 == 0:
            lines.append("#EXT-X-DISCONTINUITY")
        if seq % 5 == 0:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:2026-12-04T01:{seq % 60:02d}:00.000Z")
        lines += ["#EXTINF:2.000,", f"seg_{seq}.ts?x={seq}"]
    return nl.join(lines) + nl


@pytest.mark.parametrize("nl", ["\n", "\r\n"])
@pytest.mark.parametrize(("known", "expect_skip"), [
    (range(100, 130), 30),   # a growing playlist: the first 30 were merged
    (range(90, 130), 30),    # the stitched window holds older ones too
    (range(110, 130), 30),   # NextPVR lists more than the window: the older ones are cut off too
    (range(100, 140), 40),   # nothing new
])
def test_the_tail_is_what_splitting_the_whole_playlist_gives_after_the_known_segments(
        known: range, expect_skip: int, nl: str) -> None:
    text = playlist(100, 40, nl=nl)
    tail = unseen_tail(text, set(known))
    assert tail is not None
    whole = split_media_playlist(text)
    part = split_media_playlist(tail.text)
    assert [(b.upstream_seq, b.text) for b in part.blocks] == \
        [(b.upstream_seq, b.text) for b in whole.blocks[expect_skip:]]
    assert [b.upstream_seq for b in tail.skipped] == [s for s in range(100, 100 + expect_skip) if s in known]
    assert (tail.media_sequence, tail.discontinuity_sequence) == (100, 3)
    assert part.header[0].startswith("#EXTM3U") and part.trailer == whole.trailer


def test_no_tail_when_nothing_leading_is_known_or_the_playlist_is_not_a_media_playlist() -> None:
    assert unseen_tail(playlist(100, 10), set()) is None
    assert unseen_tail(playlist(100, 10), {95, 96}) is None  # the first segment is new
    assert unseen_tail(playlist(0, 10), {500, 501}) is None  # numbered anew: the full path sees a reset
    assert unseen_tail("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nchild.m3u8\n", {0}) is None
    assert unseen_tail("garbage\n", {0}) is None


def test_counts_and_output_are_bounded() -> None:
    check_counts(playlist(0, 50), max_segments=50, what="x")
    with pytest.raises(UpstreamTooLarge, match="more than 49 segments"):
        check_counts(playlist(0, 50), max_segments=49, what="x")
    with pytest.raises(UpstreamTooLarge, match="lines"):
        check_counts("#EXTM3U\n" + "#\n" * 1000, max_segments=10, what="x")
    budget = OutputBudget(10, what="x")
    budget.spend("12345")
    with pytest.raises(UpstreamTooLarge, match="once rewritten"):
        budget.spend("123456")
