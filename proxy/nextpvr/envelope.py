"""NextPVR answers (XML or JSON) -> :class:`Envelope`, plus typed access to the records inside.

:func:`parse_envelope` sniffs the body rather than trusting what was asked for: NextPVR
may ignore ``format=json`` on some methods. Anything malformed raises
:class:`NextPVRUnparseable` naming the method and the problem, never quoting the body
(it may carry a session id).

XML is parsed with :mod:`xml.etree.ElementTree` after refusing any DTD (``<!DOCTYPE``,
``<!ENTITY``) so entity expansion attacks cannot start, and only ASCII-compatible
encodings are accepted so that refusal cannot be dodged by re-encoding the document.

The field accessors (:class:`Fields` and the ``xml_*``/``json_*`` helpers) give the
per-method parsers in :mod:`proxy.nextpvr.parse` one lenient, typed way to read a
record whether it came as an XML element or a JSON object; they live here so that every
failure message is built in one place.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from proxy.errors import NextPVRUnparseable
from proxy.log import redact

__all__ = [
    "Envelope",
    "Fields",
    "int_or_none",
    "is_session_error",
    "json_items",
    "parse_envelope",
    "record",
    "safe_message",
    "unparseable",
    "xml_all_text",
    "xml_items",
    "xml_root",
]

#: NextPVR's code for "missing, invalid or expired sid"
SESSION_ERROR_CODE = 8
_SESSION_ERROR_MSG = re.compile(r"not logged in|invalid session", re.IGNORECASE)

_BOM = b"\xef\xbb\xbf"
_XML_DECL = re.compile(rb"\A<\?xml[^>]*\?>")
_XML_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DTD = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# single-byte or UTF-8 codecs in which "<!DOCTYPE" cannot hide
_XML_CODECS = {
    "utf-8": "utf-8", "utf8": "utf-8", "us-ascii": "ascii", "ascii": "ascii",
    "iso-8859-1": "latin-1", "latin-1": "latin-1", "latin1": "latin-1",
    "windows-1252": "cp1252", "cp1252": "cp1252",
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One parsed API answer: its status plus the XML root or the JSON value."""

    method: str
    format: Literal["xml", "json"]
    ok: bool
    #: the stat text as sent ("" when a JSON body left it out)
    stat: str = ""
    code: int | None = None
    #: NextPVR's error message; may be empty
    msg: str = ""
    #: the ``<rsp>`` element (XML)
    root: ET.Element | None = None
    #: the decoded JSON value (JSON)
    data: object = None


def unparseable(method: str, problem: str) -> NextPVRUnparseable:
    return NextPVRUnparseable(f"NextPVR sent an unreadable answer to {method} ({problem})")


def parse_envelope(body: bytes, method: str) -> Envelope:
    """Decode ``body`` as XML or JSON, whichever it is, and read the stat/code/msg."""
    if body.startswith(_BOM):
        body = body[len(_BOM):]
    head = body.lstrip()[:1]
    if head == b"<":
        return _xml_envelope(body, method)
    if head in (b"{", b"["):
        return _json_envelope(body, method)
    if not head:
        raise unparseable(method, "empty body")
    raise unparseable(method, "neither XML nor JSON")


def _xml_envelope(body: bytes, method: str) -> Envelope:
    root = _parse_xml(body, method)
    if root.tag != "rsp":
        raise unparseable(method, f"root element <{_short(root.tag)}> instead of <rsp>")
    stat = root.get("stat")
    err = root.find("err")
    code: int | None = None
    msg = ""
    if err is not None:
        code = int_or_none(err.get("code"))
        msg = err.get("msg") or (err.text or "").strip()
    # a missing stat is read as success unless an <err> says otherwise
    ok = stat.strip().lower() == "ok" if stat is not None else err is None
    return Envelope(method, "xml", ok, stat or "", code, msg, root=root)


def _parse_xml(body: bytes, method: str) -> ET.Element:
    if b"\x00" in body:
        raise unparseable(method, "XML in an unsupported encoding")
    body = body.lstrip()
    codec = "utf-8"
    decl = _XML_DECL.match(body)
    if decl:
        enc = _XML_ENCODING.search(decl.group(0))
        if enc:
            name = enc.group(1).decode("ascii").lower()
            if name not in _XML_CODECS:
                raise unparseable(method, "XML in an unsupported encoding")
            codec = _XML_CODECS[name]
        body = body[decl.end():]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError:
        raise unparseable(method, f"XML that is not valid {codec}") from None
    if _DTD.search(text):
        raise unparseable(method, "XML with a DTD, refused")
    try:
        return ET.fromstring(text)
    except ET.ParseError:
        raise unparseable(method, "malformed XML") from None


def _json_envelope(body: bytes, method: str) -> Envelope:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise unparseable(method, "malformed JSON") from None
    if isinstance(data, list):
        return Envelope(method, "json", True, data=data)
    if not isinstance(data, dict):
        raise unparseable(method, "JSON that is neither an object nor a list")
    stat = data.get("stat")
    if stat is not None and not isinstance(stat, str):
        raise unparseable(method, "'stat' is not a string")
    code = data.get("code")
    code_int = int_or_none(code) if isinstance(code, int | str) and not isinstance(code, bool) else None
    msg = data.get("msg")
    msg_text = msg if isinstance(msg, str) else ""
    ok = stat is None or stat.strip().lower() == "ok"
    return Envelope(method, "json", ok, stat or "", code_int, msg_text, data=data)


