"""proxy.packager pieces on their own: playlist writer, store bounds, growing segments, splicing, cuts.

The splice and cut checks run on the committed samples and judge the result with real ffprobe.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
from typing import Any

import m3u8  # test oracle: parses what the writer wrote
import pytest

from proxy.media.analyzer import StreamAnalyzer
from proxy.media.library import MediaLibrary
from proxy.media.psi import ElementaryStream, ProgramMap
from proxy.packager.playlist import PlaylistEntry, media_playlist, target_duration
from proxy.packager.segment import Segment, SegmentGone
from proxy.packager.segmenter import Segmenter
from proxy.packager.splice import Splicer, drop_unfinished, timeline_end
from proxy.packager.store import SegmentStore
from tests.players import needs_ffmpeg


@pytest.fixture(scope="module")
def library() -> MediaLibrary:
    return MediaLibrary.load()


def probe_packets(data: bytes) -> dict[str, list[dict[str, Any]]]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_entries",
         "packet=stream_index,pts,dts:stream=index,codec_type", "-i", "-"],
        input=data, capture_output=True, check=True, timeout=60)  # fmt: skip
    probe = json.loads(proc.stdout)
    types = {s["index"]: s["codec_type"] for s in probe["streams"]}
    out: dict[str, list[dict[str, Any]]] = {"video": [], "audio": []}
    for packet in probe["packets"]:
        out[types[packet["stream_index"]]].append(packet)
    return out


def decode_errors(data: bytes) -> str:
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", "-", "-f", "null", "-"],
                          input=data, capture_output=True, timeout=120)
    return proc.stderr.decode(errors="replace")


def continuity_breaks(data: bytes) -> list[tuple[int, int]]:
    """(pid, offset) of every payload packet whose counter does not follow its PID's previous one."""
    last: dict[int, int] = {}
    breaks = []
    for off in range(0, len(data), 188):
        pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        if pid == 0x1FFF or not data[off + 3] & 0x10:
            continue
        cc = data[off + 3] & 0x0F
        if pid in last and cc != (last[pid] + 1) & 0x0F and cc != last[pid]:
            breaks.append((pid, off))
        last[pid] = cc
    return breaks


# -- playlist ------------------------------------------------------------------------------------------


def test_target_duration_rounds_extinf_and_keeps_the_configured_floor() -> None:
    assert target_duration([], 2.0) == 2
    assert target_duration([1.0, 2.49], 2.0) == 2
    assert target_duration([2.5], 2.0) == 3  # a long GOP says so
    assert target_duration([0.4], 0.5) == 1


def test_media_playlist_is_a_valid_live_window() -> None:
    entries = [PlaylistEntry(7 + i, 2.0, 1_700_000_000.25 + 2 * i, f"/remux/s/t/abcd0123-{7 + i}.ts",
                             discontinuity=i == 1) for i in range(3)]
    text = media_playlist(entries, target=2, discontinuity_sequence=4).decode()
    parsed = m3u8.loads(text)
    assert parsed.media_sequence == 7 and parsed.target_duration == 2
    assert parsed.discontinuity_sequence == 4
    assert [s.duration for s in parsed.segments] == [2.0] * 3
    assert [s.discontinuity for s in parsed.segments] == [False, True, False]
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.250Z" in text
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    assert not parsed.is_endlist
    assert m3u8.loads(media_playlist(entries, target=2, ended=True).decode()).is_endlist
    with pytest.raises(ValueError, match="consecutive"):
        media_playlist([entries[0], entries[2]], target=2)


# -- segments and the store ----------------------------------------------------------------------------


def segment(sequence: int, size: int, *, complete: bool = True) -> Segment:
    seg = Segment(sequence, f"abcd0123-{sequence}.ts", wall_clock=float(sequence), first_timestamp=0)
    seg.append(b"\x47" * size)
    if complete:
        seg.finish(2.0)
    return seg


def test_store_bounds_each_channel_and_all_of_them_and_never_evicts_a_growing_segment() -> None:
    store = SegmentStore(channel_bytes=1000, total_bytes=1500)
    store.open("a")
    for i in range(5):
        store.add("a", segment(i, 300))
        store.refresh("a", keep=10)
    assert store.shelf_bytes("a") <= 1000 and [s.sequence for s in store.segments("a")] == [2, 3, 4]
    assert store.get("a", 0) is None and store.get("a", 4) is not None
    store.open("b")
    store.add("b", segment(0, 900, complete=False))
    store.refresh("b", keep=10)
    assert store.bytes <= 1500
    assert store.get("b", 0) is not None  # the other channel's oldest went instead
    store.refresh("a", keep=1)
    assert [s.sequence for s in store.segments("a")] == [4]
    store.drop("a")
    store.drop("b")
    assert store.bytes == 0


async def test_a_reader_gets_chunks_while_the_segment_grows_and_stops_when_evicted() -> None:
    seg = Segment(0, "abcd0123-0.ts", wall_clock=0.0, first_timestamp=0)
    seg.append(b"one")
    reader = seg.read()
    assert bytes(await anext(reader)) == b"one"
    pending = asyncio.ensure_future(anext(reader))
    await asyncio.sleep(0)  # the reader waits on the segment's event
    assert not pending.done()
    seg.append(b"two")
    assert bytes(await pending) == b"two"
    seg.finish(1.0)
    assert [c async for c in reader] == []
    gone = Segment(1, "abcd0123-1.ts", wall_clock=0.0, first_timestamp=0)
    waiting = gone.read()
    pending = asyncio.ensure_future(anext(waiting))
    await asyncio.sleep(0)
    gone.evict()
    with pytest.raises(SegmentGone):
        await pending


