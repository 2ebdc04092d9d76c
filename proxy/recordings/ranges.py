"""HTTP ``Range`` requests for recordings (RFC 9110 section 14). Pure: no I/O.

:func:`parse_range` turns a ``Range`` header and the size of the file into the one
:class:`ByteRange` to send with 206, ``None`` (send the whole file with 200), or raises
:class:`~proxy.errors.RangeNotSatisfiable` (416 with ``Content-Range: bytes */size``).

Decisions, so that every player gets an answer it can play:

- **Ignored (None -> 200):** no header; a unit other than ``bytes`` (RFC 9110 14.2: a
  server ignores a unit it does not understand); a syntactically invalid header
  (garbage, signs, non-ASCII digits, ``last < first``), which RFC 9110 14.2 also says
  to ignore rather than reject with 400.
- **Several ranges** (``bytes=0-1,5-6``): ignored, so the client gets 200 and the whole
  file. The RFC lets a server ignore ``Range``; a single-part 206 for a multi-range
  request would answer a different question than the one asked, and multipart bodies
  are not worth their complexity: no player of recordings sends them. Empty list
  elements (``bytes=0-99,``) do not count as ranges (RFC 9110 5.6.1).
- **Whitespace** (spaces, tabs) is tolerated around ``=``, ``-``, ``,`` and at both ends.
  Digits must be ASCII. Numbers too large for any file saturate instead of failing.
- **Known size:** ``bytes=N-M`` and ``bytes=N-`` with ``N >= size`` raise
  ``RangeNotSatisfiable(size)``; ``M`` beyond the end is clamped to ``size - 1``.
  ``bytes=-N`` is the last ``N`` bytes, the whole file when ``N >= size``;
  ``bytes=-0`` is unsatisfiable. A zero-length file has no byte a 206 could name: an
  ``N-`` range is unsatisfiable (``N >= 0``) and a non-zero suffix returns None (200,
  empty body).
- **Unknown size** (``size=None``, a recording NextPVR is still writing and whose length
  nobody knows yet): only ``bytes=N-`` can be honoured. It returns an *open* range,
  ``ByteRange(N, -1)``, whose ``length`` is None (send no Content-Length). An open range
  has no ``Content-Range`` of its own: the handler either forwards ``bytes=N-`` upstream
  and relays NextPVR's answer, or learns the current end and calls
  :meth:`ByteRange.closed_at`. ``bytes=N-M`` and suffixes (``bytes=-0`` included: a 416
  must name the complete length) cannot be checked against an unknown end and are
  ignored (200). When the handler knows the *current* size of a
  growing file it should pass that size instead and write
  ``content_range(None)`` -> ``bytes N-M/*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.errors import RangeNotSatisfiable

__all__ = ["OPEN_END", "ByteRange", "parse_range"]

#: ``ByteRange.end`` of a range that runs to the end of a file of unknown size
OPEN_END = -1

# Larger than any file; a header with more digits than this saturates to it rather than
# paying for a huge int conversion (CPython refuses more than 4300 digits anyway).
_MAX_OFFSET = 2**63 - 1
_MAX_DIGITS = len(str(_MAX_OFFSET))

_OWS = " \t"
_SPEC = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*", re.ASCII)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` through ``end`` inclusive, or from ``start`` on when ``end`` is ``OPEN_END``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or (self.end != OPEN_END and self.end < self.start):
            raise ValueError(f"invalid byte range {self.start}-{self.end}")

    @property
    def is_open(self) -> bool:
        return self.end == OPEN_END

    @property
    def length(self) -> int | None:
        """Bytes in the range (the Content-Length of the 206), None for an open range."""
        return None if self.is_open else self.end - self.start + 1

    def content_range(self, size: int | None) -> str:
        """``bytes 0-499/1234``, or ``bytes 0-499/*`` while the complete size is unknown."""
        if self.is_open:
            raise ValueError("an open range has no Content-Range; close it with closed_at() first")
        total = "*" if size is None else str(size)
        return f"bytes {self.start}-{self.end}/{total}"

    def closed_at(self, end: int) -> ByteRange:
        """This range ending at ``end`` at most (an open range ends exactly there)."""
        return ByteRange(self.start, end if self.is_open else min(self.end, end))


def parse_range(header: str | None, size: int | None) -> ByteRange | None:
    """The range to serve for ``header`` on a file of ``size`` bytes (None: unknown).

    Returns None when the whole file should be sent with 200; raises
    :class:`RangeNotSatisfiable` for 416. See the module docstring for every case.
    """
    if size is not None and size < 0:
        raise ValueError(f"negative size {size}")
    if header is None:
        return None
    unit, eq, range_set = header.partition("=")
    if not eq or unit.strip(_OWS).lower() != "bytes":
        return None
    specs = [s for s in range_set.split(",") if s.strip(_OWS)]
    if len(specs) != 1:
        return None
    m = _SPEC.fullmatch(specs[0])
    if m is None:
        return None
    first_s, last_s = m.group(1), m.group(2)
    if not first_s and not last_s:
        return None
    if not first_s:
        return _suffix(_to_int(last_s), size)
    first = _to_int(first_s)
    last = _to_int(last_s) if last_s else None
    if last is not None and last < first:
        return None
    if size is None:
        return ByteRange(first, OPEN_END) if last is None else None
    if first >= size:
        raise RangeNotSatisfiable(size)
    end = size - 1 if last is None else min(last, size - 1)
    return ByteRange(first, end)


def _suffix(count: int, size: int | None) -> ByteRange | None:
    if size is None:
        # not even ``bytes=-0`` can be refused: a 416 must name the complete length
        return None
    if count == 0:
        raise RangeNotSatisfiable(size)
    if size == 0:
        return None
    return ByteRange(max(size - count, 0), size - 1)


def _to_int(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _MAX_OFFSET if len(digits) > _MAX_DIGITS else min(int(digits), _MAX_OFFSET)