def is_session_error(env: Envelope) -> bool:
    """True for NextPVR's "log in again" answer: code 8, or a message saying so."""
    if env.ok:
        return False
    return env.code == SESSION_ERROR_CODE or bool(_SESSION_ERROR_MSG.search(env.msg))


def safe_message(env: Envelope, *, limit: int = 80) -> str:
    """``"code 2: Invalid Args."``: NextPVR's failure text, fit for an error message.

    The text is foreign, so it is cut short, stripped of control characters and scrubbed
    of anything that looks like a session id before it goes anywhere.
    """
    msg = "".join(ch for ch in env.msg if ch.isprintable()).strip()
    msg = redact(msg[:limit] + ("..." if len(msg) > limit else ""))
    code = f"code {env.code}" if env.code is not None else f"stat {_short(env.stat)!r}"
    return f"{code}: {msg}" if msg else code


# -- field accessors ---------------------------------------------------------------


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError:
            return None
    return None


def _float_or_none(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _bool_or_none(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no", ""):
            return False
    return None


def _date_or_none(value: object) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


class Fields:
    """Uniform typed access to one record, whether an XML element or a JSON object.

    ``what`` names the record in error messages (``"channel #3"``), never its values.
    """

    def __init__(self, method: str, what: str, get: Mapping[str, object]) -> None:
        self.method = method
        self.what = what
        self._get = get

    @classmethod
    def of_xml(cls, method: str, what: str, el: ET.Element) -> Fields:
        values: dict[str, object] = {}
        for child in el:
            # first occurrence wins; repeated children (genres) are read with xml_all()
            values.setdefault(child.tag, (child.text or "").strip())
        return cls(method, what, values)

    @classmethod
    def of_json(cls, method: str, what: str, obj: object) -> Fields:
        if not isinstance(obj, dict):
            raise unparseable(method, f"{what} is not an object")
        return cls(method, what, obj)

    def _fail(self, key: str, problem: str) -> NextPVRUnparseable:
        return unparseable(self.method, f"{self.what}: '{key}' {problem}")

    def raw(self, *keys: str) -> object:
        for key in keys:
            value = self._get.get(key)
            if value is not None:
                return value
        return None

    def req_int(self, *keys: str) -> int:
        value = int_or_none(self.raw(*keys))
        if value is None:
            raise self._fail(keys[0], "is missing or not an integer")
        return value

    def req_float(self, *keys: str) -> float:
        value = _float_or_none(self.raw(*keys))
        if value is None:
            raise self._fail(keys[0], "is missing or not a number")
        return value

    def req_str(self, *keys: str) -> str:
        value = self.raw(*keys)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(keys[0], "is missing or empty")
        return value.strip()

    def opt_int(self, *keys: str) -> int | None:
        return int_or_none(self.raw(*keys))

    def opt_float(self, *keys: str) -> float | None:
        return _float_or_none(self.raw(*keys))

    def text(self, *keys: str, default: str = "") -> str:
        value = self.raw(*keys)
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return default

    def opt_str(self, *keys: str) -> str | None:
        value = self.text(*keys)
        return value or None

    def opt_bool(self, *keys: str) -> bool | None:
        return _bool_or_none(self.raw(*keys))

    def opt_date(self, *keys: str) -> dt.date | None:
        return _date_or_none(self.raw(*keys))

    def str_list(self, *keys: str) -> tuple[str, ...]:
        value = self.raw(*keys)
        if isinstance(value, list):
            return tuple(v.strip() for v in value if isinstance(v, str) and v.strip())
        if isinstance(value, str) and value.strip():
            return (value.strip(),)
        return ()


def xml_root(env: Envelope) -> ET.Element:
    if env.root is None:
        raise unparseable(env.method, "expected XML")
    return env.root


def xml_items(env: Envelope, container: str, item: str) -> Iterator[ET.Element]:
    """``<rsp><container><item/>...`` items; a missing container means an empty list."""
    root = xml_root(env)
    box = root.find(container)
    if box is None:
        return iter(())
    return box.iterfind(item)


def xml_all_text(el: ET.Element, container: str, item: str, single: str | None = None) -> tuple[str, ...]:
    """Texts of ``<container><item>`` (or of direct ``<single>`` children), deduplicated."""
    out: list[str] = []
    for child in el.iterfind(f"{container}/{item}"):
        text = (child.text or "").strip()
        if text and text not in out:
            out.append(text)
    if not out and single:
        for child in el.iterfind(single):
            text = (child.text or "").strip()
            if text and text not in out:
                out.append(text)
    return tuple(out)


def json_items(env: Envelope, key: str) -> list[object]:
    data = env.data
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise unparseable(env.method, "expected a JSON object")
    items = data.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise unparseable(env.method, f"'{key}' is not a list")
    return items


def record(env: Envelope, what: str) -> Fields:
    """The single record that makes up the whole answer (children of ``<rsp>``, or the object)."""
    if env.format == "xml":
        return Fields.of_xml(env.method, what, xml_root(env))
    return Fields.of_json(env.method, what, env.data)