# -- splicing ------------------------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.ffmpeg
@pytest.mark.parametrize("name", ["mandelbrot", "atsc"])
def test_a_new_connection_is_spliced_onto_the_old_timeline(library: MediaLibrary, name: str) -> None:
    source = library.source(name)
    old = b"".join(source.segment(i, 2) for i in range(2))
    # the new connection starts mid-GOP, 31 s further on: other timestamps and counters
    later = source.segment(15, 2) + source.segment(16, 2)
    new = later[len(later) // 3 // 188 * 188 :]
    analyzer = StreamAnalyzer()
    keyframes = analyzer.scan(new)
    splicer = Splicer()
    splicer.splice(timeline_end([old]))
    out = splicer.apply(new, keyframes, analyzer.video_pid, analyzer.audio_pids)
    assert len(out) == len(new)
    stream = old + analyzer.header + out[keyframes[0]:]
    assert decode_errors(stream) == ""
    packets = probe_packets(stream)
    video_dts = [p["dts"] for p in packets["video"]]
    assert {b - a for a, b in itertools.pairwise(video_dts)} == {3600}  # one frame apart, seam included
    audio_pts = [p["pts"] for p in packets["audio"]]
    assert all(b > a for a, b in itertools.pairwise(audio_pts))  # no overlap at the seam
    assert [pid for pid, _ in continuity_breaks(stream) if pid not in (0, 0x1000)] == []


@needs_ffmpeg
@pytest.mark.ffmpeg
def test_a_torn_last_frame_is_dropped(library: MediaLibrary) -> None:
    data = library.source("testcard").segment(0, 2)
    torn = data[: len(data) // 2 // 188 * 188]
    assert decode_errors(torn) != ""
    clean = drop_unfinished(torn, (0x100, 0x101))
    assert len(clean) == len(torn)
    assert decode_errors(clean) == ""


# -- cuts ----------------------------------------------------------------------------------------------


def run_segmenter(data: bytes, target: float, chunk: int = 188 * 70) -> list[Segment]:
    done: list[Segment] = []
    count = itertools.count()
    segmenter = Segmenter(target=target, max_bytes=1 << 24, done=done.append,
                          new_segment=lambda wall, ts, jump: Segment(n := next(count), f"abcd0123-{n}.ts",
                                                                     wall_clock=wall, first_timestamp=ts,
                                                                     discontinuity=jump))
    analyzer = StreamAnalyzer()
    for pos in range(0, len(data), chunk):
        packets = data[pos : pos + chunk]
        segmenter.feed(packets, analyzer.scan(packets), analyzer, 0.0)
    segmenter.finish()
    return done


def test_video_is_cut_at_the_first_keyframe_at_or_after_the_target(library: MediaLibrary) -> None:
    data = b"".join(library.source("life").segment(i, 1) for i in range(9))
    segments = run_segmenter(data, target=2.5)
    # the first segment is one GOP (a fast first playlist), then 3 s: 2.5 s rounded up to the GOP
    assert [s.duration for s in segments] == [1.0, 3.0, 3.0, 2.0]
    assert all(s.data()[1:3] == b"\x40\x00" for s in segments)  # PAT first
    assert not any(s.discontinuity for s in segments)


def test_timestamps_that_go_back_are_cut_there_and_marked(library: MediaLibrary) -> None:
    loop = b"".join(library.source("life").segment(i, 1) for i in range(3))
    segments = run_segmenter(loop + loop, target=2.0)  # a file played twice: timestamps restart
    assert [s.duration for s in segments] == [1.0, 2.0, 2.0, 1.0]
    assert [s.discontinuity for s in segments] == [False, False, True, False]


@needs_ffmpeg
@pytest.mark.ffmpeg
def test_radio_is_cut_on_time_at_audio_pes_starts() -> None:
    radio = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=7",
         "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-"],
        capture_output=True, check=True, timeout=60).stdout  # fmt: skip
    segments = run_segmenter(radio, target=2.0, chunk=188 * 7)
    assert len(segments) >= 3
    assert all(1.9 <= (s.duration or 0) <= 2.4 for s in segments[1:-1])
    assert abs(sum(s.duration or 0 for s in segments) - 7.0) < 0.3
    assert decode_errors(b"".join(s.data() for s in segments)) == ""


def test_a_pmt_without_video_or_audio_cannot_be_packaged() -> None:
    segmenter = Segmenter(target=2.0, max_bytes=1 << 20, done=lambda s: None,
                          new_segment=lambda wall, ts, jump: Segment(0, "abcd0123-0.ts", wall_clock=wall,
                                                                     first_timestamp=ts))
    analyzer = StreamAnalyzer()
    analyzer.program = ProgramMap(1, 0x100, (ElementaryStream(0x100, 0x05, "other", ""),))
    segmenter.feed(b"\x47\x1f\xff\x10" + b"\xff" * 184, [], analyzer, 0.0)
    assert segmenter.failed == "the channel's PMT lists no video or audio stream"


def test_the_remux_options_are_validated() -> None:
    from proxy.config import ConfigError
    from tests.conftest import proxy_config

    assert proxy_config("http://127.0.0.1:1").hls.mode == "transcode"  # the test default
    assert proxy_config("http://127.0.0.1:1", **{"hls.mode": "auto"}).hls.segment_duration == 2.0
    for key, value, message in (("hls.mode", "fast", "hls.mode: expected one of 'auto', 'remux', 'transcode'"),
                                ("hls.segment_duration", 0.1, "hls.segment_duration"),
                                ("hls.window_segments", 1, "hls.window_segments"),
                                ("hls.remux_total_bytes", "1MiB", "hls.remux_channel_bytes")):
        with pytest.raises(ConfigError, match=message):
            proxy_config("http://127.0.0.1:1", **{key: value})
