"""No served playlist carries NextPVR's origin, an extra origin, a held session id or ``sid=``
(issue 11, section 2): property tests with the real ProxyUrlMapper and LeakGuard.

The playlists put the leaks everywhere upstream text can sit (comments, unknown tags, SESSION-DATA
VALUE, DATERANGE X- attributes, EXTINF titles, fragments, URI lines of every scheme, data: URIs,
variable references), in any casing and percent-encoding. The oracle reads the output as a client
could: every depth of percent-encoding undone, base64 data: payloads decoded, lower-cased.
"""

from __future__ import annotations

import base64
import re
import string
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.hls.rewrite import rewrite_playlist
from proxy.hls.scrub import LeakGuard
from proxy.hls.tokens import TokenSigner
from proxy.hls.url_mapper import ProxyUrlMapper

HOST = "nextpvr-box.test"
ORIGIN = f"http://{HOST}:8866"
EXTRA_HOST = "media.nextpvr-cdn.test"
EXTRA = f"https://{EXTRA_HOST}"
SCOPE = "live.7181.720p"
NOW = 1_700_000_000
SIGNER = TokenSigner(b"leak-property-secret-of-32-bytes")
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROXY_URL = re.compile(r"/hls/([A-Za-z0-9._-]+)/([A-Za-z0-9_-]+)/[A-Za-z0-9._-]+")
BLOCKED_URL = re.compile(r"/hls/blocked/[A-Za-z0-9_-]+/[A-Za-z0-9._-]+")

hex_sids = st.text("0123456789abcdef", min_size=32, max_size=32)
words = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8)
clean_text = st.text(string.ascii_letters + string.digits + " -_.", max_size=12)


@st.composite
def disguised(draw: st.DrawFn, text: str) -> str:
    """``text`` in random casing, with some characters percent-encoded once or twice."""
    out = []
    for ch in text:
        if ch.isalpha() and draw(st.booleans()):
            ch = ch.swapcase()
        how = draw(st.sampled_from(["plain", "plain", "plain", "once", "twice"]))
        if how == "once":
            ch = f"%{ord(ch):02X}" if ord(ch) < 128 else ch
        elif how == "twice":
            ch = f"%25{ord(ch):02x}" if ord(ch) < 128 else ch
        out.append(ch)
    return "".join(out)


@dataclass
class Case:
    sids: list[str]
    lines: list[str] = field(default_factory=list)
    #: upstream URLs that must come back as proxy URLs, in order
    proxied: list[str] = field(default_factory=list)
    blocked: int = 0
    #: lines that must be served exactly as they are
    verbatim: list[str] = field(default_factory=list)
    segments: int = 0


@st.composite
def leaks(draw: st.DrawFn, sids: list[str]) -> str:
    sid = draw(st.sampled_from(sids))
    raw = draw(st.sampled_from([
        f"{ORIGIN}/service?method=channel.transcode.segment&sid={sid}",
        f"{EXTRA}/x/{draw(words)}.ts",
        f"http://{HOST}/",
        f"{HOST}:8866",
        sid,
        f"sid={draw(words)}",
        f"client=XBMC-{sid}",
    ]))
    return str(draw(disguised(raw)))


@st.composite
def references(draw: st.DrawFn, sids: list[str]) -> str:
    """A URI a known site may carry (resolvable to the origins): it must be proxied losslessly."""
    path = "/".join(draw(st.lists(words, min_size=1, max_size=3)))
    query = draw(st.sampled_from(["", f"?seg={draw(words)}", f"?sid={draw(st.sampled_from(sids))}&n=1"]))
    prefix = draw(st.sampled_from(["", "/", f"{ORIGIN}/", f"{EXTRA}/", f"//{HOST}:8866/"]))
    return prefix + path + ".ts" + query


