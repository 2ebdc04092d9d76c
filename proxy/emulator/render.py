"""NextPVR's two answer formats: the ``<rsp>`` XML envelope and flat JSON objects."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = [
    "INVALID_ARGS",
    "ApiError",
    "Node",
    "Reply",
    "el",
    "invalid_args",
    "leaf",
    "render",
    "render_error",
    "wants_json",
    "xml_text",
]

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8" ?>\n'


@dataclass(frozen=True, slots=True)
class Node:
    """One XML element; data travels as child elements, a few methods use attributes."""

    tag: str
    text: str | None = None
    children: tuple[Node, ...] = ()
    attrs: tuple[tuple[str, str], ...] = ()


def el(tag: str, *children: Node | Iterable[Node], attrs: dict[str, object] | None = None) -> Node:
    flat: list[Node] = []
    for child in children:
        if isinstance(child, Node):
            flat.append(child)
        else:
            flat.extend(child)
    return Node(tag, None, tuple(flat), tuple((k, _scalar(v)) for k, v in (attrs or {}).items()))


def leaf(tag: str, value: object) -> Node:
    return Node(tag, _scalar(value))


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    return _escape(text).replace('"', "&quot;")


def _write(node: Node, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    attrs = "".join(f' {k}="{_attr(v)}"' for k, v in node.attrs)
    if node.children:
        out.append(f"{pad}<{node.tag}{attrs}>\n")
        for child in node.children:
            _write(child, depth + 1, out)
        out.append(f"{pad}</{node.tag}>\n")
    elif node.text is None:
        out.append(f"{pad}<{node.tag}{attrs} />\n")
    else:
        out.append(f"{pad}<{node.tag}{attrs}>{_escape(node.text)}</{node.tag}>\n")


def xml_text(root: Node, *, declaration: bool = True) -> str:
    out: list[str] = [XML_DECLARATION] if declaration else []
    _write(root, 0, out)
    return "".join(out)


class ApiError(Exception):
    """A failure NextPVR reports at HTTP 200 inside the envelope."""

    def __init__(self, code: int, msg: str, stat: str = "fail") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.stat = stat


#: the one failure body seen from a real 7.0.1 server (nextpvr-api.md §1.3)
INVALID_ARGS = (2, "Invalid Args.", "Failed")


def invalid_args() -> ApiError:
    return ApiError(*INVALID_ARGS)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a method answers; it builds only the form the caller asked for."""

    xml: tuple[Node, ...] = ()
    json: Any = None
    #: add "stat":"ok" to a JSON object body
    json_stat: bool = False
    #: a whole XML document that is not an <rsp> envelope (channel.stream.info's raw <map>)
    raw_xml: Node | None = None


def wants_json(request: web.Request) -> bool:
    """``format=`` wins; otherwise JSON only when the Accept header names application/json (q > 0)."""
    fmt = request.query.get("format", "").lower()
    if fmt in ("json", "xml"):
        return fmt == "json"
    for part in request.headers.get("Accept", "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() == "application/json":
            return all(not _is_zero_q(p) for p in params)
    return False


def _is_zero_q(param: str) -> bool:
    name, _, value = param.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value) == 0
    except ValueError:
        return False


def _json_response(body: Any) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")), content_type="application/json", charset="utf-8"
    )


def _xml_response(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/xml", charset="utf-8")


def render(reply: Reply, as_json: bool) -> web.Response:
    if reply.raw_xml is not None:
        return _xml_response(xml_text(reply.raw_xml, declaration=False))
    if as_json:
        body = reply.json
        if reply.json_stat and isinstance(body, dict):
            body = {"stat": "ok", **body}
        return _json_response(body if body is not None else {"stat": "ok"})
    if not reply.xml:
        # an empty answer still spells the opening tag out: old clients grep for '<rsp stat="ok">'
        return _xml_response(XML_DECLARATION + '<rsp stat="ok">\n</rsp>\n')
    return _xml_response(xml_text(el("rsp", reply.xml, attrs={"stat": "ok"})))


def render_error(error: ApiError, as_json: bool) -> web.Response:
    if as_json:
        return _json_response({"stat": error.stat, "code": error.code, "msg": error.msg})
    err = el("err", attrs={"code": error.code, "msg": error.msg})
    return _xml_response(xml_text(el("rsp", err, attrs={"stat": error.stat})))
