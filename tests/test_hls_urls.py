"""hls/urls.py (scopes and the /hls URL layout) and hls/vod_index.py, against the real mapper."""

from __future__ import annotations

import pytest

from proxy.hls.rewrite import UriKind, UriSite
from proxy.hls.tokens import TokenSigner
from proxy.hls.url_mapper import ProxyUrlMapper
from proxy.hls.urls import TranscodeKey, check_scope, hls_path, parse_scope, split_hls_path
from proxy.hls.viewers import ViewerTracker
from proxy.hls.vod_index import VodIndex

NOW = 1_700_000_000
SID = "1364d857ab564bd893c7ea5008de0644"
NEXTPVR = "http://127.0.0.1:8866"
SEGMENT = UriSite(None, None, UriKind.MEDIA)


def mapper(signer: TokenSigner, scope: str, generation: int) -> ProxyUrlMapper:
    return ProxyUrlMapper(signer, scope=scope, generation=generation, expires=NOW + 600,
                          origins=[NEXTPVR], secrets=[SID])


@pytest.mark.parametrize("key", [TranscodeKey("channel", 7181, "720p"), TranscodeKey("recording", 12, "max"),
                                 TranscodeKey("channel", 4_294_967_295, "a_b-C")])
def test_scope_round_trip(key: TranscodeKey) -> None:
    assert parse_scope(key.scope) == key
    check_scope(key.scope)  # every transcode scope is a valid token scope


@pytest.mark.parametrize("scope", ["blocked", "live.x.720p", "tv.1.720p", "live.1.", "live.12345678901.720p",
                                   "live.1.720p/x", "rec.1.720.p", ""])
def test_other_strings_name_no_transcode(scope: str) -> None:
    assert parse_scope(scope) is None


@pytest.mark.parametrize("scope", ["blocked", ".", "..", ".x", "", "a" * 65, "a/b"])
def test_check_scope_refuses_what_is_not_one_path_segment(scope: str) -> None:
    with pytest.raises(ValueError):
        check_scope(scope)


def test_split_reads_what_the_mapper_writes() -> None:
    signer = TokenSigner(b"0123456789abcdef0123")
    scope = "live.7181.720p"
    url = mapper(signer, scope, 3)(f"{NEXTPVR}/service?method=channel.transcode.segment&seg=41&sid={SID}", SEGMENT)
    assert url is not None
    parts = split_hls_path(url)
    assert parts is not None and parts.scope == scope
    assert hls_path(parts.scope, parts.token, parts.name) == url
    assert signer.verify(scope, parts.token, now=NOW).generation == 3


@pytest.mark.parametrize("url", ["/hls/blocked/abc/seg.ts", "/hls/live.1.720p/tok", "/other/s/t/n",
                                 "hls/s/t/n", "/hls/s/t/n/extra", ""])
def test_split_refuses_anything_else(url: str) -> None:
    assert split_hls_path(url) is None


def test_vod_index_maps_old_urls_by_position_and_forgets_old_generations() -> None:
    signer = TokenSigner(b"0123456789abcdef0123")
    scope = "rec.12.720p"
    index = VodIndex(signer, max_generations=2)
    urls = {}
    for generation in (1, 2, 3):
        m = mapper(signer, scope, generation)
        urls[generation] = [m(f"{NEXTPVR}/service?method=recording.transcode.segment&seg={i}&sid={SID}", SEGMENT)
                            or "" for i in range(4)]
        index.remember(generation, scope, [*urls[generation], ""])  # "" is a URI the mapper left alone
    assert index.get(1) is None  # bounded: only the last two generations are kept
    vod = index.get(3)
    assert vod is not None and vod.paths[-1] == "" and len(vod.paths) == 5
    for generation in (2, 3):
        for position, url in enumerate(urls[generation]):
            parts = split_hls_path(url)
            assert parts is not None
            assert index.index(signer.verify(scope, parts.token, now=NOW)) == position
    forgotten = split_hls_path(urls[1][0])
    assert forgotten is not None
    assert index.index(signer.verify(scope, forgotten.token, now=NOW)) is None


def test_viewer_tracker_counts_distinct_clients_within_its_bound() -> None:
    new_viewers: list[int] = []
    tracker = ViewerTracker(lambda: new_viewers.append(1), max_tracked=3)
    for client in ["a", "b", "a", None, "c", "d"]:
        tracker.touch(client)
    assert len(new_viewers) == 4  # a, b, c, d; a again and an anonymous touch are not new
    assert tracker.count(target_duration=6) == 3  # the oldest client beyond the bound is forgotten
    assert tracker.idle_for() >= 0
