"""MPEG-TS helpers: packet parsing, alignment, PSI/keyframe discovery, timestamp and CC rewriting.

Covers proxy.media.packets, proxy.media.psi, proxy.media.analyzer and proxy.media.timestamps.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.media.analyzer import StreamAnalyzer
from proxy.media.packets import PACKET_SIZE, PacketAligner, packet_pid, parse_header, payload_offset
from proxy.media.psi import crc32_mpeg, parse_pat, parse_pmt
from proxy.media.timestamps import (
    FIELD_PCR,
    TIMESTAMP_MODULUS,
    ContinuityRewriter,
    add_continuity,
    pes_timestamps,
    read_pcr,
    read_pes_timestamp,
    shift_timestamps,
    timestamp_fields,
    write_pcr,
    write_pes_timestamp,
)

SAMPLES = Path(__file__).resolve().parents[1] / "proxy" / "media" / "samples"
TESTCARD = (SAMPLES / "testcard.ts").read_bytes()
VIDEO_PID, AUDIO_PID, PMT_PID = 0x100, 0x101, 0x1000


# ------------------------------------------------------------------------------------------ builders


def make_packet(
    pid: int,
    *,
    cc: int = 0,
    pusi: bool = False,
    payload: bytes = b"",
    rai: bool = False,
    pcr: int | None = None,
) -> bytes:
    """One packet; an adaptation field (with stuffing) is added when flags or padding need one."""
    assert len(payload) <= 184
    flags = (0x40 if rai else 0) | (0x10 if pcr is not None else 0)
    need_af = bool(flags) or len(payload) < 184
    afc = (2 if need_af else 0) | (1 if payload else 0)
    head = bytes((0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF, (afc << 4) | (cc & 0x0F)))
    if not need_af:
        return head + payload
    af_len = 183 - len(payload)
    body = b""
    if af_len:
        fields = b""
        if pcr is not None:
            buf = bytearray(6)
            write_pcr(buf, 0, pcr)
            fields = bytes(buf)
        assert 1 + len(fields) <= af_len, "payload too long for these adaptation fields"
        body = bytes((flags,)) + fields
        body += b"\xff" * (af_len - len(body))
    else:
        assert not flags
    packet = head + bytes((af_len,)) + body + payload
    assert len(packet) == PACKET_SIZE
    return packet


def make_pes(stream_id: int, es: bytes, pts: int | None = None, dts: int | None = None) -> bytes:
    header = bytearray()
    flags = 0
    if pts is not None:
        header += bytes(5)
        write_pes_timestamp(header, 0, pts)
        header[0] = (header[0] & 0x0F) | (0x30 if dts is not None else 0x20)
        flags = 0x80
        if dts is not None:
            dts_bytes = bytearray(5)
            write_pes_timestamp(dts_bytes, 0, dts)
            dts_bytes[0] = (dts_bytes[0] & 0x0F) | 0x10
            header += dts_bytes
            flags = 0xC0
    return b"\x00\x00\x01" + bytes((stream_id, 0, 0, 0x80, flags, len(header))) + bytes(header) + es


def make_section(table_id: int, extension: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4
    head = bytes(
        (table_id, 0xB0 | (length >> 8), length & 0xFF, extension >> 8, extension & 0xFF, 0xC1, 0, 0)
    )
    section = head + body
    return section + crc32_mpeg(section).to_bytes(4, "big")


def make_pat(pmt_pid: int, program: int = 1) -> bytes:
    return make_section(0x00, 1, bytes((program >> 8, program & 0xFF, 0xE0 | (pmt_pid >> 8), pmt_pid & 0xFF)))


def make_pmt(pcr_pid: int, streams: list[tuple[int, int, bytes]], program: int = 1) -> bytes:
    body = bytes((0xE0 | (pcr_pid >> 8), pcr_pid & 0xFF, 0xF0, 0))
    for stream_type, pid, descriptors in streams:
        body += bytes((stream_type, 0xE0 | (pid >> 8), pid & 0xFF, 0xF0 | (len(descriptors) >> 8)))
        body += bytes((len(descriptors) & 0xFF,)) + descriptors
    return make_section(0x02, program, body)


def psi_packets(pid: int, section: bytes, cc: int = 0) -> bytes:
    data = b"\x00" + section
    out = []
    for i, pos in enumerate(range(0, len(data), 184)):
        chunk = data[pos : pos + 184]
        packet = bytes((0x47, (0x40 if i == 0 else 0) | (pid >> 8), pid & 0xFF, 0x10 | ((cc + i) & 0x0F)))
        out.append(packet + chunk + b"\xff" * (184 - len(chunk)))
    return b"".join(out)


def pes_packets(pid: int, pes: bytes, *, cc: int = 0, rai: bool = False, pcr: int | None = None) -> bytes:
    out = []
    first_room = 184 - (2 + (6 if pcr is not None else 0)) if (rai or pcr is not None) else 184
    chunks = [pes[:first_room]]
    chunks += [pes[p : p + 184] for p in range(first_room, len(pes), 184)]
    for i, chunk in enumerate(chunks):
        first = i == 0
        out.append(
            make_packet(
                pid,
                cc=cc + i,
                pusi=first,
                payload=chunk,
                rai=rai and first,
                pcr=pcr if first else None,
            )
        )
    return b"".join(out)


def clean_payload(n: int, seed: int) -> bytes:
    """Payload bytes that never contain the sync byte, so a test can reason about resync exactly."""
    return bytes((seed * 31 + i * 7) % 0x40 for i in range(n))


def clean_packets(count: int, pid: int = 0x123) -> list[bytes]:
    return [make_packet(pid, cc=i, payload=clean_payload(184, i)) for i in range(count)]


def packets_of(data: bytes) -> list[bytes]:
    return [data[o : o + PACKET_SIZE] for o in range(0, len(data), PACKET_SIZE)]


def feed_all(aligner: PacketAligner, data: bytes, cuts: list[int]) -> bytes:
    out = []
    pos = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        chunk = aligner.feed(data[pos:cut])
        assert len(chunk) % PACKET_SIZE == 0
        assert chunk[::PACKET_SIZE] == b"G" * (len(chunk) // PACKET_SIZE)
        assert aligner.pending <= aligner.max_pending
        if aligner.locked:
            assert aligner.pending <= PACKET_SIZE
        out.append(chunk)
        pos = cut
    out.append(aligner.flush())
    return b"".join(out)


# ------------------------------------------------------------------------------------------ headers


def test_parse_header_reads_every_field() -> None:
    packet = make_packet(0x1ABC, cc=9, pusi=True, payload=b"\x01" * 100, rai=True, pcr=27_000_000 * 5 + 7)
    header = parse_header(packet)
    assert header.pid == 0x1ABC
    assert header.payload_unit_start
    assert header.has_adaptation
    assert header.has_payload
    assert header.continuity_counter == 9
    assert header.random_access
    assert header.has_pcr
    assert not header.transport_error
    assert not header.discontinuity
    assert header.payload_offset == 88
    assert payload_offset(packet) == 88
    assert packet_pid(packet) == 0x1ABC
    assert read_pcr(packet, 6) == 27_000_000 * 5 + 7

    plain = parse_header(make_packet(0x21, cc=15, payload=b"\x00" * 184))
    assert (plain.pid, plain.payload_unit_start, plain.has_adaptation, plain.random_access) == (
        0x21,
        False,
        False,
        False,
    )
    assert plain.payload_offset == 4

    af_only = make_packet(0x21, cc=3, pcr=0)
    assert not parse_header(af_only).has_payload
    assert payload_offset(af_only) is None


def test_parse_header_rejects_short_or_unsynced_packets() -> None:
    with pytest.raises(ValueError, match="short"):
        parse_header(TESTCARD[:100])
    with pytest.raises(ValueError, match="sync"):
        parse_header(b"\x00" + TESTCARD[1:188])


def test_parse_header_on_the_sample_matches_its_layout() -> None:
    pids = {parse_header(TESTCARD, off).pid for off in range(0, len(TESTCARD), PACKET_SIZE)}
    assert {0, PMT_PID, VIDEO_PID, AUDIO_PID} <= pids


# ------------------------------------------------------------------------------------------ aligner


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=60 * PACKET_SIZE), max_size=40))
def test_aligner_returns_exactly_the_packets_whatever_the_chunking(cuts: list[int]) -> None:
    data = TESTCARD[: 60 * PACKET_SIZE]
    aligner = PacketAligner()
    assert feed_all(aligner, data, cuts) == data
    assert aligner.dropped_bytes == 0
    assert aligner.resyncs == 0


def test_aligner_holds_at_most_one_packet_while_in_sync() -> None:
    aligner = PacketAligner()
    out = aligner.feed(TESTCARD[: 10 * PACKET_SIZE])
    # the last whole packet waits until the next packet's sync byte proves where it ends
    assert out == TESTCARD[: 9 * PACKET_SIZE]
    assert aligner.pending == PACKET_SIZE
    assert aligner.feed(TESTCARD[10 * PACKET_SIZE : 10 * PACKET_SIZE + 1]) == TESTCARD[9 * 188 : 10 * 188]
    assert aligner.pending == 1
    assert aligner.feed(b"") == b""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.integers(min_value=3, max_value=12),
    after=st.integers(min_value=3, max_value=12),
    garbage=st.binary(min_size=1, max_size=600).map(lambda b: b.replace(b"G", b"g")),
    cuts=st.lists(st.integers(min_value=0, max_value=30 * PACKET_SIZE), max_size=20),
)
def test_aligner_resyncs_after_garbage_and_drops_the_packet_before_it(
    before: int, after: int, garbage: bytes, cuts: list[int]
) -> None:
    packets = clean_packets(before + after)
    head, tail = b"".join(packets[:before]), b"".join(packets[before:])
    aligner = PacketAligner()
    out = feed_all(aligner, head + garbage + tail, cuts)
    # the packet in front of the garbage cannot be told from a truncated one, so it is dropped too
    assert out == head[:-PACKET_SIZE] + tail
    assert aligner.resyncs == 1
    assert aligner.dropped_bytes == PACKET_SIZE + len(garbage)


@settings(max_examples=40, deadline=None)
@given(
    keep=st.integers(min_value=1, max_value=187),
    cuts=st.lists(st.integers(min_value=0, max_value=20 * PACKET_SIZE), max_size=20),
)
def test_aligner_drops_a_truncated_packet(keep: int, cuts: list[int]) -> None:
    packets = clean_packets(16)
    stream = b"".join(packets[:8]) + packets[8][:keep] + b"".join(packets[9:])
    out = feed_all(PacketAligner(), stream, cuts)
    assert out == b"".join(packets[:8] + packets[9:])


def test_aligner_finds_sync_after_leading_garbage() -> None:
    data = b"".join(clean_packets(6))
    aligner = PacketAligner()
    out = aligner.feed(b"\x00\x01G\x02" * 50 + data) + aligner.flush()
    assert out == data
    assert aligner.dropped_bytes == 200


@settings(max_examples=80, deadline=None)
@given(chunks=st.lists(st.binary(max_size=700), max_size=20))
def test_aligner_memory_is_bounded_on_any_input(chunks: list[bytes]) -> None:
    aligner = PacketAligner()
    for chunk in chunks:
        out = aligner.feed(chunk)
        assert len(out) % PACKET_SIZE == 0
        assert aligner.pending < aligner.max_pending
    many_syncs = PacketAligner()
    many_syncs.feed(b"G" * 10_000)
    assert many_syncs.pending <= PACKET_SIZE


# ------------------------------------------------------------------------------------------ PSI


def test_crc32_mpeg_check_value() -> None:
    assert crc32_mpeg(b"123456789") == 0x0376E6E7


def test_parse_pat_and_pmt_and_reject_a_corrupt_crc() -> None:
    pat = make_pat(0x0ABC, program=7)
    assert parse_pat(pat) == {7: 0x0ABC}
    pmt = make_pmt(
        0x100, [(0x1B, 0x100, b""), (0x0F, 0x101, b""), (0x06, 0x102, b"\x6a\x01\x00"), (0x06, 0x103, b"")]
    )
    program = parse_pmt(pmt)
    assert program.pcr_pid == 0x100
    assert program.video is not None
    assert (program.video.pid, program.video.codec) == (0x100, "h264")
    assert [(s.pid, s.codec) for s in program.audio] == [(0x101, "aac"), (0x102, "ac3")]
    assert program.streams[-1].kind == "other"
    broken = bytearray(pmt)
    broken[12] ^= 0xFF
    with pytest.raises(ValueError, match="CRC"):
        parse_pmt(bytes(broken))
    with pytest.raises(ValueError, match="table_id"):
        parse_pat(pmt)


# ------------------------------------------------------------------------------------------ analyzer


def video_keyframe_offsets(data: bytes) -> list[int]:
    """Independent reference: video PUSI packets whose adaptation field sets random_access_indicator."""
    found = []
    for off in range(0, len(data), PACKET_SIZE):
        pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        has_flags = data[off + 3] & 0x20 and data[off + 4]
        if pid == VIDEO_PID and data[off + 1] & 0x40 and has_flags and data[off + 5] & 0x40:
            found.append(off)
    return found


@pytest.mark.ffmpeg
def test_analyzer_finds_exactly_the_keyframes_ffprobe_reports() -> None:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pos,flags", "-of", "json",
         str(SAMPLES / "testcard.ts")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    expected = [int(p["pos"]) for p in json.loads(probe.stdout)["packets"] if p["flags"].startswith("K")]
    analyzer = StreamAnalyzer()
    assert analyzer.header == b""
    found = analyzer.scan(TESTCARD)
    assert len(expected) == 8  # one per 1 s GOP of the 8 s loop
    assert found == expected
    assert analyzer.keyframes == 8


def test_analyzer_learns_pat_pmt_and_pids() -> None:
    analyzer = StreamAnalyzer()
    analyzer.scan(TESTCARD)
    assert analyzer.pmt_pid == PMT_PID
    assert analyzer.video_pid == VIDEO_PID
    assert analyzer.video_codec == "h264"
    assert analyzer.audio_pids == (AUDIO_PID,)
    assert analyzer.pat is not None
    assert analyzer.pmt is not None
    assert packet_pid(analyzer.pat) == 0
    assert packet_pid(analyzer.pmt) == PMT_PID
    assert analyzer.header == analyzer.pat + analyzer.pmt
    # the kept packets are the stream's latest ones, byte for byte
    last_pat = max(o for o in range(0, len(TESTCARD), 188) if packet_pid(TESTCARD, o) == 0)
    assert analyzer.pat == TESTCARD[last_pat : last_pat + 188]


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(TESTCARD)), max_size=30))
def test_analyzer_is_incremental_over_aligned_chunks(cuts: list[int]) -> None:
    aligner = PacketAligner()
    analyzer = StreamAnalyzer()
    found: list[int] = []
    consumed = 0
    stream = TESTCARD * 2
    pos = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        packets = aligner.feed(stream[pos:cut])
        found += [consumed + o for o in analyzer.scan(packets)]
        consumed += len(packets)
        pos = cut
    packets = aligner.flush()
    found += [consumed + o for o in analyzer.scan(packets)]
    assert found == video_keyframe_offsets(stream)
    assert len(found) == 16


def test_analyzer_reports_nothing_before_it_has_seen_the_pmt() -> None:
    without_psi = b"".join(p for p in packets_of(TESTCARD) if packet_pid(p) not in (0, PMT_PID))
    analyzer = StreamAnalyzer()
    assert analyzer.scan(without_psi) == []
    assert analyzer.header == b""
    assert analyzer.video_pid is None


def test_analyzer_falls_back_to_nal_units_without_random_access_indicator() -> None:
    stripped = bytearray(TESTCARD)
    for off in range(0, len(stripped), PACKET_SIZE):
        if stripped[off + 3] & 0x20 and stripped[off + 4]:
            stripped[off + 5] &= ~0x40
    assert video_keyframe_offsets(bytes(stripped)) == []
    assert StreamAnalyzer().scan(memoryview(stripped)) == video_keyframe_offsets(TESTCARD)


def test_analyzer_rejects_partial_packets() -> None:
    with pytest.raises(ValueError, match="whole number"):
        StreamAnalyzer().scan(TESTCARD[:200])


def synthetic_stream(stream_type: int, frames: list[bytes], *, pmt_extra: int = 0) -> tuple[bytes, list[int]]:
    """PAT + PMT (optionally padded with extra streams to span packets) + one PES per frame."""
    streams = [(stream_type, 0x200, b"")] + [(0x06, 0x300 + i, b"\x0a\x04eng\x00") for i in range(pmt_extra)]
    data = psi_packets(0, make_pat(0x50)) + psi_packets(0x50, make_pmt(0x200, streams))
    starts = []
    cc = 0
    for i, es in enumerate(frames):
        starts.append(len(data))
        chunk = pes_packets(0x200, make_pes(0xE0, es, pts=i * 3600), cc=cc)
        cc += len(chunk) // PACKET_SIZE
        data += chunk
    return data, starts


H264_IDR = (
    b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x67\x4d\x00\x15" + b"\x00\x00\x01\x65\x88" + b"\x11" * 300
)
H264_P = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x41\x9a" + b"\x22" * 300
HEVC_IDR = b"\x00\x00\x01\x46\x01\x10\x00\x00\x01\x40\x01\x0c" + b"\x00\x00\x01\x26\x01" + b"\x33" * 300
HEVC_TRAIL = b"\x00\x00\x01\x46\x01\x50\x00\x00\x01\x02\x01" + b"\x44" * 300
MPEG2_I = b"\x00\x00\x01\xb3\x14\x00\xb4\x13" + b"\x00\x00\x01\x00\x00\x0f" + b"\x55" * 300
MPEG2_P = b"\x00\x00\x01\x00\x00\x57" + b"\x66" * 300


@pytest.mark.parametrize(
    ("stream_type", "key", "other"),
    [
        pytest.param(0x1B, H264_IDR, H264_P, id="h264"),
        pytest.param(0x24, HEVC_IDR, HEVC_TRAIL, id="hevc"),
        pytest.param(0x02, MPEG2_I, MPEG2_P, id="mpeg2"),
    ],
)
def test_analyzer_nal_keyframes_per_codec(stream_type: int, key: bytes, other: bytes) -> None:
    data, starts = synthetic_stream(stream_type, [key, other, other, key, other])
    assert StreamAnalyzer().scan(data) == [starts[0], starts[3]]


def test_analyzer_reassembles_a_pmt_spanning_packets() -> None:
    data, starts = synthetic_stream(0x1B, [H264_IDR, H264_P], pmt_extra=30)
    pmt_packets = [p for p in packets_of(data) if packet_pid(p) == 0x50]
    assert len(pmt_packets) >= 2
    analyzer = StreamAnalyzer()
    # split the stream between the two PMT packets: the section must survive the chunk boundary
    split = data.index(pmt_packets[1])
    found = analyzer.scan(data[:split]) + [split + o for o in analyzer.scan(data[split:])]
    assert found == [starts[0]]
    assert analyzer.video_pid == 0x200
    assert analyzer.program is not None
    assert len(analyzer.program.streams) == 31
    assert analyzer.pmt == b"".join(pmt_packets)


def test_analyzer_follows_a_pmt_change() -> None:
    data, _ = synthetic_stream(0x1B, [H264_IDR])
    analyzer = StreamAnalyzer()
    analyzer.scan(data)
    assert analyzer.video_pid == 0x200
    moved = psi_packets(0x50, make_pmt(0x210, [(0x24, 0x210, b"")]), cc=5)
    moved += pes_packets(0x210, make_pes(0xE0, HEVC_IDR, pts=0))
    assert analyzer.scan(moved) == [PACKET_SIZE]
    assert (analyzer.video_pid, analyzer.video_codec) == (0x210, "hevc")


# ------------------------------------------------------------------------------------------ timestamps


@given(
    value=st.integers(min_value=0, max_value=TIMESTAMP_MODULUS - 1),
    prefix=st.sampled_from([0x10, 0x20, 0x30]),
)
def test_pes_timestamp_round_trip_keeps_prefix_and_markers(value: int, prefix: int) -> None:
    buf = bytearray((prefix | 1, 1, 1, 1, 1))
    write_pes_timestamp(buf, 0, value)
    assert read_pes_timestamp(buf, 0) == value
    assert buf[0] & 0xF0 == prefix
    assert buf[0] & 1 and buf[2] & 1 and buf[4] & 1


@given(value=st.integers(min_value=0, max_value=TIMESTAMP_MODULUS * 300 - 1))
def test_pcr_round_trip(value: int) -> None:
    buf = bytearray(6)
    write_pcr(buf, 0, value)
    assert read_pcr(buf, 0) == value
    assert buf[4] & 0x7E == 0x7E  # reserved bits


@pytest.mark.parametrize("ticks", [90_000 * 8, TIMESTAMP_MODULUS - 100_000, 3 * TIMESTAMP_MODULUS + 1])
def test_shift_timestamps_moves_every_pts_dts_and_pcr(ticks: int) -> None:
    fields = timestamp_fields(TESTCARD)
    kinds = {f.kind for f in fields}
    assert len(kinds) == 2
    buf = bytearray(TESTCARD)
    shift_timestamps(buf, ticks)
    moved = 0
    for off in range(0, len(buf), PACKET_SIZE):
        before, after = pes_timestamps(TESTCARD, off), pes_timestamps(buf, off)
        for old, new in zip(before, after, strict=True):
            assert (old is None) == (new is None)
            if old is not None and new is not None:
                assert new == (old + ticks) % TIMESTAMP_MODULUS
                moved += 1
    pcrs = [f for f in fields if f.kind == FIELD_PCR]
    for field in pcrs:
        assert read_pcr(buf, field.offset) == (read_pcr(TESTCARD, field.offset) + ticks * 300) % (
            TIMESTAMP_MODULUS * 300
        )
    assert moved + len(pcrs) == len(fields)
    assert moved > 200
    # only timestamp bytes changed
    changed = {i for i, (a, b) in enumerate(zip(TESTCARD, buf, strict=True)) if a != b}
    allowed = {f.offset + i for f in fields for i in range(6 if f.kind == FIELD_PCR else 5)}
    assert changed <= allowed


# ------------------------------------------------------------------------------------------ continuity


def cc_sequences(data: bytes) -> dict[int, list[tuple[int, bool]]]:
    seqs: dict[int, list[tuple[int, bool]]] = {}
    for off in range(0, len(data), PACKET_SIZE):
        pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        seqs.setdefault(pid, []).append((data[off + 3] & 0x0F, bool(data[off + 3] & 0x10)))
    return seqs


def assert_continuous(data: bytes) -> None:
    for pid, seq in cc_sequences(data).items():
        for (prev, _), (cc, payload) in itertools.pairwise(seq):
            assert cc == ((prev + 1) & 0x0F if payload else prev), f"pid {pid:#x}"


def test_continuity_rewriter_renumbers_from_a_running_counter() -> None:
    scrambled = bytearray(TESTCARD * 2)  # the naive repeat breaks continuity at the seam
    with pytest.raises(AssertionError):
        assert_continuous(bytes(scrambled))
    rewriter = ContinuityRewriter({VIDEO_PID: 5})
    half = len(scrambled) // 2
    first, second = scrambled[:half], scrambled[half:]
    rewriter.rewrite(first)
    rewriter.rewrite(second)
    joined = bytes(first + second)
    assert_continuous(joined)
    assert cc_sequences(joined)[VIDEO_PID][0][0] == 5
    assert rewriter.state[VIDEO_PID] == (5 + sum(p for _, p in cc_sequences(joined)[VIDEO_PID])) % 16


def test_continuity_rewriter_repeats_the_counter_on_packets_without_payload() -> None:
    buf = bytearray(
        make_packet(0x40, cc=9, payload=b"\x00" * 184)
        + make_packet(0x40, cc=2, pcr=1)
        + make_packet(0x40, cc=0, payload=b"\x00" * 184)
    )
    ContinuityRewriter().rewrite(buf)
    assert [cc for cc, _ in cc_sequences(bytes(buf))[0x40]] == [0, 0, 1]


def test_add_continuity_keeps_counters_continuous() -> None:
    loop = bytearray(TESTCARD)
    counter = ContinuityRewriter()
    counter.rewrite(loop)
    second = bytearray(loop)
    add_continuity(second, counter.state)
    assert_continuous(bytes(loop + second))
