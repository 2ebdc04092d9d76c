"""The rewriting pass cuts a live playlist for the stitcher exactly as parsing its output would.

The oracle is the parser the refresher used before the pass recorded the segment boundaries itself
(it split the rewritten text again): kept here, in the tests only, to compare against.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.hls.media_model import Block, ParsedMedia
from proxy.hls.rewrite import UriSite, iter_rewrite

_ORACLE_SEGMENT_TAGS = (
    "#EXTINF", "#EXT-X-BYTERANGE", "#EXT-X-KEY", "#EXT-X-MAP", "#EXT-X-PROGRAM-DATE-TIME",
    "#EXT-X-DATERANGE", "#EXT-X-GAP", "#EXT-X-BITRATE", "#EXT-X-PART:", "#EXT-X-CUE",
)


def oracle_split(text: str) -> ParsedMedia:
    """The former ``stitch.split_media_playlist``, unchanged but for its name."""
    lines = text.splitlines(keepends=True)
    assert lines and lines[0].lstrip("\ufeff").startswith("#EXTM3U")
    newline = "\r\n" if lines[0].endswith("\r\n") else "\n"
    header: list[str] = []
    blocks: list[Block] = []
    pending: list[str] = []
    media_sequence = discontinuity_sequence = target_duration = 0
    endlist = False
    in_header = True
    duration = 0.0
    for line in lines:
        stripped = line.strip()
        is_segment_tag = (not stripped.startswith("#EXT-X-DISCONTINUITY-SEQUENCE")
                          if stripped.startswith("#EXT-X-DISCONTINUITY") else stripped.startswith(_ORACLE_SEGMENT_TAGS))
        if in_header:
            if stripped and (not stripped.startswith("#") or is_segment_tag):
                in_header = False
            else:
                if stripped.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                    media_sequence = int(stripped.split(":", 1)[1])
                elif stripped.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
                    discontinuity_sequence = int(stripped.split(":", 1)[1])
                elif stripped.startswith("#EXT-X-TARGETDURATION:"):
                    target_duration = round(float(stripped.split(":", 1)[1]))
                elif stripped == "#EXT-X-ENDLIST":
                    endlist = True
                header.append(line)
                continue
        pending.append(line)
        if stripped.startswith("#EXTINF:"):
            duration = float(stripped[8:].split(",", 1)[0] or 0)
        elif stripped == "#EXT-X-ENDLIST":
            endlist = True
        elif stripped and not stripped.startswith("#"):
            disc = any(p.strip() == "#EXT-X-DISCONTINUITY" for p in pending)
            blocks.append(Block(media_sequence + len(blocks), "".join(pending), duration, disc))
            pending = []
            duration = 0.0
    if pending and not pending[-1].endswith(("\n", "\r")):
        pending[-1] += newline
    return ParsedMedia(header, blocks, pending, media_sequence, discontinuity_sequence,
                       target_duration, endlist, newline)


def mapper(url: str, _site: UriSite) -> str:
    return "/hls/live.1.720p/t" + str(len(url)) + "/" + url.rsplit("/", 1)[-1]


SEGMENT_EXTRAS = st.sampled_from([
    "#EXT-X-DISCONTINUITY", "#EXT-X-PROGRAM-DATE-TIME:2026-12-04T01:00:00.000Z", "#EXT-X-BYTERANGE:100@0",
    '#EXT-X-KEY:METHOD=AES-128,URI="k.bin"', '#EXT-X-MAP:URI="init.mp4"', "#EXT-X-CUE-OUT:30", "#EXT-X-CUE-IN",
    "#EXT-X-GAP", "#EXT-X-BITRATE:800", '#EXT-X-PART:DURATION=1.0,URI="p.mp4"', "", "# a comment",
    '#EXT-X-DATERANGE:ID="a",START-DATE="2026-12-04T01:00:00Z"', "#EXT-X-UNKNOWN-TAG:1",
    "  seg_indented.ts",
])
HEADER_EXTRAS = st.sampled_from(["#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS", "", "# header comment",
                                 "#EXT-X-PLAYLIST-TYPE:EVENT", "#EXT-X-DISCONTINUITY-SEQUENCE:4"])
TRAILER = st.sampled_from(["", "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"next.mp4\"", "#EXT-X-DISCONTINUITY",
                           '#EXT-X-PART:DURATION=1.0,URI="last.mp4"', "# trailing comment",
                           "#EXT-X-PROGRAM-DATE-TIME:2026-12-04T01:00:00.000Z"])


@st.composite
def media_playlists(draw: st.DrawFn) -> str:
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ["#EXTM3U", f"#EXT-X-TARGETDURATION:{draw(st.integers(1, 10))}",
             f"#EXT-X-MEDIA-SEQUENCE:{draw(st.integers(0, 10**6))}"]
    lines += draw(st.lists(HEADER_EXTRAS, max_size=3))
    for i in range(draw(st.integers(0, 8))):
        lines += draw(st.lists(SEGMENT_EXTRAS, max_size=3))
        if draw(st.booleans()):
            lines.append(f"#EXTINF:{draw(st.floats(0, 12, allow_nan=False)):.3f},{draw(st.sampled_from(['', 't']))}")
        lines.append(f"seg_{i}.ts?x={i}")
    lines += draw(st.lists(TRAILER, max_size=3))
    return nl.join(lines) + (nl if draw(st.booleans()) else "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(media_playlists(), st.integers(1, 7))
def test_the_pass_cuts_its_output_as_parsing_it_again_would(text: str, lines_per_chunk: int) -> None:
    job = iter_rewrite(text, "http://upstream.test/live/index.m3u8", mapper, lines_per_chunk=lines_per_chunk,
                       media=True)
    rewritten = "".join(job.chunks())
    assert job.media() == oracle_split(rewritten)


def test_recorded_blocks_are_the_served_bytes() -> None:
    text = ("#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n#EXT-X-MEDIA-SEQUENCE:7\r\n# dropped\r\n"
            "#EXTINF:2.5,\r\na.ts\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:1.5,\r\nb.ts\r\n#EXT-X-PRELOAD-HINT:"
            'TYPE=PART,URI="c.mp4"')
    job = iter_rewrite(text, "http://upstream.test/live/index.m3u8", mapper, media=True)
    rewritten = "".join(job.chunks())
    media = job.media()
    assert "".join(media.header) + "".join(b.text for b in media.blocks) + "".join(media.trailer) == \
        rewritten + "\r\n"
    assert [(b.upstream_seq, b.duration, b.discontinuity) for b in media.blocks] == [(7, 2.5, False), (8, 1.5, True)]
    assert media.newline == "\r\n" and media.target_duration == 2 and not media.endlist
