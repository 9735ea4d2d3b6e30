"""Figures about sending and verifying, over a range of days.

One function per figure; each is a ``GROUP BY`` query or two bounded by the
range (the ``created_at`` indexes of challenges and messages keep it to the
rows of those days), and each returns plain values, so the admin page, the
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

Past days are read from their daily roll-ups (:mod:`django_sms2fa.rollups`)
where they exist: the sends, rates and prefixes of settled days
(:func:`rollups.last_settled_day`), the failures of closed days
(:func:`rollups.last_closed_day`). The other days of a range (today, the few
days whose figures may still change, days not rolled up yet) are read from
the raw rows. The figures are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Substr, TruncDate
from django.utils import timezone
from django.utils.translation import gettext

from . import rollups, types
from .conf import app_settings
from .models import Challenge, ChallengeStatus, DailyRollup, Message, RollupKind

#: The longest range a report covers: a year, leap day included.
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
MIN_YEAR, MAX_YEAR = 1900, 9000
#: Rows of the "top" figures (countries, error codes, prefixes).
TOP_LIMIT = 15

# A message a provider took (see the module docstring); the roll-ups count the same.
TAKEN = rollups.TAKEN
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
    #: Days of the range due for a roll-up that have none yet: read from the
    #: raw rows (complete unless a purge got to them first).
    unrolled_days: tuple[date, ...] = ()
    #: Days rolled up with another ``PREFIX_DIGITS``: their prefix figure is
    #: read from the raw rows (``sms2fa_rollup --rebuild`` makes them anew).
    prefix_unrolled_days: tuple[date, ...] = ()


# ---------------------------------------------------------------- sources
#
# Days that were rolled up (rollups.py: settled days for the sends, the rates
# and the prefixes; closed days for the failures) are read from DailyRollup;
# every other day of the range (today, the days still settling or taking
# receipts, days the roll-up has not reached yet) from the raw rows, through
# the same queries as before roll-ups existed, bounded to those days. Both
# halves are summed in Python, so each figure is what the raw rows would give.


@dataclass(frozen=True)
class _Sources:
    """Which days of a range come from roll-ups, and the message roll-ups."""

    rng: DateRange
    last_rolled: date | None  # roll-ups are read up to this day (None: not at all)
    rolled: frozenset[date] = frozenset()  # settled and rolled up
    closed: frozenset[date] = frozenset()  # closed and rolled up (failures)
    # Rolled-up days whose prefix rows have the current PREFIX_DIGITS.
    prefix_rolled: frozenset[date] = frozenset()
    # (day, provider, sms) of the message roll-ups.
    sends: tuple[tuple[date, str, int], ...] = ()
    # (provider, error_code, count) of the failures rolled up.
    failures: tuple[tuple[str, str, int], ...] = ()
    unrolled: tuple[date, ...] = ()  # due for a roll-up, without one: read live

    def live_days(self, rolled: frozenset[date]) -> list[date]:
        return [day for day in self.rng.days if day not in rolled]


def _sources(rng: DateRange) -> _Sources:
    """One query: the roll-up markers of the range, with the message roll-ups
    that count (sends, and failures) of the same days."""
    settled = min(rng.end, rollups.last_settled_day())
    if settled < rng.start:
        return _Sources(rng, None)
    closed = min(rng.end, rollups.last_closed_day())
    digits = prefix_digits()
    kind = Q(kind__in=[RollupKind.DAY, RollupKind.MESSAGE], day__lte=settled)
    kind |= Q(kind__in=[RollupKind.RECEIPTS, RollupKind.DELIVERY], day__lte=closed)
    rows = (
        DailyRollup.objects.filter(kind, day__gte=rng.start)
        .exclude(kind=RollupKind.MESSAGE, sms=0)
        # Only the failures of the deliveries.
        .exclude(Q(kind=RollupKind.DELIVERY), ~Q(outcome=types.FAILED), error_code="")
        .values_list(
            "kind", "day", "provider", "outcome", "error_code", "prefix_digits", "count", "sms"
        )
    )
    rolled: set[date] = set()
    done: set[date] = set()
    prefix_rolled: set[date] = set()
    sends, failures = [], []
    for row_kind, day, provider, _outcome, error_code, row_digits, n, taken in rows:
        if row_kind == RollupKind.DAY:
            rolled.add(day)
            if row_digits == digits:
                prefix_rolled.add(day)
        elif row_kind == RollupKind.RECEIPTS:
            done.add(day)
        elif row_kind == RollupKind.MESSAGE:
            sends.append((day, provider, taken))
        else:
            failures.append((provider, error_code, n))
    unrolled = tuple(
        day
        for day in rng.days
        if (day <= settled and day not in rolled) or (day <= closed and day not in done)
    )
    return _Sources(
        rng,
        settled,
        frozenset(rolled),
        frozenset(done),
        frozenset(prefix_rolled),
        tuple(sends),
        tuple(failures),
        unrolled,
    )


_DAY = timedelta(days=1)


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) runs."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and day - runs[-1][1] == timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _created_on(days: list[date]) -> Q:
    """``created_at`` on one of ``days``: one range per run of consecutive days
    (each bounded by the ``created_at`` index). ``days`` is not empty."""
    condition = Q()
    for first, last in _runs(days):
        condition |= Q(created_at__gte=_midnight(first), created_at__lt=_midnight(last + _DAY))
    return condition


def _messages(days: list[date]) -> QuerySet[Message]:
    return Message.objects.filter(_created_on(days))


def _sent_challenges(days: list[date]) -> QuerySet[Challenge]:
    """Challenges created on ``days`` with at least one SMS a provider took."""
    # An uncorrelated IN (…) lets PostgreSQL hash the ids once (a semi-join)
    # instead of probing messages once per challenge. A message is never older
    # than its challenge, so the same lower bound prunes the subquery.
    taken = (
        Message.objects.filter(TAKEN, challenge__isnull=False, created_at__gte=_midnight(days[0]))
        .values("challenge_id")
        .order_by()
    )
    return Challenge.objects.filter(_created_on(days), pk__in=taken)


def _rollups(src: _Sources, kind: str) -> QuerySet[DailyRollup]:
    assert src.last_rolled is not None
    return DailyRollup.objects.filter(
        kind=kind, day__gte=src.rng.start, day__lte=src.last_rolled
    ).order_by()


# ---------------------------------------------------------------- figures


def _sends(src: _Sources) -> SendsPerDay:
    rng = src.rng
    counts: dict[date, dict[str, int]] = {day: {} for day in rng.days}
    providers: set[str] = set()

    def add(day: date, provider: str, n: int) -> None:
        row = counts.setdefault(day, {})
        row[provider] = row.get(provider, 0) + n
        providers.add(provider)

    for day, provider, sms in src.sends:
        add(day, provider, sms)
    live = src.live_days(src.rolled)
    if live:
        rows = (
            _messages(live)
            .filter(TAKEN)
            .annotate(day=TruncDate("created_at"))
            .values("day", "provider")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows:
            add(row["day"], row["provider"], row["n"])
    names = sorted(providers)
    for day in counts:
        counts[day] = {name: counts[day].get(name, 0) for name in names}
    return SendsPerDay(days=rng.days, providers=names, counts=counts)


def sends_per_day(rng: DateRange) -> SendsPerDay:
    """SMS taken by each provider on each day of the range (zeros included)."""
    return _sends(_sources(rng))


Grid = list[tuple[date, str, int, int]]


def _verification_grid(src: _Sources) -> Grid:
    """``(day, region, sent, verified)`` for the challenges created in the range.

    One pass serves both the per-day and the per-country rates: at a million
    challenges the semi-join with the messages is most of the work.
    """
    grid: Grid = []
    if src.rolled:
        rows = (
            _rollups(src, RollupKind.CHALLENGE)
            .filter(sms__gt=0)
            .values("day", "region")
            .annotate(
                sent=Sum("sms"), verified=Sum("sms", filter=Q(outcome=ChallengeStatus.VERIFIED))
            )
        )
        grid += [(r["day"], r["region"] or "ZZ", r["sent"], r["verified"] or 0) for r in rows]
    live = src.live_days(src.rolled)
    if live:
        rows = (
            _sent_challenges(live)
            .annotate(day=TruncDate("created_at"))
            .values("day", "region")
            .annotate(
                sent=Count("pk"), verified=Count("pk", filter=Q(status=ChallengeStatus.VERIFIED))
            )
            .order_by()
        )
        grid += [(r["day"], r["region"] or "ZZ", r["sent"], r["verified"]) for r in rows]
    return grid


def _by_day(rng: DateRange, grid: Grid) -> list[Rate]:
    sums: dict[date, list[int]] = {day: [0, 0] for day in rng.days}
    for day, _region, sent, verified in grid:
        total = sums.setdefault(day, [0, 0])
        total[0] += sent
        total[1] += verified
    return [Rate(day.isoformat(), *sums[day]) for day in rng.days]


def _by_country(grid: Grid, limit: int | None) -> list[Rate]:
    sums: dict[str, list[int]] = {}
    for _day, region, sent, verified in grid:
        total = sums.setdefault(region, [0, 0])
        total[0] += sent
        total[1] += verified
    rates = sorted((Rate(region, *n) for region, n in sums.items()), key=lambda r: (-r.sent, r.key))
    return rates if limit is None else rates[:limit]


def verification_by_day(rng: DateRange) -> list[Rate]:
    """Verified ÷ sent for the challenges created on each day (every day listed)."""
    return _by_day(rng, _verification_grid(_sources(rng)))


def verification_by_country(rng: DateRange, *, limit: int | None = None) -> list[Rate]:
    """Verified ÷ sent per region of the phone, most sends first."""
    return _by_country(_verification_grid(_sources(rng)), limit)


def _failures(src: _Sources, limit: int | None) -> list[Failure]:
    live = src.live_days(src.closed)
    if not src.closed:
        # All from the raw rows: the database sorts and cuts.
        rows = (
            _messages(live)
            .filter(FAILED)
            .values("provider", "error_code")
            .annotate(n=Count("id"))
            .order_by("-n", "provider", "error_code")
        )
        if limit is not None:
            rows = rows[:limit]
        return [Failure(row["provider"], row["error_code"], row["n"]) for row in rows]
    sums: dict[tuple[str, str], int] = {}
    for provider, error_code, count in src.failures:
        sums[provider, error_code] = sums.get((provider, error_code), 0) + count
    if live:
        rows = (
            _messages(live).filter(FAILED).values("provider", "error_code").annotate(n=Count("id"))
        )
        for row in rows.order_by():
            key = (row["provider"], row["error_code"])
            sums[key] = sums.get(key, 0) + row["n"]
    ranked = sorted(sums.items(), key=lambda item: (-item[1], item[0]))
    if limit is not None:
        ranked = ranked[:limit]
    return [Failure(provider, code, n) for (provider, code), n in ranked]


def failures_by_error(rng: DateRange, *, limit: int | None = TOP_LIMIT) -> list[Failure]:
    """Failed SMS per provider and error code, most frequent first.

    Error codes are provider-specific, so the provider is part of the key.
    """
    return _failures(_sources(rng), limit)


def prefix_digits() -> int:
    return int(app_settings.PUMPING["PREFIX_DIGITS"])


def _prefixes(src: _Sources, limit: int | None) -> list[PrefixVolume]:
    # "+" and the digits, as flows.py keys the pumping breaker.
    digits = prefix_digits()
    prefix = Substr("phone", 1, 1 + digits)
    live = src.live_days(src.prefix_rolled)
    volumes: dict[str, int] = {}
    if src.prefix_rolled:
        rows = (
            _rollups(src, RollupKind.MESSAGE_PREFIX)
            .filter(prefix_digits=digits, sms__gt=0)
            .values("prefix")
            .annotate(n=Sum("sms"))
            .values_list("prefix", "n")
        )
        volumes.update(rows)
    if live:
        rows = (
            _messages(live)
            .filter(TAKEN)
            .annotate(prefix=prefix)
            .values("prefix")
            .annotate(sms=Count("id"))
            .order_by("-sms", "prefix")
        )
        if limit is not None and not src.prefix_rolled:
            # All from the raw rows: the database sorts and cuts.
            rows = rows[:limit]
        for row in rows:
            volumes[row["prefix"]] = volumes.get(row["prefix"], 0) + row["sms"]
    ranked = sorted(volumes.items(), key=lambda item: (-item[1], item[0]))
    if limit is not None:
        ranked = ranked[:limit]
    if not ranked:
        return []
    top = [p for p, _sms in ranked]
    verified: dict[str, int] = {}
    if src.prefix_rolled:
        verified.update(
            _rollups(src, RollupKind.CHALLENGE_PREFIX)
            .filter(prefix_digits=digits, outcome=ChallengeStatus.VERIFIED, prefix__in=top)
            .values("prefix")
            .annotate(n=Sum("sms"))
            .values_list("prefix", "n")
        )
    if live:
        rows = (
            Challenge.objects.filter(
                _created_on(live),
                status=ChallengeStatus.VERIFIED,
                sends__gt=0,  # not test numbers (they never send)
            )
            .annotate(prefix=prefix)
            .filter(prefix__in=top)
            .values("prefix")
            .annotate(n=Count("pk"))
            .order_by()
            .values_list("prefix", "n")
        )
        for p, n in rows:
            verified[p] = verified.get(p, 0) + n
    return [PrefixVolume(p, sms, verified.get(p) or 0) for p, sms in ranked]


def top_prefixes(rng: DateRange, *, limit: int | None = TOP_LIMIT) -> list[PrefixVolume]:
    """Number prefixes by SMS volume; a prefix with many SMS and few
    verifications is what SMS pumping looks like.

    Neither query is a join: the SMS per prefix, then the verified
    challenges (that had an SMS) of those prefixes only.
    """
    return _prefixes(_sources(rng), limit)


def report(rng: DateRange, *, limit: int | None = TOP_LIMIT) -> Report:
    """Every figure for ``rng``.

    Five queries over the raw rows when no day of the range is rolled up
    (six if some could be: one looks for roll-ups); four over the roll-ups
    when every day is; both, each over its own days, in between (nine for
    the last 30 days: the raw rows of the newest days only).
    """
    src = _sources(rng)
    grid = _verification_grid(src)
    return Report(
        range=rng,
        sends=_sends(src),
        rate_by_day=_by_day(rng, grid),
        rate_by_country=_by_country(grid, limit),
        failures=_failures(src, limit),
        prefixes=_prefixes(src, limit),
        prefix_digits=prefix_digits(),
        unrolled_days=src.unrolled,
        prefix_unrolled_days=tuple(sorted(src.rolled - src.prefix_rolled)),
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
