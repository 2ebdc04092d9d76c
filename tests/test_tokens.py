"""Signed URL tokens and the proxy's URL mapper."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.hls.rewrite import UriKind, UriSite
from proxy.hls.tokens import (
    MAX_TOKEN_CHARS,
    SID_PLACEHOLDER,
    Target,
    TokenError,
    TokenSigner,
    _HmacSha256,
)
from proxy.hls.url_mapper import ProxyUrlMapper, file_name

SECRET = b"k" * 32
NOW = 1_700_000_000
SID = "1364d857ab564bd893c7ea5008de0644"
NEXTPVR = "http://127.0.0.1:8866"
SEGMENT = UriSite(None, None, UriKind.MEDIA)
VARIANT = UriSite(None, None, UriKind.PLAYLIST)


def target(**changes: object) -> Target:
    fields: dict[str, object] = {
        "origin": 0, "path_query": f"/service?method=channel.transcode.segment&seg=41&sid={SID_PLACEHOLDER}",
        "kind": "media", "generation": 2, "expires": NOW + 600,
    }
    fields.update(changes)
    return Target(**fields)  # type: ignore[arg-type]


def unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET)


@pytest.fixture
def mapper(signer: TokenSigner) -> ProxyUrlMapper:
    return ProxyUrlMapper(signer, scope="live.7181.720p", generation=2, expires=NOW + 600,
                          origins=[NEXTPVR, "https://cdn.example.net"], secrets=[SID])


def refused(signer: TokenSigner, token: str, scope: str = "live.7181.720p", now: float = NOW) -> str:
    with pytest.raises(TokenError) as caught:
        signer.verify(scope, token, now=now)
    return caught.value.reason


# ---- signer --------------------------------------------------------------------------------------


def test_round_trip_is_deterministic_and_url_safe(signer: TokenSigner) -> None:
    t = target()
    token = signer.sign("live.7181.720p", t)
    assert token == signer.sign("live.7181.720p", t) == TokenSigner(SECRET).sign("live.7181.720p", t)
    assert signer.verify("live.7181.720p", token, now=NOW) == t
    assert "/" not in token and "=" not in token and "+" not in token
    # a typical NextPVR segment path: compact (the issue asks for < ~120 characters)
    assert len(token) < 70


@pytest.mark.parametrize("t", [
    target(kind="playlist"), target(origin=255, generation=2**32 - 1, expires=2**32 - 1),
    target(path_query=""), target(path_query="/é/ü?x=%2F&y=\U0001f600"), target(generation=0),
])
def test_every_field_round_trips(signer: TokenSigner, t: Target) -> None:
    assert signer.verify("rec.866.720p", signer.sign("rec.866.720p", t), now=0) == t


@pytest.mark.parametrize("t", [target(origin=256), target(origin=-1), target(generation=2**32),
                               target(expires=-1), target(path_query="x" * 3000)])
def test_unsignable_targets(signer: TokenSigner, t: Target) -> None:
    with pytest.raises(ValueError, match=r"origin|path"):
        signer.sign("s", t)


@pytest.mark.parametrize("scope", ["", "a/b", "a b", "x" * 65, "é", "a\x00", ".", "..", ".x", "blocked"])
def test_bad_scopes(signer: TokenSigner, scope: str) -> None:
    with pytest.raises(ValueError, match="scope"):
        signer.sign(scope, target())
    token = signer.sign("ok", target())
    assert refused(signer, token, scope=scope) == "scope"


def test_other_scope_is_refused_as_scope(signer: TokenSigner) -> None:
    token = signer.sign("live.7181.720p", target())
    assert refused(signer, token, scope="live.7182.720p") == "scope"
    assert refused(signer, token, scope="live.7181.1080p") == "scope"


def test_expiry(signer: TokenSigner) -> None:
    token = signer.sign("s", target(expires=NOW))
    assert signer.verify("s", token, now=NOW - 0.5).expires == NOW
    assert refused(signer, token, "s", now=NOW) == "expired"
    assert refused(signer, token, "s", now=NOW + 10**6) == "expired"


def test_every_bit_flip_is_forged(signer: TokenSigner) -> None:
    token = signer.sign("s", target())
    raw = unb64(token)
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        assert refused(signer, b64(bytes(flipped)), "s") == "forged", i


def test_every_character_substitution_is_forged(signer: TokenSigner) -> None:
    # includes substitutions that only change base64 padding bits: non-canonical spellings are refused
    token = signer.sign("s", target())
    for i, ch in enumerate(token):
        for other in "AgQw_-9":
            if other != ch:
                assert refused(signer, token[:i] + other + token[i + 1:], "s") == "forged", (i, other)


def test_truncation_extension_and_junk_are_forged(signer: TokenSigner) -> None:
    token = signer.sign("s", target())
    for n in range(len(token)):
        assert refused(signer, token[:n], "s") == "forged"
    for junk in ["A", "AA", "AAAA", "=", "==", "/", ".", " ", "\n"]:
        assert refused(signer, token + junk, "s") == "forged"
        assert refused(signer, junk + token, "s") == "forged"
    assert refused(signer, token.replace(token[5], "+"), "s") == "forged"


def test_another_secret_is_forged(signer: TokenSigner) -> None:
    token = signer.sign("s", target())
    assert refused(TokenSigner(b"x" * 32), token, "s") == "forged"
    assert refused(TokenSigner(None), token, "s") == "forged"


def test_random_secret_per_signer() -> None:
    assert TokenSigner(None).sign("s", target()) != TokenSigner(None).sign("s", target())


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        TokenSigner(b"short")


def test_overlong_input_is_refused_cheaply(signer: TokenSigner) -> None:
    token = signer.sign("s", target())
    assert refused(signer, "A" * (MAX_TOKEN_CHARS + 1), "s") == "forged"
    huge = token + "A" * 10_000_000
    started = time.perf_counter()
    assert refused(signer, huge, "s") == "forged"
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize("key", [b"", b"k", b"k" * 32, b"k" * 64, b"k" * 65, bytes(range(200))])
def test_hmac_is_standard_hmac_sha256(key: bytes) -> None:
    for message in [b"", b"abc", bytes(range(256)) * 3]:
        assert _HmacSha256(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


# ---- mapper --------------------------------------------------------------------------------------


def decode(signer: TokenSigner, url: str, scope: str = "live.7181.720p") -> Target:
    prefix, got_scope, token, _name = url.lstrip("/").split("/")
    assert (prefix, got_scope) == ("hls", scope)
    return signer.verify(scope, token, now=NOW)


def test_mapper_scrubs_the_sid_and_resolves_it_back(signer: TokenSigner, mapper: ProxyUrlMapper) -> None:
    url = f"{NEXTPVR}/service?method=channel.transcode.segment&client=XBMC-{SID}&sid={SID}&seg=7"
    out = mapper(url, SEGMENT)
    assert out is not None
    assert out.startswith("/hls/live.7181.720p/") and out.endswith("/segment.ts")
    t = decode(signer, out)
    assert SID not in t.path_query and t.path_query.count(SID_PLACEHOLDER) == 2
    assert (t.origin, t.kind, t.generation, t.expires) == (0, "media", 2, NOW + 600)
    assert mapper.resolve(t, SID) == url
    assert mapper.resolve(t, "newsid") == url.replace(SID, "newsid")
    for raw in (unb64(out.split("/")[3]), out.encode()):
        assert SID.encode() not in raw
        assert b"127.0.0.1" not in raw and b"8866" not in raw


def test_mapper_is_deterministic(mapper: ProxyUrlMapper, signer: TokenSigner) -> None:
    url = f"{NEXTPVR}/a/b.ts?x=1"
    again = ProxyUrlMapper(signer, scope="live.7181.720p", generation=2, expires=NOW + 600,
                           origins=[NEXTPVR, "https://cdn.example.net"], secrets=[SID])
    assert mapper(url, SEGMENT) == mapper(url, SEGMENT) == again(url, SEGMENT)
    assert mapper(url, SEGMENT) != mapper(url, VARIANT)


def test_second_origin_and_origin_spellings(mapper: ProxyUrlMapper, signer: TokenSigner) -> None:
    out = mapper("https://cdn.example.net/x/y.m4s", SEGMENT)
    assert out is not None
    t = decode(signer, out)
    assert (t.origin, t.path_query) == (1, "/x/y.m4s")
    for spelling in ["HTTPS://CDN.example.NET/x/y.m4s", "https://cdn.example.net:443/x/y.m4s"]:
        got = mapper(spelling, SEGMENT)
        assert got is not None
        assert mapper.resolve(decode(signer, got), SID) == "https://cdn.example.net/x/y.m4s"
    assert mapper.resolve(decode(signer, mapper(NEXTPVR, SEGMENT) or ""), SID) == NEXTPVR
    assert mapper.resolve(decode(signer, mapper(NEXTPVR + "?a", SEGMENT) or ""), SID) == NEXTPVR + "?a"


@pytest.mark.parametrize("url", [
    "http://evil.example/seg.ts",
    "http://127.0.0.1:88660/seg.ts",
    "http://127.0.0.1:8866@evil.example/seg.ts",
    "http://user:pw@127.0.0.1:8866/seg.ts",
    "https://127.0.0.1:8866/seg.ts",
    "http://127.0.0.1.evil.example:8866/seg.ts",
    "http://[::1]:8866/seg.ts",
    "http://[::1/seg.ts",
    "http://127.0.0.1:99999/seg.ts",
    "http:///seg.ts",
    "http://127.0.0.1:8866/seg.ts\x00",
    f"http://127.0.0.1:8866/{'x' * 3000}.ts",
])
def test_foreign_and_odd_urls_are_blocked(mapper: ProxyUrlMapper, url: str) -> None:
    out = mapper(url, SEGMENT)
    assert out is not None
    assert out.startswith("/hls/blocked/")
    _, _, _, digest, name = out.split("/")
    assert len(digest) == 12 and name.endswith(".ts")
    assert out == mapper(url, SEGMENT)
    assert "evil" not in out and "127.0.0.1" not in out


def test_blocked_urls_never_show_the_sid_or_a_lan_host(mapper: ProxyUrlMapper, signer: TokenSigner) -> None:
    url = f"http://192.168.1.20:8866/{SID}.ts?sid={SID}"
    out = mapper(url, SEGMENT)
    assert out is not None
    assert SID not in out and "192.168" not in out
    assert out.endswith("/segment.ts")
    # the digest does not change when the session is renewed (same URI across reloads)
    renewed = ProxyUrlMapper(signer, scope="live.7181.720p", generation=2, expires=NOW + 600,
                             origins=[NEXTPVR], secrets=["f" * 32])
    assert renewed(url.replace(SID, "f" * 32), SEGMENT) == out


@pytest.mark.parametrize("secret", ["sid", "\x00", "abc", "abcd\x00"])
def test_secrets_that_could_corrupt_the_placeholder_are_refused(signer: TokenSigner, secret: str) -> None:
    with pytest.raises(ValueError, match="session id"):
        ProxyUrlMapper(signer, scope="s", generation=0, expires=0, origins=[NEXTPVR], secrets=[SID, secret])


@pytest.mark.parametrize(("path_query", "kind", "name"), [
    ("/live/stream_4031.ts?channel=7.1", UriKind.MEDIA, "stream_4031.ts"),
    ("/hls/7.1/segment%201529.ts", UriKind.MEDIA, "segment_201529.ts"),
    ("/service?method=channel.transcode.m3u8&sid=x", UriKind.PLAYLIST, "index.m3u8"),
    ("/service?method=channel.transcode.segment&file=seg12.ts", UriKind.MEDIA, "seg12.ts"),
    ("/service?method=channel.transcode.segment&seg=12", UriKind.MEDIA, "segment.ts"),
    ("/hls/7.1/index.m3u8?seg=1528", UriKind.MEDIA, "segment.ts"),
    ("/a/720p/INDEX.M3U8", UriKind.PLAYLIST, "INDEX.m3u8"),
    ("/a/list.m3u", UriKind.PLAYLIST, "list.m3u8"),
    ("/1M/waitForMSN.php", UriKind.RENDITION_REPORT, "index.m3u8"),
    ("/k/session.key?kid=7", UriKind.KEY, "session.key"),
    ("/k/get?kid=7", UriKind.KEY, "key.key"),
    ("/init", UriKind.INIT, "segment.ts"),
    ("/init", UriKind.PRELOAD_HINT, "segment.ts"),
    ("/meta/chapters.json?v=3", UriKind.DATA, "chapters.json"),
    ("/steer", UriKind.DATA, "data.json"),
    ("/p/filePart270.10.mp4", UriKind.PART, "filePart270.10.mp4"),
    ("/p/.ts", UriKind.MEDIA, "segment.ts"),
    ("/p/" + "a" * 200 + ".m4s", UriKind.MEDIA, "a" * 76 + ".m4s"),
    ("/p/Ünïcode seg.aac", UriKind.MEDIA, "_n_code_seg.aac"),
    ("/p/seg.exe", UriKind.MEDIA, "segment.ts"),
    ("/p/seg.exe", UriKind.OTHER, "segment.ts"),
])
def test_file_names(path_query: str, kind: UriKind, name: str) -> None:
    assert file_name(path_query, kind) == name


def test_file_names_never_hold_a_secret_or_host() -> None:
    assert file_name(f"/x/{SID}.ts", UriKind.MEDIA, [SID]) == "segment.ts"
    assert file_name("/x/nextpvr.local.m3u8", UriKind.PLAYLIST, ["nextpvr.local"]) == "index.m3u8"


def test_playlist_sites_sign_playlist_tokens(mapper: ProxyUrlMapper, signer: TokenSigner) -> None:
    for kind, expected in [(UriKind.PLAYLIST, "playlist"), (UriKind.RENDITION_REPORT, "playlist"),
                           (UriKind.MEDIA, "media"), (UriKind.KEY, "media"), (UriKind.DATA, "media"),
                           (UriKind.INIT, "media"), (UriKind.PART, "media"), (UriKind.OTHER, "media")]:
        out = mapper(f"{NEXTPVR}/x", UriSite("T", "URI", kind))
        assert decode(signer, out or "").kind == expected


@pytest.mark.parametrize("origins", [[], ["http://h/path"], ["ftp://h"], ["http://u@h"], ["h:80"]])
def test_mapper_rejects_bad_origins(signer: TokenSigner, origins: list[str]) -> None:
    with pytest.raises(ValueError, match="origin"):
        ProxyUrlMapper(signer, scope="s", generation=0, expires=0, origins=origins, secrets=[])


@pytest.mark.parametrize("prefix", ["", "/", "hls", "/hls/", "/h ls", "/..", "/a/./b"])
def test_mapper_rejects_bad_prefixes(signer: TokenSigner, prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ProxyUrlMapper(signer, scope="s", generation=0, expires=0, origins=[NEXTPVR], secrets=[],
                       prefix=prefix)


def test_custom_prefix_and_unknown_origin_index(signer: TokenSigner) -> None:
    m = ProxyUrlMapper(signer, scope="s", generation=0, expires=NOW + 1, origins=[NEXTPVR], secrets=[""],
                       prefix="/p/x")
    out = m(f"{NEXTPVR}/a.ts", SEGMENT)
    assert out is not None and out.startswith("/p/x/s/") and out.endswith("/a.ts")
    with pytest.raises(TokenError):
        m.resolve(target(origin=1), SID)


# ---- opacity, compactness, the verified-token cache (issue 11, section 3) -----------------------------

EMULATOR_PATHS = [
    f"/service?method=channel.transcode.segment&sid={SID_PLACEHOLDER}&transcode=17&segment=41529",
    f"/service?method=recording.transcode.segment&sid={SID_PLACEHOLDER}&transcode=3&segment=1234",
    f"/transcode/17/41529.ts?sid={SID_PLACEHOLDER}",
    "/service?method=channel.transcode.segment&seg=41529&sid=" + SID_PLACEHOLDER,
]


def components(path_query: str) -> set[str]:
    """Every path segment, parameter name and value (and dotted part of one) of at least 3 characters."""
    path, _, query = path_query.partition("?")
    parts = [p for p in path.split("/") if p]
    for pair in query.split("&"):
        parts.extend(pair.split("="))
    parts += [piece for p in list(parts) for piece in p.split(".")]
    return {p for p in parts if len(p) >= 3 and "\x00" not in p}


@pytest.mark.parametrize("path_query", EMULATOR_PATHS)
def test_tokens_are_opaque_and_compact(signer: TokenSigner, path_query: str) -> None:
    token = signer.sign("live.7181.720p", target(path_query=path_query))
    assert len(token) < 120
    raw = unb64(token)
    for piece in components(path_query) | {"service", "method", "sid", "segment", "transcode"}:
        assert piece.encode() not in raw, piece
        assert piece not in token, piece
    assert signer.verify("live.7181.720p", token, now=NOW).path_query == path_query


def test_mapped_urls_are_opaque(signer: TokenSigner, mapper: ProxyUrlMapper) -> None:
    url = f"{NEXTPVR}/service?method=channel.transcode.segment&sid={SID}&transcode=17&segment=41529"
    out = mapper(url, SEGMENT)
    assert out is not None
    token = out.split("/")[3]
    raw = unb64(token)
    for piece in ["service", "method", "channel", "transcode", "segment", "41529", "sid", SID[:8]]:
        assert piece.encode() not in raw and piece not in token, piece
    assert out == f"/hls/live.7181.720p/{signer.sign('live.7181.720p', decode(signer, out))}/segment.ts"


def test_another_replica_with_the_same_secret_verifies(signer: TokenSigner) -> None:
    token = signer.sign("s", target())
    assert TokenSigner(SECRET, cache_entries=0).verify("s", token, now=NOW) == target()


def test_the_old_signed_format_is_refused() -> None:
    # version 1 tokens were HMAC-signed plaintext: they must not verify as the new format
    payload = bytes([1, 0, 0]) + (2).to_bytes(4, "big") + (NOW + 600).to_bytes(4, "big") + b"\0" * 8 + b"/x"
    assert refused(TokenSigner(SECRET), b64(payload + b"\0" * 16)) == "forged"


@pytest.mark.parametrize("cache_entries", [0, 1, 4096])
def test_a_cached_token_is_still_checked_for_scope_and_expiry(cache_entries: int) -> None:
    signer = TokenSigner(SECRET, cache_entries=cache_entries)
    token = signer.sign("live.1.720p", target(expires=NOW + 10))
    for _ in range(2):  # the second round is answered from the cache when there is one
        assert signer.verify("live.1.720p", token, now=NOW).expires == NOW + 10
        assert refused(signer, token, scope="live.2.720p") == "scope"
        assert refused(signer, token, scope="a/b") == "scope"
        assert refused(signer, token, scope="live.1.720p", now=NOW + 10) == "expired"
        assert refused(signer, token[:-1], scope="live.1.720p") == "forged"


def test_the_verified_cache_is_bounded() -> None:
    signer = TokenSigner(SECRET, cache_entries=8)
    tokens = [signer.sign("s", target(path_query=f"/seg{i}.ts")) for i in range(50)]
    for token in tokens:
        signer.verify("s", token, now=NOW)
    assert len(signer._verified) == 8
    assert set(signer._verified) == set(tokens[-8:])
    # an evicted token is simply verified again
    assert signer.verify("s", tokens[0], now=NOW).path_query == "/seg0.ts"
    incompressible = "".join(hashlib.sha256(bytes([i])).hexdigest() for i in range(10))
    long_token = signer.sign("s", target(path_query="/" + incompressible))
    assert len(long_token) > 256
    signer.verify("s", long_token, now=NOW)
    assert long_token not in signer._verified  # long ones are not kept (the cache is bounded in bytes)
    with pytest.raises(ValueError, match="cache_entries"):
        TokenSigner(SECRET, cache_entries=-1)


def test_forgeries_never_enter_the_cache(signer: TokenSigner) -> None:
    token = signer.sign("s", target())
    for bad in [token[:-2], "A" * len(token), token + "A"]:
        refused(signer, bad, "s")
    assert signer._verified == {}


path_chars = st.text(string.ascii_letters + string.digits + "-_.~%!$&'()*+,;=:@", min_size=3, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(path_chars, min_size=1, max_size=5), st.lists(st.tuples(path_chars, path_chars), max_size=4),
       st.sampled_from(["media", "playlist"]), st.integers(0, 255), st.integers(0, 2**32 - 1))
def test_no_path_component_survives_in_any_token(segments: list[str], params: list[tuple[str, str]],
                                                  kind: str, origin: int, generation: int) -> None:
    signer = TokenSigner(SECRET)
    query = "&".join(f"{k}={v}" for k, v in params)
    path_query = "/" + "/".join(segments) + (f"?{query}" if query else "")
    t = target(path_query=path_query, kind=kind, origin=origin, generation=generation)
    token = signer.sign("rec.866.720p", t)
    raw = unb64(token)
    for piece in components(path_query):
        if len(piece) >= 4:  # a 3-byte string turns up in 60 random bytes about once in 300,000
            assert piece.encode() not in raw
    assert signer.verify("rec.866.720p", token, now=0) == t
