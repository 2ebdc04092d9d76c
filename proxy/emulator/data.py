"""The emulated server's fixed line-up and its deterministic, generated guide.

Everything here is pure: the same day and channel always give the same programmes, so tests
can schedule by event id and the guide agrees with itself across calls and restarts.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources

__all__ = [
    "CHANNELS",
    "GROUPS",
    "RADIO",
    "TV",
    "Channel",
    "Guide",
    "Programme",
    "channel_by_number",
    "channel_by_oid",
    "load_icons",
]

TV = 1
RADIO = 10
DAY = 86400
#: the guide covers this many whole days before today and after it
GUIDE_DAYS_BACK = 1
GUIDE_DAYS_AHEAD = 9


@dataclass(frozen=True, slots=True)
class Channel:
    oid: int
    name: str
    number: int
    minor: int
    type: int
    #: icon file name in emulator/icons, or None
    icon: str | None
    groups: tuple[str, ...]
    #: EPG source type as channel.list extras report it
    epg: str
    #: index into MediaLibrary.names (modulo its length)
    media: int
    theme: str

    @property
    def formatted_number(self) -> str:
        return f"{self.number}.{self.minor}" if self.minor else str(self.number)

    @property
    def index(self) -> int:
        return CHANNELS.index(self)


CHANNELS: tuple[Channel, ...] = (
    Channel(7181, "WXYZ-HD", 4, 1, TV, "wxyz.png", ("Favourites", "News"), "XMLTV", 0, "news"),
    Channel(7182, "WXYZ-SD", 4, 2, TV, "wxyz.png", ("News",), "XMLTV", 1, "classics"),
    Channel(7183, "KFIV Movies", 5, 0, TV, "kfiv.png", ("Favourites", "Movies"), "XMLTV", 2, "movies"),
    Channel(7184, "Seven Sports", 7, 0, TV, "seven.png", ("Sports",), "XMLTV", 3, "sports"),
    Channel(7185, "Ten Radio", 10, 0, RADIO, "ten.png", ("Radio",), "XMLTV", 1, "radio"),
    Channel(7186, "Community Access", 12, 0, TV, None, (), "None", 4, "community"),
)
ALL_CHANNELS_GROUP = "All Channels"
GROUPS: tuple[str, ...] = (ALL_CHANNELS_GROUP, "Favourites", "News", "Movies", "Sports", "Radio")


def load_icons() -> dict[str, bytes]:
    folder = resources.files("proxy.emulator") / "icons"
    return {c.icon: (folder / c.icon).read_bytes() for c in CHANNELS if c.icon}


def channel_by_oid(oid: int) -> Channel | None:
    return next((c for c in CHANNELS if c.oid == oid), None)


def channel_by_number(text: str) -> Channel | None:
    """``7`` or ``4.1``: the way /live?channel= names a channel."""
    major, _, minor = text.strip().partition(".")
    try:
        number, sub = int(major), int(minor or "0")
    except ValueError:
        return None
    return next((c for c in CHANNELS if c.number == number and c.minor == sub), None)


@dataclass(frozen=True, slots=True)
class Programme:
    event_id: int
    channel_oid: int
    name: str
    subtitle: str
    description: str
    start: int
    end: int
    genres: tuple[str, ...]
    season: int
    episode: int
    year: int
    original: str
    firstrun: bool
    significance: str
    rating: str


@dataclass(frozen=True, slots=True)
class _Show:
    title: str
    genres: tuple[str, ...]
    series: bool
    blurb: str


_SHOWS: dict[str, tuple[_Show, ...]] = {
    "news": (
        _Show("Morning News", ("News",), False, "The day's headlines, traffic and weather."),
        _Show("News at Noon", ("News",), False, "Midday bulletin."),
        _Show("News at Ten", ("News",), True, "Coverage of the day's events."),
        _Show("Weather Watch", ("News", "Weather"), False, "The week's forecast."),
        _Show("World Report", ("News", "Documentary"), True, "Stories from around the globe."),
    ),
    "classics": (
        _Show("Classic Sitcom", ("Comedy",), True, "A family gets into trouble, again."),
        _Show("Old Western", ("Western", "Movie"), False, "A stranger rides into town."),
        _Show("Quiz Hour", ("Game Show",), True, "Three contestants, one prize."),
        _Show("Detective Files", ("Drama", "Crime"), True, "A cold case heats up."),
    ),
    "movies": (
        _Show("The Long Voyage", ("Movie", "Adventure"), False, "A crew sails into the unknown."),
        _Show("Midnight Caper", ("Movie", "Comedy"), False, "A heist goes wrong in every way."),
        _Show("Starfall", ("Movie", "Science Fiction"), False, "A comet changes everything."),
        _Show("Behind the Scenes", ("Documentary",), True, "How the movies are made."),
    ),
    "sports": (
        _Show("Football Live", ("Sports", "Football"), False, "Live coverage of the match."),
        _Show("Sports Centre", ("Sports", "News"), True, "Results and highlights."),
        _Show("Tennis Open", ("Sports", "Tennis"), False, "Early rounds."),
        _Show("Motor Racing", ("Sports", "Motor Sport"), False, "Qualifying session."),
    ),
    "radio": (
        _Show("Morning Music", ("Music",), False, "Hits to start the day."),
        _Show("Talkback", ("Talk",), True, "Listeners call in."),
        _Show("Jazz Nights", ("Music", "Jazz"), False, "Late-night jazz."),
    ),
    "community": (
        _Show("Council Meeting", ("Public Affairs",), True, "The monthly council meeting."),
        _Show("Local Notices", ("Public Affairs",), False, "What is on around town."),
        _Show("Garden Club", ("Lifestyle",), True, "Seasonal tips."),
    ),
}
_LENGTHS: dict[str, tuple[int, ...]] = {
    "news": (30, 30, 60),
    "classics": (30, 60),
    "movies": (90, 120, 120),
    "sports": (60, 120, 180),
    "radio": (60, 120),
    "community": (30, 60),
}
_EPISODE_TITLES = (
    "Pilot",
    "Election Night",
    "The Return",
    "Crossroads",
    "Late Shift",
    "Finale",
    "Homecoming",
)
_SIGNIFICANCE = ("", "", "", "", "Live", "Premiere", "Finale")


def event_id(channel_index: int, start: int) -> int:
    """Unique per (channel, start minute); decodable without a lookup table."""
    return (start // 60) * 8 + channel_index


class Guide:
    """Programmes of every channel, generated one (channel, UTC day) at a time and cached."""

    def __init__(self, max_days_cached: int = 256) -> None:
        self._cache: OrderedDict[tuple[int, int], tuple[Programme, ...]] = OrderedDict()
        self._max = max_days_cached
        #: channel oid -> programmes set by a test (a boundary at a chosen moment), instead of generated ones
        self._pinned: dict[int, tuple[Programme, ...]] = {}

    def pin(self, channel: Channel, shows: list[tuple[str, int, int]]) -> tuple[Programme, ...]:
        """Give ``channel`` exactly these (title, start, end) programmes, for tests that need a
        programme boundary at a chosen moment."""
        index = CHANNELS.index(channel)
        made = tuple(Programme(event_id(index, start), channel.oid, title, "", "", start, end, ("News",), 0, 0, 0,
                               "", False, "", "") for title, start, end in sorted(shows, key=lambda s: s[1]))
        self._pinned[channel.oid] = made
        return made

    def day(self, channel: Channel, day: int) -> tuple[Programme, ...]:
        key = (channel.oid, day)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        made = _generate_day(channel, day)
        self._cache[key] = made
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return made

    def listings(self, channel: Channel, now: float, start: int | None, end: int | None) -> list[Programme]:
        """Programmes overlapping [start, end), within a day ago .. 9 days ahead of now."""
        pinned = self._pinned.get(channel.oid)
        if pinned is not None:
            return [p for p in pinned if (start is None or p.end > start) and (end is None or p.start < end)]
        today = int(now) // DAY
        first, last = today - GUIDE_DAYS_BACK, today + GUIDE_DAYS_AHEAD
        if start is not None:
            first = max(first, start // DAY)
        if end is not None:
            last = min(last, end // DAY)
        out: list[Programme] = []
        for day in range(first, last + 1):
            for prog in self.day(channel, day):
                if (start is None or prog.end > start) and (end is None or prog.start < end):
                    out.append(prog)
        return out

    def at(self, channel: Channel, when: float) -> Programme:
        for prog in self._pinned.get(channel.oid, ()):
            if prog.start <= when < prog.end:
                return prog
        for prog in self.day(channel, int(when) // DAY):
            if prog.start <= when < prog.end:
                return prog
        raise AssertionError("a generated day covers every second")  # pragma: no cover

    def by_event_id(self, eid: int, now: float) -> Programme | None:
        index, start = eid % 8, (eid // 8) * 60
        if index >= len(CHANNELS) or abs(start - now) > 40 * DAY:
            return None
        prog = self.at(CHANNELS[index], start)
        return prog if prog.event_id == eid else None


def _generate_day(channel: Channel, day: int) -> tuple[Programme, ...]:
    rng = random.Random(f"{channel.oid}:{day}")
    shows, lengths = _SHOWS[channel.theme], _LENGTHS[channel.theme]
    start, day_end = day * DAY, (day + 1) * DAY
    out: list[Programme] = []
    while start < day_end:
        show = rng.choice(shows)
        end = min(start + rng.choice(lengths) * 60, day_end)
        season = episode = 0
        subtitle = ""
        if show.series:
            season, episode = 1 + day // 28 % 12, 1 + day % 28
            subtitle = f"S{season:02d}E{episode:02d} - {rng.choice(_EPISODE_TITLES)}"
        firstrun = show.series and rng.random() < 0.5
        year = 1960 + rng.randrange(60) if "Movie" in show.genres else 0
        original = _iso_date(start) if firstrun else ""
        out.append(
            Programme(
                event_id=event_id(channel.index, start),
                channel_oid=channel.oid,
                name=show.title,
                subtitle=subtitle,
                description=show.blurb,
                start=start,
                end=end,
                genres=show.genres,
                season=season,
                episode=episode,
                year=year,
                original=original,
                firstrun=firstrun,
                significance=rng.choice(_SIGNIFICANCE),
                rating=rng.choice(("G", "PG", "M", "")),
            )
        )
        start = end
    return tuple(out)


def _iso_date(epoch: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))
