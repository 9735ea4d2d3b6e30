"""Figures about sending and verifying, over a range of days.

One function per figure; each is one ``GROUP BY`` query bounded by the range
(the ``created_at`` indexes of challenges and messages keep it to the rows of
those days), and each returns plain values, so the admin page, the
``sms2fa_stats`` command and a site's own dashboards can share them.

Definitions:

* **a send** is an SMS a provider took: a :class:`~django_sms2fa.models.Message`
  with ``sent_at`` set (or a ``sent``/``delivered`` status). An SMS no provider
  took is a *failure*, counted by its error code; a later failed delivery
  receipt keeps the send a send and also counts as a failure.
* **the verification rate** is ``verified ÷ sent`` over the challenges *created*
  in the range that had at least one send; ``verified`` counts those of them
  whose status is ``verified``. Challenges that never produced an SMS (test
  numbers, decoys for unknown numbers, undeliverable ones) are left out of both
  sides, so the rate is what an SMS is worth.
* **days** are calendar days in the current time zone (``TIME_ZONE``).
* **a prefix** is the first ``PUMPING["PREFIX_DIGITS"]`` digits of the E.164
  number with its ``+``, the same prefix the SMS-pumping breaker watches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Substr, TruncDate
from django.utils import timezone
from django.utils.translation import gettext

from . import types
from .conf import app_settings
from .models import Challenge, ChallengeStatus, Message

#: The longest range a report covers: a year, leap day included.
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
MIN_YEAR, MAX_YEAR = 1900, 9000
#: Rows of the "top" figures (countries, error codes, prefixes).
TOP_LIMIT = 15

# A message a provider took (see the module docstring).
TAKEN = Q(sent_at__isnull=False) | Q(status__in=[types.SENT, types.DELIVERED])
# A message that failed: refused, or a failed delivery receipt.
FAILED = Q(status=types.FAILED) | ~Q(error_code="")


class InvalidRange(ValueError):
    """The range is empty, reversed or longer than :data:`MAX_RANGE_DAYS`."""

    code = "invalid_range"


@dataclass(frozen=True)
class DateRange:
    """Calendar days ``start`` to ``end``, both included, in the current time zone."""

    start: date
    end: date

    @property
    def start_at(self) -> datetime:
        return _midnight(self.start)

    @property
    def end_at(self) -> datetime:
        """Midnight after the last day (the bound is exclusive)."""
        return _midnight(self.end + timedelta(days=1))

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def make_range(start: date, end: date) -> DateRange:
    """A checked :class:`DateRange`.

    :raises InvalidRange: ``end`` before ``start``, more than
        :data:`MAX_RANGE_DAYS` days, or a year outside 1900–9000 (far dates
        would overflow once converted to UTC).
    """
    if not (MIN_YEAR <= start.year <= MAX_YEAR and MIN_YEAR <= end.year <= MAX_YEAR):
        raise InvalidRange(f"Dates must fall between the years {MIN_YEAR} and {MAX_YEAR}.")
    if end < start:
        raise InvalidRange("The end date is before the start date.")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise InvalidRange(f"A range covers at most {MAX_RANGE_DAYS} days.")
    return DateRange(start, end)


def last_days(days: int = DEFAULT_RANGE_DAYS, *, today: date | None = None) -> DateRange:
    """The ``days`` days up to and including today."""
    if not 1 <= days <= MAX_RANGE_DAYS:
        raise InvalidRange(f"A range covers 1 to {MAX_RANGE_DAYS} days.")
    today = today or timezone.localdate()
    return DateRange(today - timedelta(days=days - 1), today)


@dataclass(frozen=True)
class SendsPerDay:
    """SMS taken by providers: ``counts[day][provider]``, every day of the range."""

    days: list[date]
    providers: list[str]
    counts: dict[date, dict[str, int]]

    def total(self, day: date) -> int:
        return sum(self.counts[day].values())

    @property
    def grand_total(self) -> int:
        return sum(self.total(day) for day in self.days)


@dataclass(frozen=True)
class Rate:
    """Verified ÷ sent for one day or one country; ``rate`` is ``None`` without sends."""

    key: str  # an ISO date or a region code ("ZZ" when unknown)
    sent: int
    verified: int

    @property
    def rate(self) -> float | None:
        return self.verified / self.sent if self.sent else None


@dataclass(frozen=True)
class Failure:
    provider: str
    error_code: str  # "" when the provider gave none
    count: int


@dataclass(frozen=True)
class PrefixVolume:
    prefix: str
    sms: int  # SMS taken by providers for numbers with this prefix
    verified: int  # challenges created in the range for this prefix, with an SMS, verified


@dataclass(frozen=True)
class Report:
    """Every figure for one range (what the admin page and the command show)."""

    range: DateRange
    sends: SendsPerDay
    rate_by_day: list[Rate]
    rate_by_country: list[Rate]
    failures: list[Failure]
    prefixes: list[PrefixVolume]
    prefix_digits: int = field(default=0)


def _messages(rng: DateRange) -> QuerySet[Message]:
    return Message.objects.filter(created_at__gte=rng.start_at, created_at__lt=rng.end_at)


def _sent_challenges(rng: DateRange) -> QuerySet[Challenge]:
    """Challenges created in the range with at least one SMS a provider took."""
    # An uncorrelated IN (…) lets PostgreSQL hash the ids once (a semi-join)
    # instead of probing messages once per challenge. A message is never older
    # than its challenge, so the same lower bound prunes the subquery.
    taken = (
        Message.objects.filter(TAKEN, challenge__isnull=False, created_at__gte=rng.start_at)
        .values("challenge_id")
        .order_by()
    )
    return Challenge.objects.filter(
        created_at__gte=rng.start_at, created_at__lt=rng.end_at, pk__in=taken
    )


def sends_per_day(rng: DateRange) -> SendsPerDay:
    """SMS taken by each provider on each day of the range (zeros included)."""
    rows = (
        _messages(rng)
        .filter(TAKEN)
        .annotate(day=TruncDate("created_at"))
        .values("day", "provider")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[date, dict[str, int]] = {day: {} for day in rng.days}
    providers: set[str] = set()
    for row in rows:
        counts.setdefault(row["day"], {})[row["provider"]] = row["n"]
        providers.add(row["provider"])
    names = sorted(providers)
    for day in counts:
        counts[day] = {name: counts[day].get(name, 0) for name in names}
    return SendsPerDay(days=rng.days, providers=names, counts=counts)


def _verification_grid(rng: DateRange) -> list[tuple[date, str, int, int]]:
    """``(day, region, sent, verified)`` for the challenges created in the range.

    One pass serves both the per-day and the per-country rates: at a million
    challenges the semi-join with the messages is most of the work.
    """
    rows = (
        _sent_challenges(rng)
        .annotate(day=TruncDate("created_at"))
        .values("day", "region")
        .annotate(sent=Count("pk"), verified=Count("pk", filter=Q(status=ChallengeStatus.VERIFIED)))
        .order_by()
    )
    return [(row["day"], row["region"] or "ZZ", row["sent"], row["verified"]) for row in rows]


def _by_day(rng: DateRange, grid: list[tuple[date, str, int, int]]) -> list[Rate]:
    sums: dict[date, list[int]] = {day: [0, 0] for day in rng.days}
    for day, _region, sent, verified in grid:
        total = sums.setdefault(day, [0, 0])
        total[0] += sent
        total[1] += verified
    return [Rate(day.isoformat(), *sums[day]) for day in rng.days]


def _by_country(grid: list[tuple[date, str, int, int]], limit: int | None) -> list[Rate]:
    sums: dict[str, list[int]] = {}
    for _day, region, sent, verified in grid:
        total = sums.setdefault(region, [0, 0])
        total[0] += sent
        total[1] += verified
    rates = sorted((Rate(region, *n) for region, n in sums.items()), key=lambda r: (-r.sent, r.key))
    return rates if limit is None else rates[:limit]


def verification_by_day(rng: DateRange) -> list[Rate]:
    """Verified ÷ sent for the challenges created on each day (every day listed)."""
    return _by_day(rng, _verification_grid(rng))


def verification_by_country(rng: DateRange, *, limit: int | None = None) -> list[Rate]:
    """Verified ÷ sent per region of the phone, most sends first."""
    return _by_country(_verification_grid(rng), limit)


def failures_by_error(rng: DateRange, *, limit: int | None = TOP_LIMIT) -> list[Failure]:
    """Failed SMS per provider and error code, most frequent first.

    Error codes are provider-specific, so the provider is part of the key.
    """
    rows = (
        _messages(rng)
        .filter(FAILED)
        .values("provider", "error_code")
        .annotate(n=Count("id"))
        .order_by("-n", "provider", "error_code")
    )
    if limit is not None:
        rows = rows[:limit]
    return [Failure(row["provider"], row["error_code"], row["n"]) for row in rows]


def prefix_digits() -> int:
    return int(app_settings.PUMPING["PREFIX_DIGITS"])


def top_prefixes(rng: DateRange, *, limit: int | None = TOP_LIMIT) -> list[PrefixVolume]:
    """Number prefixes by SMS volume; a prefix with many SMS and few
    verifications is what SMS pumping looks like.

    Two queries, neither a join: the SMS per prefix, then the verified
    challenges (that had an SMS) of those prefixes only.
    """
    # "+" and the digits, as flows.py keys the pumping breaker.
    prefix = Substr("phone", 1, 1 + prefix_digits())
    rows = (
        _messages(rng)
        .filter(TAKEN)
        .annotate(prefix=prefix)
        .values("prefix")
        .annotate(sms=Count("id"))
        .order_by("-sms", "prefix")
    )
    if limit is not None:
        rows = rows[:limit]
    volumes = [(row["prefix"], row["sms"]) for row in rows]
    if not volumes:
        return []
    verified = dict(
        Challenge.objects.filter(
            created_at__gte=rng.start_at,
            created_at__lt=rng.end_at,
            status=ChallengeStatus.VERIFIED,
            sends__gt=0,  # not test numbers (they never send)
        )
        .annotate(prefix=prefix)
        .filter(prefix__in=[p for p, _sms in volumes])
        .values("prefix")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("prefix", "n")
    )
    return [PrefixVolume(p, sms, verified.get(p, 0)) for p, sms in volumes]


def report(rng: DateRange, *, limit: int | None = TOP_LIMIT) -> Report:
    """Every figure for ``rng``: five queries."""
    grid = _verification_grid(rng)
    return Report(
        range=rng,
        sends=sends_per_day(rng),
        rate_by_day=_by_day(rng, grid),
        rate_by_country=_by_country(grid, limit),
        failures=failures_by_error(rng, limit=limit),
        prefixes=top_prefixes(rng, limit=limit),
        prefix_digits=prefix_digits(),
    )


@dataclass(frozen=True)
class Totals:
    sms: int  # SMS taken by providers
    sent: int  # challenges with at least one such SMS
    verified: int
    failures: int

    @property
    def rate(self) -> float | None:
        return self.verified / self.sent if self.sent else None


def totals(result: Report) -> Totals:
    """Sums over the whole range (from the per-day figures: no query)."""
    return Totals(
        sms=result.sends.grand_total,
        sent=sum(r.sent for r in result.rate_by_day),
        verified=sum(r.verified for r in result.rate_by_day),
        failures=sum(f.count for f in result.failures),
    )


@dataclass(frozen=True)
class Table:
    """One figure as rows of plain values, for text, CSV, JSON and HTML tables."""

    name: str
    title: str
    headers: list[str]
    rows: list[list[str | int | float | None]]


def tables(result: Report) -> list[Table]:
    """The figures of ``result`` as tables (rates as fractions, ``None`` without sends).

    Titles are in the active language; names and headers are fixed keys (CSV
    and JSON use them).
    """
    sends = result.sends
    return [
        Table(
            "sends_per_day",
            gettext("SMS sent per day by provider"),
            ["day", *sends.providers, "total"],
            [
                [day.isoformat(), *sends.counts[day].values(), sends.total(day)]
                for day in sends.days
            ],
        ),
        Table(
            "verification_by_day",
            gettext("Verification rate by day (verified ÷ sent)"),
            ["day", "sent", "verified", "rate"],
            [[r.key, r.sent, r.verified, r.rate] for r in result.rate_by_day],
        ),
        Table(
            "verification_by_country",
            gettext("Verification rate by country"),
            ["country", "sent", "verified", "rate"],
            [[r.key, r.sent, r.verified, r.rate] for r in result.rate_by_country],
        ),
        Table(
            "failures_by_error",
            gettext("Failures by error code"),
            ["provider", "error code", "failures"],
            [[f.provider, f.error_code or "(none)", f.count] for f in result.failures],
        ),
        Table(
            "top_prefixes",
            gettext("Top number prefixes (%(digits)s digits) by volume")
            % {"digits": result.prefix_digits},
            ["prefix", "SMS", "verified"],
            [[p.prefix, p.sms, p.verified] for p in result.prefixes],
        ),
    ]
