"""proxy.media.library: the committed samples as an endless, seamlessly looped, segmented stream.

The decoding checks use the real ffmpeg/ffprobe; continuity counters, PCR and the segment layout are
checked with a small parser written here, independent of proxy.media.packets.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from proxy.media.library import MediaLibrary, MediaSource, SampleError

SAMPLES = Path(__file__).resolve().parents[1] / "proxy" / "media" / "samples"
INDEX = json.loads((SAMPLES / "samples.json").read_text())
LOOP_TICKS = 8 * 90_000
WRAP = 1 << 33
VIDEO_FRAME, AUDIO_FRAME = 3600, 1920  # 90 kHz ticks: 1/25 s, 1024/48000 s


@pytest.fixture(scope="module")
def library() -> MediaLibrary:
    return MediaLibrary.load()


# ------------------------------------------------------------------------------------------ helpers


def run_ffprobe(data: bytes, *args: str) -> Any:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, "-i", "-"],
        input=data, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(proc.stdout)


def decode_errors(data: bytes) -> str:
    """Everything ffmpeg complains about while decoding every frame of ``data``."""
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", "-", "-f", "null", "-"],
        input=data, capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stderr.decode(errors="replace")


def probe_packets(data: bytes) -> dict[str, list[dict[str, Any]]]:
    probe = run_ffprobe(data, "-show_entries", "packet=stream_index,pts,dts,flags:stream=index,codec_type")
    types = {s["index"]: s["codec_type"] for s in probe["streams"]}
    out: dict[str, list[dict[str, Any]]] = {"video": [], "audio": []}
    for packet in probe["packets"]:
        out[types[packet["stream_index"]]].append(packet)
    return out


def assert_frame_exact_timeline(packets: dict[str, list[dict[str, Any]]], video: int, audio: int) -> None:
    """Decode timestamps advance by exactly one frame, with no gap, jump or repeat anywhere."""
    assert len(packets["video"]) == video
    assert len(packets["audio"]) == audio
    for kind, step in (("video", VIDEO_FRAME), ("audio", AUDIO_FRAME)):
        dts = [p["dts"] for p in packets[kind]]
        steps = {b - a for a, b in itertools.pairwise(dts)}
        assert steps == {step}, f"{kind} decode timestamps are not one frame apart: {sorted(steps)[:5]}"
    pts = sorted(p["pts"] for p in packets["video"])
    assert {b - a for a, b in itertools.pairwise(pts)} == {VIDEO_FRAME}


class Packet:
    """Just enough of an MPEG-TS packet header, parsed independently of proxy.media.packets."""

    def __init__(self, raw: bytes) -> None:
        assert len(raw) == 188
        assert raw[0] == 0x47
        self.pid = ((raw[1] & 0x1F) << 8) | raw[2]
        self.pusi = bool(raw[1] & 0x40)
        self.cc = raw[3] & 0x0F
        self.payload = bool(raw[3] & 0x10)
        has_af = bool(raw[3] & 0x20) and raw[4] > 0
        self.rai = has_af and bool(raw[5] & 0x40)
        self.pcr: int | None = None
        if has_af and raw[5] & 0x10:
            base = int.from_bytes(raw[6:11], "big") >> 7
            self.pcr = base * 300 + (((raw[10] & 1) << 8) | raw[11])


def parse(data: bytes) -> list[Packet]:
    assert len(data) % 188 == 0
    return [Packet(data[o : o + 188]) for o in range(0, len(data), 188)]


def assert_cc_continuous(packets: list[Packet]) -> None:
    last: dict[int, int] = {}
    for index, p in enumerate(packets):
        if p.pid in last:
            expected = (last[p.pid] + 1) & 0x0F if p.payload else last[p.pid]
            assert p.cc == expected, f"packet {index}: pid {p.pid:#x} cc {p.cc} after {last[p.pid]}"
        last[p.pid] = p.cc


def assert_pcr_steady(packets: list[Packet], *, unwrap: bool = False) -> None:
    pcrs = [p.pcr for p in packets if p.pcr is not None]
    assert len(pcrs) > 10
    modulus = WRAP * 300
    for a, b in itertools.pairwise(pcrs):
        step = (b - a) % modulus if unwrap else b - a
        # strictly increasing and never more than 100 ms apart (ISO/IEC 13818-1 PCR interval)
        assert 0 < step <= 27_000_000 // 10, (a, b)


def assert_segment_layout(segment: bytes) -> None:
    packets = parse(segment)
    assert [p.pid for p in packets[:2]] == [0, 0x1000], "a segment must start with PAT + PMT"
    assert packets[2].pid == 0x100
    assert packets[2].pusi
    assert packets[2].rai, "the third packet must start a keyframe"


# ------------------------------------------------------------------------------------------ samples


def test_samples_are_small_indexed_and_unmodified(library: MediaLibrary) -> None:
    total = sum(f.stat().st_size for f in SAMPLES.iterdir() if f.is_file())
    assert total <= 2 * 1024 * 1024
    assert len(library.names) >= 3
    assert library.names == tuple(entry["name"] for entry in INDEX["samples"])
    for entry in INDEX["samples"]:
        data = (SAMPLES / entry["file"]).read_bytes()
        assert len(data) == entry["bytes"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert len(library) == len(INDEX["samples"])
    assert "testcard" in library
    assert "nope" not in library


def test_unknown_source_raises_key_error(library: MediaLibrary) -> None:
    with pytest.raises(KeyError, match="nope"):
        library.source("nope")


@pytest.mark.ffmpeg
@pytest.mark.parametrize("entry", INDEX["samples"], ids=lambda e: e["name"])
def test_each_sample_is_one_loop_of_its_codecs(entry: dict[str, Any]) -> None:
    data = (SAMPLES / entry["file"]).read_bytes()
    probe = run_ffprobe(data, "-count_packets", "-show_streams")
    video, audio = probe["streams"]
    expected_video = [entry["video_codec"], "yuv420p", 320, 180]
    assert [video[k] for k in ("codec_name", "pix_fmt", "width", "height")] == expected_video
    assert video["r_frame_rate"] == "25/1"
    assert [audio[k] for k in ("codec_name", "sample_rate", "channels")] == [entry["audio_codec"], "48000", 2]
    if entry["audio_codec"] == "aac":
        assert audio["profile"] == "LC"
    assert (int(video["nb_read_packets"]), int(audio["nb_read_packets"])) == (200, entry["audio_frames"])
    # B-frames show as decode timestamps behind presentation timestamps
    packets = probe_packets(data)["video"]
    assert any(p["pts"] != p["dts"] for p in packets) == entry["b_frames"]
    assert decode_errors(data) == ""


def test_the_samples_are_broadcast_like() -> None:
    """B-frames in one H.264 channel, and one MPEG-2 + AC-3 channel for ``hls.mode: auto``."""
    assert any(e["b_frames"] and e["video_codec"] == "h264" for e in INDEX["samples"])
    assert any(e["video_codec"] == "mpeg2video" and e["audio_codec"] == "ac3" for e in INDEX["samples"])


@pytest.mark.ffmpeg
def test_samples_look_different() -> None:
    first_frames = set()
    for entry in INDEX["samples"]:
        proc = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(SAMPLES / entry["file"]),
             "-frames:v", "1", "-f", "framemd5", "-"],
            capture_output=True, check=True, timeout=60, text=True,
        )  # fmt: skip
        first_frames.add(proc.stdout.strip().splitlines()[-1].split(",")[-1])
    assert len(first_frames) == len(INDEX["samples"])
    assert len({tuple(entry["audio_hz"]) for entry in INDEX["samples"]}) == len(INDEX["samples"])


# ------------------------------------------------------------------------------------------ segments


@pytest.mark.ffmpeg
@pytest.mark.parametrize(
    ("name", "seconds"),
    [("testcard", 1), ("colorbars", 3), ("mandelbrot", 2), ("life", 6)],
)
def test_three_loops_of_segments_play_seamlessly(library: MediaLibrary, name: str, seconds: int) -> None:
    source = library.source(name)
    count = 24 // seconds  # 3 loops: crosses the loop seam twice, mid-segment when seconds does not divide 8
    segments = [source.segment(i, seconds) for i in range(count)]
    stream = b"".join(segments)

    assert decode_errors(stream) == ""
    assert_frame_exact_timeline(probe_packets(stream), video=3 * 200, audio=3 * 375)
    packets = parse(stream)
    assert_cc_continuous(packets)
    assert_pcr_steady(packets)
    for segment in segments:
        assert_segment_layout(segment)
    # every GOP of the stream has exactly one keyframe (RAI on a video PUSI packet)
    assert sum(1 for p in packets if p.pid == 0x100 and p.rai) == 24


@pytest.mark.ffmpeg
def test_a_far_segment_decodes_alone(library: MediaLibrary) -> None:
    source = library.source("mandelbrot")
    index = 10**6
    segment = source.segment(index, 6)
    assert_segment_layout(segment)
    assert decode_errors(segment) == ""
    packets = probe_packets(segment)
    assert len(packets["video"]) == 150
    assert packets["video"][0]["flags"].startswith("K")
    # it sits where it belongs on the endless timeline: 6 * 10**6 s after segment 0, modulo 2**33
    first = probe_packets(source.segment(0, 6))["video"][0]["dts"]
    assert packets["video"][0]["dts"] % WRAP == (first + index * 6 * 90_000) % WRAP


@pytest.mark.ffmpeg
def test_segments_across_the_33_bit_timestamp_wrap_play_seamlessly(library: MediaLibrary) -> None:
    source = library.source("life")
    first_gop = WRAP // LOOP_TICKS * 8 - 4  # the wrap falls inside the 5th segment below
    stream = b"".join(source.segment(i, 1) for i in range(first_gop, first_gop + 12))
    assert decode_errors(stream) == ""
    probe = probe_packets(stream)
    assert len(probe["video"]) == 300
    # ffmpeg unwraps the 33-bit counter, so one uninterrupted frame-by-frame timeline proves the wrap
    steps = {b["dts"] - a["dts"] for a, b in itertools.pairwise(probe["video"])}
    assert steps == {VIDEO_FRAME}
    packets = parse(stream)
    assert_cc_continuous(packets)
    assert_pcr_steady(packets, unwrap=True)


def test_cc_stays_continuous_over_many_loops(library: MediaLibrary) -> None:
    source = library.source("colorbars")
    # 17 loops: each PID's per-loop packet count times the loop number runs through every value mod 16
    stream = b"".join(source.segment(i, 4) for i in range(2 * 17))
    assert_cc_continuous(parse(stream))


def test_segment_duration_is_exact(library: MediaLibrary) -> None:
    source = library.source("testcard")
    assert source.loop_seconds == 8.0
    assert source.gop_seconds == 1.0
    for seconds in (1, 2, 3, 6, 10):
        assert source.segment_duration(seconds) == float(seconds)
    assert 100_000 < source.bitrate < 1_000_000


@pytest.mark.ffmpeg
def test_segment_duration_matches_what_ffprobe_measures(library: MediaLibrary) -> None:
    source = library.source("testcard")
    packets = probe_packets(source.segment(3, 6))["video"]
    assert len(packets) * VIDEO_FRAME / 90_000 == source.segment_duration(6)


def test_segments_are_deterministic_and_the_cache_is_bounded() -> None:
    cached = MediaLibrary.load(cache_bytes=512 * 1024).source("testcard")
    uncached = MediaLibrary.load(cache_bytes=0).source("testcard")
    for index in (0, 7, 8, 9, 123_456, 7):
        for seconds in (1, 2, 6):
            assert cached.segment(index, seconds) == uncached.segment(index, seconds)
            assert cached.cached_bytes <= 512 * 1024
    assert uncached.cached_bytes == 0
    assert cached.cached_bytes > 0


def test_a_recording_is_consecutive_segments(library: MediaLibrary) -> None:
    source = library.source("testcard")
    recording = b"".join(source.segment(i, 2) for i in range(5))
    assert recording == b"".join(source.segment(i, 1) for i in range(10))


def test_segment_rejects_bad_arguments(library: MediaLibrary) -> None:
    source = library.source("testcard")
    with pytest.raises(ValueError, match="index"):
        source.segment(-1, 1)
    with pytest.raises(ValueError, match="segment length"):
        source.segment(0, 0)
    with pytest.raises(ValueError, match="segment length"):
        source.segment_duration(0)


# ------------------------------------------------------------------------------------------ loading


def copy_samples(tmp_path: Path, names: list[str]) -> dict[str, Any]:
    index = dict(INDEX)
    index["samples"] = [e for e in INDEX["samples"] if e["name"] in names]
    for entry in index["samples"]:
        shutil.copy(SAMPLES / entry["file"], tmp_path / entry["file"])
    (tmp_path / "samples.json").write_text(json.dumps(index))
    return index


def test_load_from_another_directory(tmp_path: Path) -> None:
    copy_samples(tmp_path, ["life", "testcard"])
    library = MediaLibrary.load(tmp_path)
    assert library.names == ("testcard", "life")
    assert isinstance(library.source("life"), MediaSource)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(lambda d: d[:-100], "aligned", id="truncated"),
        pytest.param(lambda d: d[: len(d) // 188 // 2 * 188], "keyframes", id="half-a-loop"),
        pytest.param(lambda d: bytes(188) + d[188:], "aligned", id="lost-sync"),
    ],
)
def test_load_rejects_a_sample_that_cannot_loop(tmp_path: Path, damage: Any, message: str) -> None:
    index = copy_samples(tmp_path, ["testcard"])
    path = tmp_path / index["samples"][0]["file"]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SampleError, match=message):
        MediaLibrary.load(tmp_path)


def test_load_rejects_a_missing_index_or_file(tmp_path: Path) -> None:
    with pytest.raises(SampleError, match="cannot load"):
        MediaLibrary.load(tmp_path)
    copy_samples(tmp_path, ["testcard"])
    (tmp_path / "testcard.ts").unlink()
    with pytest.raises(SampleError, match="cannot load"):
        MediaLibrary.load(tmp_path)