@st.composite
def cases(draw: st.DrawFn) -> tuple[Case, str]:
    sids = draw(st.lists(hex_sids, min_size=1, max_size=4, unique=True))
    base = f"{ORIGIN}/service?method=channel.transcode.m3u8&sid={sids[0]}"
    case = Case(sids)
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from([
            "comment", "lower-tag", "unknown", "unknown-clean", "session-data", "daterange", "title",
            "segment", "fragment", "key", "scheme", "data", "skd", "variable",
        ]))
        leak = draw(leaks(sids))
        if kind == "comment":
            case.lines.append(draw(st.sampled_from(["# ", "#", "  # ", "#EX"])) + leak)
        elif kind == "lower-tag":  # tags are case-sensitive: this is a comment
            case.lines.append(f"#ext-x-prefetch:{leak}")
        elif kind == "unknown":
            name = draw(st.sampled_from(["EXT-X-PREFETCH", "EXT-X-VENDOR-DEBUG", "EXT-NEXTPVR"]))
            case.lines.append(f'#{name}:URI="{leak}"' if draw(st.booleans()) else f"#{name}:{leak}")
        elif kind == "unknown-clean":
            line = f"#EXT-X-VENDOR-{draw(st.sampled_from(['A', 'B']))}:{draw(clean_text)}"
            case.lines.append(line)
            case.verbatim.append(line)
        elif kind == "session-data":
            case.lines.append(f'#EXT-X-SESSION-DATA:DATA-ID="com.example.x",VALUE="{leak}"')
        elif kind == "daterange":
            keep = f'#EXT-X-DATERANGE:ID="d{len(case.lines)}",START-DATE="2026-01-01T00:00:00Z"'
            case.lines.append(f'{keep},X-COM-EXAMPLE-NOTE="{leak}",X-OK="yes"')
            case.verbatim.append(keep + ',X-OK="yes"')
        elif kind in ("title", "segment", "fragment"):
            ref = draw(references(sids))
            title = leak if kind == "title" else draw(clean_text)
            uri = ref + "#" + leak if kind == "fragment" else ref
            case.lines += [f"#EXTINF:6,{title}", uri]
            case.proxied.append(urljoin(base, ref))
            case.segments += 1
            if kind == "title":
                case.verbatim.append("#EXTINF:6,")
        elif kind == "key":
            ref = draw(references(sids))
            case.lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{ref}",IV=0x01')
            case.proxied.append(urljoin(base, ref))
        elif kind == "scheme":  # other schemes, no host: the always-403 URL, leaking or not
            uri = draw(st.sampled_from([
                f"gopher://{HOST}/1", "file:///etc/passwd", f"javascript:fetch('{leak}')", f"http:/{HOST}/x.ts",
                f"ftp://{draw(words)}/x.ts", f"HTTP:{draw(words)}.ts", f"skd://{leak}",
            ]))
            case.lines += ["#EXTINF:6,", uri]
            case.blocked += 1
            case.segments += 1
        elif kind == "data":
            payload = base64.b64encode(f'{{"server":"{leak}"}}'.encode()).decode()
            uri = draw(st.sampled_from([f"data:application/json;base64,{payload}", f"data:text/plain,{leak}"]))
            case.lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{uri}"')
            case.blocked += 1
        elif kind == "skd":  # a clean key-system URI reaches the player as it is
            line = f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://{draw(words)}",KEYFORMAT="com.apple.streamingkeydelivery"'
            case.lines.append(line)
            case.verbatim.append(line)
        else:  # a variable reference that leaks: refused; a clean one stays for the client to resolve
            if draw(st.booleans()):
                case.lines += ["#EXTINF:6,", f"{{$cdn}}/{leak}.ts"]
                case.blocked += 1
            else:
                uri = f"{{$cdn}}/{draw(words)}.ts"
                case.lines += ["#EXTINF:6,", uri]
                case.verbatim.append(uri)
            case.segments += 1
    return case, base


def readable(text: str) -> str:
    """The output as a client could read it (the oracle; independent of LeakGuard)."""
    extra = [base64.b64decode(m + "=" * (-len(m) % 4)).decode("latin-1")
             for m in re.findall(r";base64,([A-Za-z0-9+/]+)", text)]
    out = "\n".join([text, *extra])
    for _ in range(8):
        decoded = unquote(out)
        if decoded == out:
            break
        out = decoded
    return out.lower()


