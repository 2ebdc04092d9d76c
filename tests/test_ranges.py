"""Range headers resolve to exactly the bytes RFC 9110 section 14 asks for."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxy.errors import RangeNotSatisfiable
from proxy.recordings.ranges import OPEN_END, ByteRange, parse_range

SIZE = 1234
HUGE = "9" * 5000  # more digits than CPython's int() accepts by default

sizes = st.integers(min_value=1, max_value=10**13)
ows = st.text(alphabet=" \t", max_size=3)


def served(rng: ByteRange | None, size: int) -> bytes | None:
    """What a handler would send of a ``size``-byte body, or None for a plain 200."""
    body = bytes(i % 251 for i in range(size))
    return None if rng is None else body[rng.start : rng.end + 1]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-499", 0, 499),
        ("bytes=500-999", 500, 999),
        ("bytes=0-0", 0, 0),
        ("bytes=1233-1233", 1233, 1233),
        ("bytes=100-", 100, 1233),
        ("bytes=0-", 0, 1233),
        ("bytes=-500", 734, 1233),
        ("bytes=-1", 1233, 1233),
        ("bytes=-1234", 0, 1233),
        ("bytes=-99999", 0, 1233),  # suffix longer than the file: the whole file
        ("bytes=1000-99999", 1000, 1233),  # end beyond the file is clamped
        (f"bytes=5-{HUGE}", 5, 1233),
        ("BYTES=1-2", 1, 2),  # range units are case-insensitive
        ("  bytes = 10 - 20 ", 10, 20),
        ("bytes=\t7-\t", 7, 1233),
        ("bytes=- 10", 1224, 1233),
        ("bytes=0010-0020", 10, 20),
        ("bytes=0-99,", 0, 99),  # empty list elements are not ranges (RFC 9110 5.6.1)
        ("bytes=, ,0-99", 0, 99),
    ],
)
def test_satisfiable(header: str, start: int, end: int) -> None:
    rng = parse_range(header, SIZE)
    assert rng == ByteRange(start, end)
    assert rng.length == end - start + 1
    assert rng.content_range(SIZE) == f"bytes {start}-{end}/{SIZE}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "items=0-10",  # unknown unit: ignored
        "bytes",
        "bytes 0-10",
        "bytes=",
        "bytes=-",
        "bytes=abc",
        "bytes=10-5",  # last < first makes the range-spec invalid
        "bytes=+1-5",
        "bytes=-+5",
        "bytes=1.5-2",
        "bytes=0x10-0x20",
        "bytes=1 0-20",
        "bytes=0-1-2",
        "bytes=0-1=2",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits are not DIGIT
        "bytes=0-1,5-6",  # several ranges: whole file with 200
        "bytes=0-1, -5",
        "bytes=0-1,0-1",
        "bytes=5000-6000,0-1",  # several ranges are ignored even when one is unsatisfiable
        "bytes=0-1,garbage",
    ],
)
def test_ignored_headers_mean_send_everything(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    "header",
    ["bytes=1234-", "bytes=1234-1300", "bytes=5000-", f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}", "bytes=-0"],
)
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, SIZE)
    assert info.value.status == 416
    assert info.value.headers == {"Content-Range": f"bytes */{SIZE}"}


def test_empty_file() -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range("bytes=0-", 0)
    assert info.value.headers == {"Content-Range": "bytes */0"}
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-0", 0)
    # a non-zero suffix is satisfiable but names no byte: the (empty) file goes out with 200
    assert parse_range("bytes=-10", 0) is None


def test_unknown_size_serves_open_ranges_only() -> None:
    rng = parse_range("bytes=4096-", None)
    assert rng == ByteRange(4096, OPEN_END)
    assert rng.is_open and rng.length is None
    with pytest.raises(ValueError, match="open range"):
        rng.content_range(None)
    # once the handler knows where the bytes end (a growing file's current size), it can say so
    closed = rng.closed_at(9999)
    assert closed == ByteRange(4096, 9999)
    assert closed.content_range(None) == "bytes 4096-9999/*"
    assert parse_range("bytes=0-", None) == ByteRange(0, OPEN_END)
    # nothing else can be checked against an unknown end, not even to refuse it with 416
    for header in ("bytes=0-499", "bytes=-500", "bytes=-0", "bytes=0-1,4-5", "bytes=9-1", None):
        assert parse_range(header, None) is None


def test_known_size_growing_file() -> None:
    rng = parse_range("bytes=100-", 500)
    assert rng is not None
    assert rng.content_range(None) == "bytes 100-499/*"
    assert rng.closed_at(200) == ByteRange(100, 200)
    assert rng.closed_at(900) == rng


def test_byte_range_validates() -> None:
    with pytest.raises(ValueError, match="invalid byte range"):
        ByteRange(-1, 5)
    with pytest.raises(ValueError, match="invalid byte range"):
        ByteRange(6, 5)
    with pytest.raises(ValueError, match="negative size"):
        parse_range("bytes=0-", -1)


def test_served_bytes_match_the_request() -> None:
    assert served(parse_range("bytes=2-4", 10), 10) == bytes([2, 3, 4])
    assert served(parse_range("bytes=-3", 10), 10) == bytes([7, 8, 9])
    assert served(parse_range("bytes=8-", 10), 10) == bytes([8, 9])
    assert served(parse_range("bytes=0-1,3-4", 10), 10) is None


# -- properties ---------------------------------------------------------------

@given(size=sizes, data=st.data())
def test_first_last_within_file(size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(0, size - 1))
    last = data.draw(st.none() | st.integers(first, 10**15))
    header = f"bytes={first}-" if last is None else f"bytes={first}-{last}"
    rng = parse_range(header, size)
    assert rng is not None
    expected_end = size - 1 if last is None else min(last, size - 1)
    assert rng == ByteRange(first, expected_end)
    assert 0 <= rng.start <= rng.end < size
    assert rng.length == rng.end - rng.start + 1
    assert rng.length is not None and 1 <= rng.length <= size - first


@given(size=sizes, count=st.integers(1, 10**15))
def test_suffix_within_file(size: int, count: int) -> None:
    rng = parse_range(f"bytes=-{count}", size)
    assert rng is not None
    assert 0 <= rng.start <= rng.end == size - 1
    assert rng.length == min(count, size)


@given(size=st.integers(0, 10**13), data=st.data())
def test_start_at_or_past_end_is_416(size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(size, size + 10**15))
    last = data.draw(st.none() | st.integers(first, first + 10**15))
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(f"bytes={first}-{'' if last is None else last}", size)
    assert info.value.headers["Content-Range"] == f"bytes */{size}"


@given(size=sizes, data=st.data(), a=ows, b=ows, c=ows, d=ows, e=ows,
       unit=st.sampled_from(["bytes", "Bytes"]))
def test_whitespace_does_not_change_the_answer(
    size: int, data: st.DataObject, a: str, b: str, c: str, d: str, e: str, unit: str
) -> None:
    first = data.draw(st.integers(0, size - 1))
    last = data.draw(st.integers(first, 2 * size))
    assert parse_range(f"{a}{unit}{b}={c}{first}{d}-{e}{last}{a}", size) == parse_range(
        f"bytes={first}-{last}", size
    )


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@given(size=sizes, data=st.data())
def test_content_range_describes_the_range(size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(0, size - 1))
    last = data.draw(st.integers(first, size - 1))
    rng = parse_range(f"bytes={first}-{last}", size)
    assert rng is not None
    m = _CONTENT_RANGE.fullmatch(rng.content_range(size))
    assert m is not None
    assert (int(m[1]), int(m[2]), int(m[3])) == (first, last, size)
    assert rng.content_range(None) == f"bytes {first}-{last}/*"


range_like = st.from_regex(r"\A[ \t]*(bytes|Bytes|items|)[ \t]*=?[ \t]*[-0-9, \t]{0,24}\Z")


@given(header=st.text(max_size=40) | range_like, size=st.none() | st.integers(0, 10**6))
@example(header="bytes=-0", size=None)
@example(header=f"bytes={HUGE}-", size=None)
def test_any_header_is_safe(header: str, size: int | None) -> None:
    """Whatever arrives: None, a range inside the file, or a 416 naming the size; nothing else."""
    refused: RangeNotSatisfiable | None = None
    rng: ByteRange | None = None
    try:
        rng = parse_range(header, size)
    except RangeNotSatisfiable as exc:
        refused = exc
    if refused is not None:
        assert size is not None
        assert refused.headers["Content-Range"] == f"bytes */{size}"
        return
    if rng is None:
        return
    if size is None:
        assert rng.is_open and rng.start >= 0
    else:
        assert 0 <= rng.start <= rng.end < size
