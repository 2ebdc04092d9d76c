"""Scheduled, in-progress and completed recordings, and recurring rules.

A recording's status follows the wall clock (pending -> recording -> ready) unless it is pinned
to failed or conflict, so a test can schedule something a few seconds ahead and watch it grow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from proxy.emulator.config import EmulatorConfig
from proxy.emulator.data import CHANNELS, DAY, Channel, Guide, Programme, channel_by_oid

__all__ = ["STATUSES", "Recording", "RecordingStore", "Recurring"]

STATUSES = ("pending", "recording", "ready", "failed", "conflict")
MAX_RECORDINGS = 5000
MAX_RECURRINGS = 500
#: pending recordings a new series rule creates at most
RULE_HORIZON = 20


@dataclass(slots=True)
class Recording:
    id: int
    name: str
    channel: Channel
    #: scheduled start and length, without padding
    start: int
    duration: int
    pre_padding: int = 0
    post_padding: int = 0
    desc: str = ""
    subtitle: str = ""
    epg_event_id: int = 0
    epg_end: int = 0
    recurring_parent: int = 0
    #: "failed" or "conflict" pins the status; None lets the clock decide
    pinned: str | None = None
    reason: str = ""
    playback_position: int = 0
    played: bool = False
    genres: tuple[str, ...] = ()
    season: int = 0
    episode: int = 0
    year: int = 0
    original: str = ""
    significance: str = ""
    directory: str = "Default"

    @property
    def capture_start(self) -> int:
        return self.start - self.pre_padding * 60

    @property
    def capture_end(self) -> int:
        return self.start + self.duration + self.post_padding * 60

    def status(self, now: float) -> str:
        if self.pinned:
            return self.pinned
        if now < self.capture_start:
            return "pending"
        if now < self.capture_end:
            return "recording"
        return "ready"

    @property
    def file(self) -> str:
        t0, t1 = time.gmtime(self.start), time.gmtime(self.start + self.duration)
        stamp = time.strftime("%Y%m%d_%H%M", t0) + time.strftime("%H%M", t1)
        return f"/recordings/{self.name}/{self.name}_{stamp}.ts"

    def has_media(self, now: float) -> bool:
        return self.status(now) in ("recording", "ready")


@dataclass(slots=True)
class Recurring:
    id: int
    type: int
    name: str
    channel: Channel | None
    epg_title: str
    start: int
    end: int
    days: str = ""
    pre_padding: int = 1
    post_padding: int = 2
    keep: int = 0
    only_new: bool = False
    directory: str = "Default"
    enabled: bool = True
    advanced: str = ""


@dataclass(slots=True)
class RecordingStore:
    config: EmulatorConfig
    guide: Guide
    recordings: dict[int, Recording] = field(default_factory=dict)
    recurrings: dict[int, Recurring] = field(default_factory=dict)
    next_id: int = 866
    next_rule_id: int = 1
    #: bumped on every mutation; never goes backwards, never repeats
    stamp: int = 0
    #: recording.watched.set only (recording.lastupdated&ignore_resume=true leaves it out)
    resume_stamp: int = 0

    def seed(self, now: float) -> None:
        """The demo library: three finished, one recording now, one pending, one failed, one conflict."""
        cfg = self.config
        yesterday = (int(now) // DAY - 1) * DAY
        news, classics, movies, sports = CHANNELS[0], CHANNELS[1], CHANNELS[2], CHANNELS[3]
        self.add(_from(self.guide.at(news, yesterday + 22 * 3600), cfg.recording_seconds))
        self.add(_from(self.guide.at(movies, yesterday + 20 * 3600), cfg.recording_seconds))
        self.add(_from(self.guide.at(classics, yesterday + 18 * 3600), cfg.recording_seconds))
        live = _from(self.guide.at(sports, now), cfg.growing_recording_seconds)
        live.start = int(now - cfg.growing_recording_elapsed)
        self.add(live)
        self.add(_from(self.guide.at(news, now + DAY), None, pre=1, post=2))
        failed = _from(self.guide.at(classics, yesterday + 9 * 3600), None)
        failed.pinned, failed.reason = "failed", "Tuner failed to lock"
        self.add(failed)
        conflict = _from(self.guide.at(movies, now + DAY + 3600), None, pre=1, post=2)
        conflict.pinned = "conflict"
        self.add(conflict)
        prog = self.guide.at(news, now + 2 * DAY)
        self.add_rule(Recurring(0, 1, prog.name, news, prog.name, prog.start, prog.end, keep=5))
        self.add_rule(Recurring(0, 4, "Weekday sports", sports, "", 18 * 3600, 19 * 3600, days="WEEKDAYS"))
        self.stamp = int(now)

    def touch(self) -> None:
        self.stamp = max(int(time.time()), self.last_update(time.time(), False) + 1)

    def touch_resume(self) -> None:
        self.resume_stamp = max(int(time.time()), self.last_update(time.time(), False) + 1)

    def add(self, rec: Recording) -> Recording:
        if len(self.recordings) >= MAX_RECORDINGS:
            raise OverflowError("too many recordings")
        rec.id = self.next_id
        self.next_id += 1
        self.recordings[rec.id] = rec
        return rec

    def add_rule(self, rule: Recurring) -> Recurring:
        if len(self.recurrings) >= MAX_RECURRINGS:
            raise OverflowError("too many recurring rules")
        rule.id = self.next_rule_id
        self.next_rule_id += 1
        self.recurrings[rule.id] = rule
        return rule

    def last_update(self, now: float, ignore_resume: bool) -> int:
        """Mutations, plus every status change the clock has already caused."""
        moved = [
            t
            for r in self.recordings.values()
            if not r.pinned
            for t in (r.capture_start, r.capture_end)
            if t <= now
        ]
        latest = max([self.stamp, *moved])
        return latest if ignore_resume else max(latest, self.resume_stamp)

    def by_event(self, event_id: int) -> Recording | None:
        return next((r for r in self.recordings.values() if r.epg_event_id == event_id), None)

    def schedule_programme(self, prog: Programme, pre: int, post: int, rule: int = 0) -> Recording:
        existing = self.by_event(prog.event_id)
        if existing is not None:
            existing.pre_padding, existing.post_padding = pre, post
            return existing
        rec = _from(prog, None, pre=pre, post=post)
        rec.recurring_parent = rule
        return self.add(rec)

    def apply_rule(self, rule: Recurring, now: float) -> None:
        """A series rule schedules the coming episodes it can see in the guide."""
        if rule.channel is None or not rule.epg_title:
            return
        upcoming = [
            p for p in self.guide.listings(rule.channel, now, int(now), None) if p.name == rule.epg_title
        ]
        for prog in upcoming[:RULE_HORIZON]:
            self.schedule_programme(prog, rule.pre_padding, rule.post_padding, rule.id)

    def delete_rule(self, rule_id: int, now: float) -> bool:
        if self.recurrings.pop(rule_id, None) is None:
            return False
        for rec in list(self.recordings.values()):
            if rec.recurring_parent == rule_id and rec.status(now) == "pending":
                del self.recordings[rec.id]
        return True


def _from(prog: Programme, seconds: int | None, *, pre: int = 0, post: int = 0) -> Recording:
    channel = channel_by_oid(prog.channel_oid)
    assert channel is not None
    return Recording(
        id=0,
        name=prog.name,
        channel=channel,
        start=prog.start,
        duration=seconds if seconds is not None else prog.end - prog.start,
        pre_padding=pre,
        post_padding=post,
        desc=prog.description,
        subtitle=prog.subtitle,
        epg_event_id=prog.event_id,
        epg_end=prog.end,
        genres=prog.genres,
        season=prog.season,
        episode=prog.episode,
        year=prog.year,
        original=prog.original,
        significance=prog.significance,
    )