def rewrite(case: Case, base: str, newline: str = "\n") -> tuple[str, object]:
    text = newline.join(["#EXTM3U", "#EXT-X-TARGETDURATION:6", *case.lines]) + newline
    guard = LeakGuard(origins=[ORIGIN, EXTRA], session_ids=case.sids)
    mapper = ProxyUrlMapper(SIGNER, scope=SCOPE, generation=1, expires=NOW + 60, origins=[ORIGIN, EXTRA],
                            secrets=case.sids[:1], forbidden_names=guard.needles)
    return rewrite_playlist(text, base, mapper, guard=guard)


@PROPS
@given(cases(), st.sampled_from(["\n", "\r\n"]))
def test_no_leak_survives_and_every_known_site_is_still_rewritten(case_base: tuple[Case, str],
                                                                  newline: str) -> None:
    case, base = case_base
    out, info = rewrite(case, base, newline)
    seen = readable(out)
    for needle in [HOST, EXTRA_HOST, "sid=", *case.sids]:
        assert needle not in seen, needle
    lines = out.split(newline)
    assert lines[:2] == ["#EXTM3U", "#EXT-X-TARGETDURATION:6"]
    assert not any(line.lstrip().startswith("#") and not line.lstrip().startswith("#EXT") for line in lines)
    for line in case.verbatim:
        assert line in lines, line
    # every known URI site: a token that decodes to exactly the upstream URL, in playlist order
    mapper = ProxyUrlMapper(SIGNER, scope=SCOPE, generation=1, expires=NOW + 60, origins=[ORIGIN, EXTRA],
                            secrets=case.sids[:1])
    decoded = [mapper.resolve(SIGNER.verify(scope, token, now=NOW), case.sids[0])
               for scope, token in PROXY_URL.findall(out) if scope != "blocked"]
    assert decoded == case.proxied
    assert len(BLOCKED_URL.findall(out)) == case.blocked
    assert info.segment_count == case.segments  # type: ignore[attr-defined]


# ---- the rules, one by one ------------------------------------------------------------------------

SID = "1364d857ab564bd893c7ea5008de0644"
OLD_SID = "ffffd857ab564bd893c7ea5008de0000"
BASE = f"{ORIGIN}/service?method=channel.transcode.m3u8&sid={SID}"
GUARD = LeakGuard(origins=[ORIGIN, EXTRA], session_ids=[SID, OLD_SID])


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, url: str, site: object) -> str:
        self.calls.append(url)
        return f"/p/{len(self.calls)}"


def scrub(*lines: str, **kwargs: object) -> tuple[list[str], object, Recorder]:
    rec = Recorder()
    text = "\n".join(["#EXTM3U", "#EXT-X-TARGETDURATION:6", *lines]) + "\n"
    out, info = rewrite_playlist(text, BASE, rec, guard=GUARD, **kwargs)  # type: ignore[arg-type]
    return out.split("\n")[2:-1], info, rec


def test_comments_go_and_clean_tags_stay_byte_for_byte() -> None:
    lines = ["#EXT-X-CUE-OUT:DURATION=30", "# just a note", "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00Z",
             '#EXT-X-DATERANGE:ID="a",START-DATE="2026-01-01T00:00:00Z",X-COM-BEACON="https://ads.example/b"',
             "#EXTINF:6,Title, with commas", "seg.ts"]
    out, info, _ = scrub(*lines)
    assert out == [*lines[:1], *lines[2:5], "/p/1"]
    assert (info.dropped_tags, info.dropped_attributes, info.dropped_names) == (0, 0, ())  # type: ignore[attr-defined]


def test_each_kind_of_leak_and_what_is_left() -> None:
    out, info, rec = scrub(
        f"#EXT-X-VENDOR:{HOST}",  # unknown: dropped
        f'#EXT-X-SESSION-DATA:DATA-ID="x",VALUE="%{ord(SID[0]):02x}{SID[1:]}"',  # dropped whole
        '#EXT-X-DATERANGE:ID="d",START-DATE="2026-01-01T00:00:00Z",X-NOTE="SID=1",X-OK="1"',  # trimmed
        f"#EXTINF:6,{OLD_SID.upper()}", "a.ts",  # title emptied
        "b.ts#sid=9",  # fragment dropped
        f"#EXT-X-STREAM-INF:BANDWIDTH=1,NAME=\"{EXTRA_HOST}\"", "v.m3u8",  # dropped with its URI
        f"#EXT-X-DEFINE:NAME=\"h\",VALUE=\"{ORIGIN}\"",  # dropped (its value would reach URIs)
    )
    assert out == ['#EXT-X-DATERANGE:ID="d",START-DATE="2026-01-01T00:00:00Z",X-OK="1"', "#EXTINF:6,",
                   "/p/1", "/p/2"]
    assert rec.calls == [f"{ORIGIN}/a.ts", f"{ORIGIN}/b.ts"]
    assert info.dropped_tags == 4  # type: ignore[attr-defined]
    assert info.dropped_attributes == 3  # type: ignore[attr-defined]
    assert set(info.dropped_names) == {  # type: ignore[attr-defined]
        "EXT-X-VENDOR", "EXT-X-SESSION-DATA", "EXT-X-DATERANGE", "EXTINF", "URI", "EXT-X-STREAM-INF",
        "EXT-X-DEFINE"}


