"""Durations written the way people write them, and daily opening hours in local time.

Rules say "10 minutes" and merchants open "11:00-14:00"; an interval such as "22:00-05:00"
crosses midnight. Everything is judged in the configured local time zone, by event time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DURATION = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """'10 minutes', '2 h', '90s', '1 day' or a number of seconds -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _DURATION.match(value.lower())
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)[0]])
    raise ValueError(f"expected a duration like '10 minutes', '2 hours' or seconds, but got {value!r}")


@dataclass(frozen=True, slots=True)
class DailyInterval:
    """A daily opening interval in local time; `end <= start` means it ends the next day."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> DailyInterval:
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", str(text))
        if not m:
            raise ValueError(f"expected 'HH:MM-HH:MM', but got {text!r}")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"expected 'HH:MM-HH:MM' with valid times, but got {text!r}")
        return cls(time(h1, m1), time(0, 0) if h2 == 24 else time(h2, m2))


@dataclass(frozen=True, slots=True)
class DailyHours:
    """A set of daily intervals (e.g. business hours) in one time zone."""

    intervals: tuple[DailyInterval, ...]
    tz: ZoneInfo

    @classmethod
    def parse(cls, texts: list[str] | tuple[str, ...], tz: ZoneInfo) -> DailyHours:
        return cls(tuple(DailyInterval.parse(t) for t in texts), tz)

    def spans(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The opening spans (aware datetimes) that overlap [start, end), clipped to it, in order."""
        out: list[tuple[datetime, datetime]] = []
        day = start.astimezone(self.tz).date() - timedelta(days=1)
        last = end.astimezone(self.tz).date()
        while day <= last:
            for iv in self.intervals:
                s = datetime.combine(day, iv.start, self.tz)
                e_day = day if iv.end > iv.start else day + timedelta(days=1)
                e = datetime.combine(e_day, iv.end, self.tz)
                lo, hi = max(s, start), min(e, end)
                if lo < hi:
                    out.append((lo, hi))
            day += timedelta(days=1)
        out.sort()
        merged: list[tuple[datetime, datetime]] = []
        for s, e in out:
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
            else:
                merged.append((s, e))
        return merged

    def covers(self, start: datetime, end: datetime) -> bool:
        """True when all of [start, end) lies inside opening hours."""
        spans = self.spans(start, end)
        return len(spans) == 1 and spans[0] == (start, end)

    def contains(self, when: datetime) -> bool:
        """True when the instant `when` is inside opening hours."""
        return bool(self.spans(when, when + timedelta(microseconds=1)))


def local_day(when: datetime, tz: ZoneInfo) -> date:
    """The local calendar day of an instant."""
    return when.astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """Local midnight starting `day`, as an aware datetime."""
    return datetime.combine(day, time(0, 0), tz)
