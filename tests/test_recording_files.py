"""Paths NextPVR reports map to local files, and never to anything outside the mapped folder."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from proxy.config import PathMapping
from proxy.recordings.files import RecordingFiles

LOGGER = "proxy.recordings"


@pytest.fixture
def rec(tmp_path: Path) -> Path:
    """A recordings folder with one show, next to a secret it must never reach."""
    root = tmp_path / "rec"
    (root / "News at Ten").mkdir(parents=True)
    (root / "News at Ten" / "news_20250101.ts").write_bytes(b"G" * 188)
    (tmp_path / "secret.ts").write_bytes(b"secret")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "other.ts").write_bytes(b"other")
    return root


def files(*pairs: tuple[str, str | Path]) -> RecordingFiles:
    return RecordingFiles([PathMapping(nextpvr=n, local=str(local)) for n, local in pairs])


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        yield caplog


def test_mapped_file_found(rec: Path) -> None:
    rf = files(("/recordings", rec))
    assert rf.enabled
    found = rf.resolve("/recordings/News at Ten/news_20250101.ts")
    assert found == rec / "News at Ten" / "news_20250101.ts"
    assert found is not None and found.read_bytes() == b"G" * 188
    # sloppy separators from NextPVR are harmless
    assert rf.resolve("/recordings//News at Ten/./news_20250101.ts") == found
    assert files(("/recordings/", rec)).resolve("/recordings/News at Ten/news_20250101.ts") == found


@pytest.mark.parametrize(
    "reported",
    [
        "D:\\Recordings\\News at Ten\\news_20250101.ts",
        "d:\\Recordings\\News at Ten\\news_20250101.ts",
        "D:/Recordings/News at Ten/news_20250101.ts",
        "D:\\RECORDINGS\\News at Ten\\news_20250101.ts",  # Windows folders are case-insensitive
        "D:\\Recordings/News at Ten\\news_20250101.ts",
    ],
)
def test_windows_mapping(rec: Path, reported: str) -> None:
    rf = files(("D:\\Recordings", rec))
    assert rf.resolve(reported) == rec / "News at Ten" / "news_20250101.ts"


def test_windows_mapping_needs_same_drive_and_keeps_local_case(rec: Path) -> None:
    rf = files(("d:/recordings/", rec))
    assert rf.resolve("D:\\Recordings\\News at Ten\\news_20250101.ts") is not None
    assert rf.resolve("E:\\Recordings\\News at Ten\\news_20250101.ts") is None
    assert rf.resolve("/Recordings/News at Ten/news_20250101.ts") is None
    # below the prefix the local filesystem decides, and this one is case-sensitive
    assert rf.resolve("D:\\Recordings\\NEWS AT TEN\\news_20250101.ts") is None


def test_unc_mapping(rec: Path) -> None:
    rf = files(("\\\\nas\\TV", rec))
    found = rf.resolve("\\\\NAS\\tv\\News at Ten\\news_20250101.ts")
    assert found == rec / "News at Ten" / "news_20250101.ts"
    assert rf.resolve("//nas/TV/News at Ten/news_20250101.ts") is not None
    assert rf.resolve("/nas/TV/News at Ten/news_20250101.ts") is None


def test_posix_prefix_is_case_sensitive(rec: Path) -> None:
    rf = files(("/recordings", rec))
    assert rf.resolve("/Recordings/News at Ten/news_20250101.ts") is None


def test_partial_component_prefix_does_not_match(rec: Path) -> None:
    # a naive startswith("/rec") would read /recordings/... as rec/"ordings/..."
    (rec / "ordings").mkdir()
    (rec / "ordings" / "x.ts").write_bytes(b"x")
    rf = files(("/rec", rec))
    assert rf.resolve("/rec/ordings/x.ts") == rec / "ordings" / "x.ts"
    assert rf.resolve("/recordings/x.ts") is None
    assert files(("D:\\Rec", rec)).resolve("D:\\Recordings\\x.ts") is None


@pytest.mark.parametrize(
    ("reported", "why"),
    [
        ("/recordings/../secret.ts", "contains '..'"),
        ("/recordings/News at Ten/../../secret.ts", "contains '..'"),
        ("/recordings/News at Ten/..", "contains '..'"),
        ("/recordings/nowhere/../../secret.ts", "contains '..'"),
        ("/recordings\\..\\secret.ts", "contains '..'"),
        ("/recordings/News at Ten/news_20250101.ts\x00.txt", "NUL byte"),
        ("/recordings/C:/secret.ts", "absolute component"),
        ("/recordings/c:\\secret.ts", "absolute component"),
    ],
)
def test_traversal_refused(
    rec: Path, warnings_log: pytest.LogCaptureFixture, reported: str, why: str
) -> None:
    """Refused from the text alone, before the filesystem is asked anything."""
    rf = files(("/recordings", rec))
    assert rf.resolve(reported) is None
    assert rf.resolve(reported) is None
    logged = refusals(warnings_log)
    assert len(logged) == 1, logged  # once per path, not once per request
    assert "refusing recording path" in logged[0] and why in logged[0]


def test_windows_traversal_refused(rec: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    rf = files(("D:\\Recordings", rec))
    assert rf.resolve("D:\\Recordings\\..\\secret.ts") is None
    assert rf.resolve("D:\\Recordings\\News at Ten\\..\\..\\secret.ts") is None
    assert len(refusals(warnings_log)) == 2


def test_symlink_out_of_the_folder_refused(rec: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    (rec / "News at Ten" / "leak.ts").symlink_to(rec.parent / "secret.ts")
    (rec / "elsewhere").symlink_to(rec.parent / "outside", target_is_directory=True)
    rf = files(("/recordings", rec))
    for _ in range(3):
        assert rf.resolve("/recordings/News at Ten/leak.ts") is None
        assert rf.resolve("/recordings/elsewhere/other.ts") is None
    logged = refusals(warnings_log)
    assert len(logged) == 2, logged
    assert all("leads outside" in m for m in logged)


def test_symlink_inside_the_folder_allowed(rec: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    real = rec / "News at Ten" / "news_20250101.ts"
    (rec / "latest.ts").symlink_to(real)
    (rec / "News").symlink_to(rec / "News at Ten", target_is_directory=True)
    rf = files(("/recordings", rec))
    # the real path comes back: the handler opens what was checked, not a swappable name
    assert rf.resolve("/recordings/latest.ts") == real
    assert rf.resolve("/recordings/News/news_20250101.ts") == real
    assert refusals(warnings_log) == []


def test_folder_reached_through_a_symlink(rec: Path) -> None:
    mount = rec.parent / "mnt-rec"
    mount.symlink_to(rec, target_is_directory=True)
    rf = files(("/recordings", mount))
    assert rf.resolve("/recordings/News at Ten/news_20250101.ts") == rec / "News at Ten" / "news_20250101.ts"


def test_symlink_loop_is_just_missing(rec: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    (rec / "a.ts").symlink_to(rec / "b.ts")
    (rec / "b.ts").symlink_to(rec / "a.ts")
    (rec / "dangling.ts").symlink_to(rec.parent / "gone.ts")
    rf = files(("/recordings", rec))
    assert rf.resolve("/recordings/a.ts") is None
    assert rf.resolve("/recordings/dangling.ts") is None
    assert refusals(warnings_log) == []


def test_missing_and_non_files_are_none(rec: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    rf = files(("/recordings", rec))
    assert rf.resolve("/recordings/News at Ten/missing.ts") is None
    assert rf.resolve("/recordings/News at Ten") is None  # a directory
    assert rf.resolve("/recordings") is None  # the folder itself
    assert rf.resolve("/recordings/") is None
    assert rf.resolve("/elsewhere/News at Ten/news_20250101.ts") is None  # no mapping
    assert rf.resolve("") is None
    os.mkfifo(rec / "pipe.ts")
    assert rf.resolve("/recordings/pipe.ts") is None  # only regular files
    assert refusals(warnings_log) == []


def test_unmounted_folder(tmp_path: Path) -> None:
    rf = files(("/recordings", tmp_path / "not-mounted"))
    assert rf.resolve("/recordings/x.ts") is None


def test_no_mappings() -> None:
    rf = RecordingFiles([])
    assert not rf.enabled
    assert rf.resolve("/recordings/x.ts") is None


def test_longest_prefix_wins(rec: Path, tmp_path: Path) -> None:
    sports = tmp_path / "sports"
    sports.mkdir()
    (sports / "match.ts").write_bytes(b"m")
    (rec / "Sports").mkdir()
    (rec / "Sports" / "match.ts").write_bytes(b"wrong")
    rf = files(("/recordings", rec), ("/recordings/Sports", sports))
    assert rf.resolve("/recordings/Sports/match.ts") == sports / "match.ts"
    assert rf.resolve("/recordings/News at Ten/news_20250101.ts") is not None
    # the most specific mapping decides alone: no fall-through to the shorter prefix
    (rec / "Sports" / "only-here.ts").write_bytes(b"x")
    assert rf.resolve("/recordings/Sports/only-here.ts") is None


def test_bad_mappings_rejected(rec: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        files(("/recordings", "relative/dir"))
    with pytest.raises(ValueError, match="prefix"):
        files(("/recordings/../etc", rec))
    with pytest.raises(ValueError, match="max_blocking"):
        RecordingFiles([], max_blocking=0)


async def test_resolve_async(rec: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    rf = files(("D:\\Recordings", rec))
    found = await rf.resolve_async("D:\\Recordings\\News at Ten\\news_20250101.ts")
    assert found == rec / "News at Ten" / "news_20250101.ts"
    assert await rf.resolve_async("D:\\Recordings\\..\\secret.ts") is None
    assert await rf.resolve_async("D:\\Recordings\\missing.ts") is None
    assert await rf.resolve_async("E:\\x.ts") is None
    assert len(refusals(warnings_log)) == 1


async def test_resolve_async_gives_up_on_a_stuck_filesystem(
    rec: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    """A hung mount costs at most max_blocking threads and a timeout; then NextPVR serves."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(executor)
    stuck = threading.Event()
    # the only worker is busy, as if a stat() on a dead NFS server were hanging
    blocker = loop.run_in_executor(None, stuck.wait)
    rf = RecordingFiles([PathMapping(nextpvr="/recordings", local=str(rec))], max_blocking=1, timeout=0.05)
    path = "/recordings/News at Ten/news_20250101.ts"
    try:
        assert await rf.resolve_async(path) is None  # times out; its lookup is still queued
        assert await rf.resolve_async(path) is None  # no slot left: answers at once
        assert await rf.resolve_async(path) is None
        logged = refusals(warnings_log)
        assert len(logged) == 2, logged
        assert "did not answer within" in logged[0] and "lookups pending" in logged[1]
    finally:
        stuck.set()
    await blocker
    # FIFO executor: once this runs, the abandoned lookup has finished and given its slot back
    await loop.run_in_executor(None, lambda: None)
    assert await rf.resolve_async(path) == rec / "News at Ten" / "news_20250101.ts"