def test_a_tag_name_that_leaks_is_not_reported_by_name() -> None:
    _, info, _ = scrub(f"#EXT-X-{SID}:1")
    assert info.dropped_names == ("EXT?",)  # type: ignore[attr-defined]


def test_schemes_and_hostless_uris() -> None:
    out, _, rec = scrub(
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://key-42"',
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="SKD://key-43"',
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="fps://key-44"',
        '#EXT-X-KEY:METHOD=AES-128,URI="data:text/plain;base64,AAAA"',
        "#EXTINF:6,", "skd://not-a-key-site", "#EXTINF:6,", "gopher://x/1", "#EXTINF:6,", "http:/x/y.ts",
        "#EXTINF:6,", "data:video/mp2t;base64,R0dH",
        passthrough_schemes=("skd", "fps"),
    )
    assert out[:4] == ['#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://key-42"',
                       '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="SKD://key-43"',
                       '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="fps://key-44"',
                       '#EXT-X-KEY:METHOD=AES-128,URI="data:text/plain;base64,AAAA"']
    # passed to the mapper as written: the proxy's mapper answers its always-403 URL for them
    assert rec.calls == ["skd://not-a-key-site", "gopher://x/1", "http:/x/y.ts"]
    assert out[-1] == "data:video/mp2t;base64,R0dH"


def test_the_proxy_mapper_blocks_what_the_rewriter_refuses() -> None:
    mapper = ProxyUrlMapper(SIGNER, scope=SCOPE, generation=1, expires=NOW + 60, origins=[ORIGIN], secrets=[SID])
    text = "\n".join(["#EXTM3U", "#EXTINF:6,", "javascript:alert(1)", "#EXTINF:6,", f"http:/{HOST}/x.ts",
                      "#EXTINF:6,", f"{ORIGIN}/{{$v}}.ts"]) + "\n"
    out, _ = rewrite_playlist(text, BASE, mapper, guard=GUARD)
    uris = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(uris) == 3 and all(u.startswith("/hls/blocked/") for u in uris), uris


def test_leak_guard_sees_through_casing_and_encodings() -> None:
    for text in [SID, SID.upper(), "%31" + SID[1:], "%2531" + SID[1:], "SiD%3d", "s%69d=", "%25%37%33id=",
                 f"HTTP://{HOST.upper()}/", f"{EXTRA_HOST}", "x//NEXTPVR-box.test"]:
        assert GUARD.found(text), text
    for text in ["", "sid", "sessid", "100%", "%zz", "nextpvr", "id=1", SID[:-1]]:
        assert not GUARD.found(text), text
    payload = base64.b64encode(f"{{\"u\":\"{ORIGIN}\"}}".encode()).decode()
    assert GUARD.found_in_uri(f"data:application/json;base64,{payload}")
    utf16 = base64.b64encode(f"<k>{SID}</k>".encode("utf-16-le")).decode()
    assert GUARD.found_in_uri(f"data:text/plain;charset=UTF-16;base64,{utf16}")
    assert not GUARD.found_in_uri("data:text/plain;base64,AAAA")


def test_short_hosts_are_matched_only_as_hosts() -> None:
    guard = LeakGuard(origins=["http://nas:8866", "http://tv"])
    assert guard.found("http://nas:8866/x") and guard.found("//tv/x") and guard.found("NAS:8866")
    assert not guard.found("canasta") and not guard.found("tvheadend")
