"""When a reminder may go out: quiet hours per channel, holidays for voice calls, caps, provider rates.

Pure: every function takes the time it decides about. Quiet hours are the window a channel
may be used in, in the configured zone (Asia/Shanghai); a reminder due at night waits for
the window to open. Voice calls also wait for a workday: statutory holidays and make-up
workdays come from the `chinesecalendar` package; for a year it does not cover, Monday to
Friday are taken as workdays and that is said once in the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Mapping
from zoneinfo import ZoneInfo

import chinese_calendar

log = logging.getLogger(__name__)

OPT_OUT_LINE = "拒收请回复R"  # appended to marketing SMS


class RulesError(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    """The local hours a channel may be used: [start, end)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> "Window":
        try:
            start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
        except ValueError:
            raise RulesError(f"{text!r} is not a window of hours (e.g. 09:00-21:00)") from None
        if not start < end:
            raise RulesError(f"{text!r}: the window must start before it ends, within one day")
        return cls(start, end)

    def contains(self, moment: time) -> bool:
        return self.start <= moment < self.end


class WorkdayCalendar:
    """Chinese workdays (holidays and make-up days); a year the package lacks falls back to weekdays."""

    def __init__(self) -> None:
        self._warned: set[int] = set()

    def is_workday(self, day: date) -> bool:
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year not in self._warned:
                self._warned.add(day.year)
                log.warning("chinesecalendar has no holidays for %d: voice calls that year go out Monday to "
                            "Friday (update the chinesecalendar package)", day.year)
            return day.weekday() < 5


@dataclass(frozen=True)
class Rules:
    zone: ZoneInfo
    windows: Mapping[str, Window]  # per channel kind; a kind without one may go any time
    caps_per_day: Mapping[str, int]  # per recipient and channel kind, across campaigns; 0: none
    workdays_only: frozenset[str] = frozenset({"voice"})
    calendar: WorkdayCalendar = field(default_factory=WorkdayCalendar, compare=False)

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def day_bounds(self, at: datetime) -> tuple[datetime, datetime]:
        """The local day `at` falls in, as aware datetimes [start, end)."""
        day = self.local_day(at)
        start = datetime.combine(day, time(0), self.zone)
        return start, datetime.combine(day + timedelta(days=1), time(0), self.zone)

    def _day_allowed(self, kind: str, day: date) -> bool:
        return kind not in self.workdays_only or self.calendar.is_workday(day)

    def next_allowed(self, kind: str, at: datetime) -> tuple[datetime, str | None]:
        """The first moment from `at` on that `kind` may be used, and why it is later (None: it is `at`)."""
        window = self.windows.get(kind)
        local = at.astimezone(self.zone)
        reason = None
        for _ in range(60):  # the longest holiday (Spring Festival) is well inside this
            day = local.date()
            if not self._day_allowed(kind, day):
                reason = reason or "holiday"
            elif window is None or window.contains(local.time()):
                return local.astimezone(at.tzinfo), reason
            elif local.time() < window.start:
                return datetime.combine(day, window.start, self.zone).astimezone(at.tzinfo), reason or "quiet_hours"
            else:
                reason = reason or "quiet_hours"
            start = window.start if window else time(0)
            local = datetime.combine(day + timedelta(days=1), start, self.zone)
        raise RulesError(f"no allowed time for {kind} within 60 days of {at.isoformat()}")

    def next_day_start(self, kind: str, at: datetime) -> datetime:
        """The first allowed moment of a later local day (a cap reached today)."""
        _, end = self.day_bounds(at)
        return self.next_allowed(kind, end.astimezone(at.tzinfo))[0]


def with_opt_out_line(text: str) -> str:
    return text if OPT_OUT_LINE in text else f"{text}{OPT_OUT_LINE}"


class TokenBucket:
    """A provider's send rate: `rate` a second, bursts up to `burst`; time passed in."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self.tokens = self.burst
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def parse_rates(entries: tuple[str, ...]) -> dict[str, float]:
    """`provider=rate` entries (sends a second) as a mapping."""
    rates = {}
    for entry in entries:
        name, _, value = entry.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise RulesError(f"{entry!r} is not provider=sends_per_second") from None
    return rates
