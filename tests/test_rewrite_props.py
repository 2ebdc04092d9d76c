"""Property tests of the rewriter with the real ProxyUrlMapper (hypothesis)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from urllib.parse import urljoin

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.hls.rewrite import PlaylistError, iter_rewrite, rewrite_playlist
from proxy.hls.tokens import TokenSigner
from proxy.hls.url_mapper import ProxyUrlMapper

HOST = "upstream-host.test"
ORIGIN = f"http://{HOST}:8866"
SCOPE = "rec.866.720p"
NOW = 1_700_000_000
SIGNER = TokenSigner(b"property-test-secret-32-bytes!!!")
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sids = st.text("0123456789abcdef", min_size=32, max_size=32)
# path segments never "." or "..", never empty, so urllib's urljoin is a valid oracle for resolution
segments = st.text(string.ascii_letters + string.digits + "_-%~.", min_size=1, max_size=12).filter(
    lambda s: s not in (".", ".."))
paths = st.lists(segments, min_size=1, max_size=4).map("/".join)
query_values = st.text(string.ascii_letters + string.digits + "%./=:-", min_size=1, max_size=10)


@st.composite
def queries(draw: st.DrawFn, sid: str) -> str:
    params = draw(st.lists(st.tuples(st.sampled_from(["a", "seg", "client", "x"]), query_values), max_size=3))
    if draw(st.booleans()):
        params.append(("sid", sid))
    if draw(st.booleans()):
        params.append(("client", f"XBMC-{sid}"))
    return "&".join(f"{k}={v}" for k, v in params)


@st.composite
def references(draw: st.DrawFn, sid: str) -> str:
    path = draw(paths)
    query = draw(queries(sid))
    q = f"?{query}" if query else ""
    form = draw(st.sampled_from(["relative", "root", "absolute", "network", "query"]))
    if form == "query":
        return f"?{query or 'seg=1'}"
    prefix = {"relative": "", "root": "/", "absolute": f"{ORIGIN}/", "network": f"//{HOST}:8866/"}[form]
    return prefix + path + q


@dataclass(frozen=True)
class Item:
    lines: tuple[str, ...]
    #: the URI reference carried by the last line, if it is a URI site
    ref: str | None = None
    #: text around the URI on its line (tags), or None for a URI line
    around: tuple[str, str] | None = None


texts = st.text(string.ascii_letters + string.digits + " ,.;:=-_\"'()[]{}!?$*+", max_size=30)


@st.composite
def items(draw: st.DrawFn, sid: str) -> Item:
    kind = draw(st.sampled_from(
        ["segment", "key", "map", "part", "comment", "unknown", "blank", "skd", "var"]))
    if kind in ("segment", "key", "map", "part"):
        ref = draw(references(sid))
        if kind == "segment":
            duration = draw(st.floats(min_value=0, max_value=20, allow_nan=False)).__round__(3)
            return Item((f"#EXTINF:{duration},{draw(texts)}", ref), ref)
        tag = {"key": '#EXT-X-KEY:METHOD=AES-128,URI="', "map": '#EXT-X-MAP:URI="',
               "part": '#EXT-X-PART:DURATION=0.5,URI="'}[kind]
        tail = '",IV=0x0123' if kind == "key" else ('",INDEPENDENT=YES' if kind == "part" else '"')
        return Item((tag + ref + tail,), ref, (tag, tail))
    if kind == "comment":
        return Item(("# " + draw(texts),))
    if kind == "unknown":
        return Item((f"#EXT-X-VENDOR-{draw(st.sampled_from(['A', 'B-C']))}:{draw(texts)}",))
    if kind == "skd":
        return Item(('#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://' + draw(segments) + '",KEYFORMAT="x"',))
    if kind == "var":
        return Item(("#EXTINF:1,", "{$cdn}/" + draw(paths)))
    return Item(("",))


@st.composite
def playlists(draw: st.DrawFn) -> tuple[str, str, str, list[Item], str]:
    sid = draw(sids)
    base_path = draw(st.sampled_from(["/service", "/hls/7.1/index.m3u8", "/a/b/"]))
    base = f"{ORIGIN}{base_path}?method=channel.transcode.m3u8&sid={sid}"
    body = draw(st.lists(items(sid), max_size=25))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:6", *[line for item in body for line in item.lines]]
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return text, base, sid, body, newline


def mapper_for(sid: str) -> ProxyUrlMapper:
    return ProxyUrlMapper(SIGNER, scope=SCOPE, generation=1, expires=NOW + 60, origins=[ORIGIN],
                          secrets=[sid])


def upstream_of(proxy_url: str, mapper: ProxyUrlMapper, sid: str) -> str:
    _, prefix, scope, token, _name = proxy_url.split("/")
    assert (prefix, scope) == ("hls", SCOPE)
    return mapper.resolve(SIGNER.verify(scope, token, now=NOW), sid)


@PROPS
@given(playlists())
def test_only_uri_sites_change_and_tokens_decode_to_their_upstream(
        case: tuple[str, str, str, list[Item], str]) -> None:
    text, base, sid, body, newline = case
    mapper = mapper_for(sid)
    out, info = rewrite_playlist(text, base, mapper)
    before, after = text.split(newline), out.split(newline)
    comments = sum(1 for item in body if item.lines[0].startswith("# "))
    if body and body[-1].lines[0].startswith("# ") and not text.endswith(newline):
        comments -= 1  # a comment on the last line leaves its line break: the output ends with one
    assert len(before) == len(after) + comments  # comment lines are dropped, with their line breaks
    assert before[:2] == after[:2]
    row = 2
    for item in body:
        if item.lines[0].startswith("# "):
            continue
        for line in item.lines[:-1]:
            assert after[row] == line
            row += 1
        got = after[row]
        if item.ref is None:
            assert got == item.lines[-1]
        else:
            if item.around is None:
                proxy_url = got
            else:
                head, tail = item.around
                assert got.startswith(head) and got.endswith(tail)
                proxy_url = got[len(head):len(got) - len(tail)]
            assert upstream_of(proxy_url, mapper, sid) == urljoin(base, item.ref)
        row += 1
    assert info.segment_count == sum(1 for item in body if len(item.lines) == 2)


@PROPS
@given(playlists())
def test_output_never_names_the_upstream_host_or_the_sid(case: tuple[str, str, str, list[Item], str]) -> None:
    text, base, sid, _, _ = case
    out, _ = rewrite_playlist(text, base, mapper_for(sid))
    assert HOST not in out
    assert sid not in out


@PROPS
@given(playlists(), st.integers(min_value=1, max_value=40))
def test_mapping_is_deterministic_and_chunking_invisible(
        case: tuple[str, str, str, list[Item], str], lines_per_chunk: int) -> None:
    text, base, sid, _, _ = case
    first, info = rewrite_playlist(text, base, mapper_for(sid))
    again, _ = rewrite_playlist(text, base, mapper_for(sid))
    job = iter_rewrite(text, base, mapper_for(sid), lines_per_chunk=lines_per_chunk)
    assert first == again == "".join(job)
    assert job.info == info


garbage_lines = st.one_of(
    st.text(max_size=60),
    st.builds("".join, st.tuples(
        st.sampled_from(["#EXTINF:", "#EXT-X-KEY:", "#EXT-X-MAP:", "#EXT-X-TARGETDURATION:",
                         "#EXT-X-PART:", "#EXT-X-MEDIA-SEQUENCE:", "#EXT-X-DATERANGE:", "#EXT-X-STREAM-INF:",
                         "#EXT-X-VERSION:", "#EXT-X-SESSION-DATA:", "#EXT-X-DEFINE:", "#EXT", "#", "URI=",
                         ""]),
        st.text(string.printable + "é\u2028\x85\ufeff", max_size=40))),
)


@PROPS
@given(st.lists(garbage_lines, max_size=20), st.booleans(), st.sampled_from(["\n", "\r\n", "\r"]))
def test_garbage_raises_nothing_but_playlist_error(lines: list[str], header: bool, newline: str) -> None:
    text = newline.join((["#EXTM3U"] if header else []) + lines)
    try:
        rewrite_playlist(text, f"{ORIGIN}/service?sid=abcdef12", mapper_for("abcdef12"))
    except PlaylistError:
        pass


@PROPS
@given(st.binary(max_size=300))
def test_random_bytes_raise_nothing_but_playlist_error(data: bytes) -> None:
    try:
        rewrite_playlist("#EXTM3U\n" + data.decode("latin-1"), f"{ORIGIN}/x.m3u8", mapper_for("abcdef12"))
    except PlaylistError:
        pass
