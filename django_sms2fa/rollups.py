"""Daily roll-ups of the statistics: each day counted once, kept for good.

The stats page (:mod:`django_sms2fa.stats`) reads a past day's figures from
:class:`~django_sms2fa.models.DailyRollup` rows instead of scanning that day's
challenges and messages, and computes only the newest days from the raw rows.
Nothing is written on the request → verify path: a periodic job
(:func:`roll_up`, ``manage.py sms2fa_rollup``) rolls up each day once its
figures can no longer change, and never again.

A day's figures stop changing in two steps:

* **Settled** (:data:`SETTLE_DAYS`, one whole day after the day ends): its
  challenges are over and its SMS are counted. A message is written when a
  provider takes it (or refuses it), so no message joins a past day; a
  challenge can be verified, resent or sent by a task worker only until it
  expires (``CODE_LIFETIME``, at most 10 minutes, renewed by each resend
  while the send limits allow). The sends, the verification rates and the
  prefixes of a settled day are rolled up then.
* **Closed** (:data:`GRACE_DAYS`, three whole days after the day ends): a
  failed delivery receipt can still turn a sent SMS into a failure as long as
  the SMS centre keeps trying a phone that is off, about 72 hours (the window
  ``sms2fa_refresh_status`` polls by default). The failures (and the final
  status of every message) of a closed day are rolled up then.

**Kept for good:** roll-ups are never purged. ``sms2fa_purge`` deletes raw
rows older than ``RETENTION_DAYS``; the figures of the days it deleted stay, as
long as those days were rolled up before (schedule the roll-up daily: with the
default 90 days of retention a day waits 86 days between the two). A day a
purge reached before its roll-up is never rolled up (:func:`purged_through`):
its figures would be incomplete, so it stays without one, read from what is
left of its raw rows, and the stats page says so.

**Rebuilding** (:func:`rebuild`, ``sms2fa_rollup --rebuild``) recomputes days
from the raw rows, each batch of days in one transaction (delete, then one
``INSERT … SELECT … GROUP BY`` per kind). It refuses days whose raw rows a
purge has deleted, since their roll-ups are all that is left of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.db.models.functions import Substr, TruncDate
from django.utils import timezone

from . import types
from .conf import app_settings
from .models import AuditAction, AuditRecord, Challenge, DailyRollup, Message, RollupKind

#: Whole days after a day ends during which its challenges may still change.
SETTLE_DAYS = 1
#: Whole days after a day ends during which delivery receipts may still come in.
GRACE_DAYS = 3
#: Days per transaction (and per ``INSERT … SELECT``) when rolling up.
BATCH_DAYS = 7
#: How far back :func:`roll_up` marks the days before the oldest raw row
#: (days that never had a row, so their roll-up is empty): the longest range
#: the stats page shows (``stats.MAX_RANGE_DAYS``). Without the marks, a young
#: site's page would call the days before its first challenge "not rolled up".
HORIZON_DAYS = 366

# A message a provider took, as stats.py counts sends (kept in step with it:
# tests/test_stats_rollups.py compares the two).
TAKEN = Q(sent_at__isnull=False) | Q(status__in=[types.SENT, types.DELIVERED])

#: What a roll-up row is counted by (the unique constraint ``sms2fa_rollup_dimensions``).
DIMENSIONS = DailyRollup.DIMENSIONS
#: The columns of an inserted row, in INSERT order.
COLUMNS = (*DIMENSIONS, "count", "sms", "computed_at")


class RollupError(ValueError):
    """Days that cannot be rolled up: not settled yet, or purged."""


@dataclass
class RollupResult:
    """The days rolled up (or rebuilt), the rows written and the time it took."""

    days: list[date] = field(default_factory=list)
    rows: int = 0
    elapsed: float = 0.0


#: Called after each batch with the running result (progress output).
Progress = Callable[[RollupResult], Any]


def last_settled_day(today: date | None = None) -> date:
    """The newest day whose challenges and sends can no longer change
    (see :data:`SETTLE_DAYS`)."""
    return (today or timezone.localdate()) - timedelta(days=SETTLE_DAYS + 1)


def last_closed_day(today: date | None = None) -> date:
    """The newest day whose figures, failures included, can no longer change
    (see :data:`GRACE_DAYS`)."""
    return (today or timezone.localdate()) - timedelta(days=GRACE_DAYS + 1)


#: The kinds rolled up when a day settles, and when it closes.
SETTLED_KINDS = (
    RollupKind.MESSAGE,
    RollupKind.MESSAGE_PREFIX,
    RollupKind.CHALLENGE,
    RollupKind.CHALLENGE_PREFIX,
)
CLOSED_KINDS = (RollupKind.DELIVERY,)


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def rolled_up_days(start: date, end: date, kind: str = RollupKind.DAY) -> set[date]:
    """The days from ``start`` to ``end`` with the marker ``kind``
    (:attr:`RollupKind.DAY`: settled and rolled up; :attr:`RollupKind.RECEIPTS`:
    closed and rolled up)."""
    return set(
        DailyRollup.objects.filter(kind=kind, day__gte=start, day__lte=end).values_list(
            "day", flat=True
        )
    )


def purged_through() -> date | None:
    """The last day whose raw rows a purge may have deleted (the day of the
    newest purge cutoff), or ``None`` if nothing was ever purged.

    Read from the audit records every purge leaves (never deleted).
    """
    cutoff = AuditRecord.objects.filter(action=AuditAction.PURGED).aggregate(c=Max("cutoff"))["c"]
    return None if cutoff is None else timezone.localdate(cutoff)


def first_raw_day() -> date | None:
    """The day of the oldest challenge or message, ``None`` when there is none."""
    firsts = [
        model.objects.aggregate(first=Min("created_at"))["first"] for model in (Challenge, Message)
    ]
    known = [moment for moment in firsts if moment is not None]
    return timezone.localdate(min(known)) if known else None


def roll_up(*, today: date | None = None, progress: Progress | None = None) -> RollupResult:
    """Roll up what is due and not done yet: the settled days' challenges and
    sends, the closed days' failures. Each only once.

    Days already rolled up are left as they are (see :func:`rebuild`). Safe to
    run at any time and as often as wanted: run it daily (cron, Celery beat,
    a task scheduler).

    The days before the oldest raw row, up to :data:`HORIZON_DAYS` back, get
    empty roll-ups: they had no row. Days a purge reached are never rolled up
    here: their raw rows may be gone, and an incomplete roll-up would look
    complete (the stats page says which days have none).
    """
    started = time.monotonic()
    settled, closed = last_settled_day(today), last_closed_day(today)
    oldest = first_raw_day()
    first = settled - timedelta(days=HORIZON_DAYS - 1)
    if oldest is not None:
        first = min(first, oldest)
    purged = purged_through()
    if purged is not None:
        first = max(first, purged + timedelta(days=1))
    if first > settled:
        return RollupResult(elapsed=time.monotonic() - started)
    settled_done = rolled_up_days(first, settled)
    closed_done = rolled_up_days(first, closed, RollupKind.RECEIPTS)
    due: dict[date, tuple[str, ...]] = {}
    for i in range((settled - first).days + 1):
        day = first + timedelta(days=i)
        kinds = () if day in settled_done else SETTLED_KINDS
        if day <= closed and day not in closed_done:
            kinds += CLOSED_KINDS
        if kinds:
            due[day] = kinds
    # Days before the oldest raw row (all days, without any) have no row.
    empty = {day for day in due if oldest is None or day < oldest}
    return _roll(due, started=started, progress=progress, empty=empty)


def rebuild(
    start: date | None = None,
    end: date | None = None,
    *,
    today: date | None = None,
    progress: Progress | None = None,
) -> RollupResult:
    """Recompute the roll-ups of the days ``start`` to ``end`` from the raw rows.

    Idempotent: each batch of days is deleted and inserted again in one
    transaction. By default, from the first day with complete raw rows (after
    the last purge) to the last settled day; the failures only of closed days.

    :raises RollupError: a day not settled yet, a day a purge reached (its
        raw rows are gone: rebuilding would replace its figures with what is
        left), or ``end`` before ``start``.
    """
    started = time.monotonic()
    last, closed = last_settled_day(today), last_closed_day(today)
    for day in (start, end):
        if day is not None and day > last:
            raise RollupError(
                f"{day} is not settled yet: the last settled day is {last} (a day's "
                f"challenges may still change for {SETTLE_DAYS} day after it ends)."
            )
    if start is not None and end is not None and end < start:
        raise RollupError(f"The end date {end} is before the start date {start}.")
    purged = purged_through()
    if start is not None and purged is not None and start <= purged:
        raise RollupError(
            f"The raw rows up to {purged} were purged: rebuilding {start} would replace "
            f"its roll-ups with what is left of them. Start after {purged}."
        )
    if start is None:
        first = first_raw_day()
        if first is None:
            return RollupResult(elapsed=time.monotonic() - started)
        start = first if purged is None else max(first, purged + timedelta(days=1))
    end = last if end is None else end
    if end < start:  # no raw rows in the days asked for
        return RollupResult(elapsed=time.monotonic() - started)
    due = {}
    for i in range((end - start).days + 1):
        day = start + timedelta(days=i)
        due[day] = SETTLED_KINDS + (CLOSED_KINDS if day <= closed else ())
    return _roll(due, started=started, progress=progress)


def _batches(due: dict[date, tuple[str, ...]]) -> Iterator[tuple[date, date, tuple[str, ...]]]:
    """Consecutive days due for the same kinds, at most :data:`BATCH_DAYS` per batch."""
    batch: list[date] = []
    for day in sorted(due):
        if batch and (
            day - batch[-1] != timedelta(days=1)
            or len(batch) == BATCH_DAYS
            or due[day] != due[batch[0]]
        ):
            yield batch[0], batch[-1], due[batch[0]]
            batch = []
        batch.append(day)
    if batch:
        yield batch[0], batch[-1], due[batch[0]]


def _roll(
    due: dict[date, tuple[str, ...]],
    *,
    started: float,
    progress: Progress | None,
    empty: Set[date] = frozenset(),
) -> RollupResult:
    """Roll up ``due``. The days in ``empty`` have no raw row: only their
    markers are written, in one statement."""
    result = RollupResult()
    if empty:
        result.rows += _mark({day: due[day] for day in sorted(empty)})
        result.days.extend(sorted(empty))
        due = {day: kinds for day, kinds in due.items() if day not in empty}
    for first, last, kinds in _batches(due):
        result.rows += roll_up_days(first, last, kinds)
        result.days.extend(first + timedelta(days=i) for i in range((last - first).days + 1))
        result.elapsed = time.monotonic() - started
        if progress is not None:
            progress(result)
    result.elapsed = time.monotonic() - started
    return result


def _markers(kinds: tuple[str, ...]) -> list[str]:
    """The markers that say ``kinds`` of a day are rolled up."""
    markers = []
    if any(kind in SETTLED_KINDS for kind in kinds):
        markers.append(RollupKind.DAY)
    if any(kind in CLOSED_KINDS for kind in kinds):
        markers.append(RollupKind.RECEIPTS)
    return markers


def _marker_rows(day: date, kinds: tuple[str, ...], *, now: datetime) -> list[DailyRollup]:
    digits = int(app_settings.PUMPING["PREFIX_DIGITS"])
    return [
        DailyRollup(
            day=day,
            kind=marker,
            # The prefix digits the day's prefix rows were (or would be) made with.
            prefix_digits=digits if marker == RollupKind.DAY else 0,
            computed_at=now,
        )
        for marker in _markers(kinds)
    ]


def _mark(due: dict[date, tuple[str, ...]]) -> int:
    """Mark days without any raw row as rolled up (their roll-up is empty)."""
    using = router.db_for_write(DailyRollup)
    now = timezone.now()
    with transaction.atomic(using=using):
        # Only days with no marker of these kinds are due, but a concurrent
        # run may have marked them meanwhile: skip those (the same empty rows).
        written = DailyRollup.objects.using(using).bulk_create(
            [row for day, kinds in due.items() for row in _marker_rows(day, kinds, now=now)],
            ignore_conflicts=True,
            batch_size=500,
        )
    return len(written)


def roll_up_days(
    first: date, last: date, kinds: tuple[str, ...] = SETTLED_KINDS + CLOSED_KINDS
) -> int:
    """Replace the roll-ups of ``kinds`` for the days ``first`` to ``last``
    with counts of their raw rows, in one transaction; return the rows written.

    Low level: it does not check that the days are settled or closed
    (:func:`roll_up` and :func:`rebuild` do).
    """
    using = router.db_for_write(DailyRollup)
    now = timezone.now()
    digits = int(app_settings.PUMPING["PREFIX_DIGITS"])
    start_at, end_at = _midnight(first), _midnight(last + timedelta(days=1))
    messages = Message.objects.using(using).filter(created_at__gte=start_at, created_at__lt=end_at)
    challenges = Challenge.objects.using(using).filter(
        created_at__gte=start_at, created_at__lt=end_at
    )
    prefix = Substr("phone", 1, 1 + digits)
    day = TruncDate("created_at")
    counts = {"n": Count("pk"), "taken": Count("pk", filter=TAKEN)}
    # Each kind is one INSERT … SELECT … GROUP BY: the database does the
    # counting, whatever the number of rows (no row ever comes to Python).
    selects: dict[str, tuple[QuerySet[Any], dict[str, Any]]] = {
        RollupKind.MESSAGE: (
            messages.annotate(day=day).values("day", "provider").annotate(**counts),
            {"provider": "provider"},
        ),
        RollupKind.DELIVERY: (
            messages.annotate(day=day)
            .values("day", "provider", "status", "error_code")
            .annotate(**counts),
            {"provider": "provider", "outcome": "status", "error_code": "error_code"},
        ),
        RollupKind.MESSAGE_PREFIX: (
            messages.annotate(day=day, number_prefix=prefix)
            .values("day", "number_prefix")
            .annotate(**counts),
            {"prefix": "number_prefix", "prefix_digits": digits},
        ),
        RollupKind.CHALLENGE: (
            challenges.annotate(day=day)
            .values("day", "region", "purpose", "provider", "status")
            .annotate(
                n=Count("pk"),
                # With at least one SMS a provider took (stats: "sent").
                taken=Count(
                    "pk",
                    filter=Exists(
                        Message.objects.filter(TAKEN, challenge_id=OuterRef("pk")).values("pk")
                    ),
                ),
            ),
            {"region": "region", "purpose": "purpose", "provider": "provider", "outcome": "status"},
        ),
        RollupKind.CHALLENGE_PREFIX: (
            challenges.annotate(day=day, number_prefix=prefix)
            .values("day", "number_prefix", "status")
            .annotate(n=Count("pk"), taken=Count("pk", filter=Q(sends__gt=0))),
            {"prefix": "number_prefix", "prefix_digits": digits, "outcome": "status"},
        ),
    }
    markers = _markers(kinds)
    rows = 0
    with transaction.atomic(using=using):
        DailyRollup.objects.using(using).filter(
            day__gte=first, day__lte=last, kind__in=[*kinds, *markers]
        ).delete()
        with connections[using].cursor() as cursor:
            for kind in kinds:
                query, dims = selects[kind]
                sql, params = _insert_select(kind, query.order_by(), dims, now=now, using=using)
                cursor.execute(sql, params)
                rows += max(cursor.rowcount, 0)
        written = DailyRollup.objects.using(using).bulk_create(
            row
            for i in range((last - first).days + 1)
            for row in _marker_rows(first + timedelta(days=i), kinds, now=now)
        )
    return rows + len(written)


def _insert_select(
    kind: str, query: QuerySet[Any], dims: dict[str, Any], *, now: datetime, using: str
) -> tuple[str, list[Any]]:
    """``INSERT INTO rollups (…) SELECT … FROM (query) AS s``.

    ``dims`` maps a roll-up column to a column of ``query`` (a string) or to
    a constant; columns of neither are ``""``. The query's columns are named
    after its fields and annotations, so the outer SELECT picks them by name
    whatever order Django writes them in.
    """
    connection = connections[using]
    qn = connection.ops.quote_name
    inner, inner_params = query.query.get_compiler(using=using).as_sql()
    values: list[str] = []
    params: list[Any] = []
    for column in COLUMNS:
        source: Any
        if column == "day":
            source = "day"
        elif column == "kind":
            source, constant = None, kind
        elif column == "count":
            source = "n"
        elif column == "sms":
            source = "taken"
        elif column == "computed_at":
            # As the ORM would store it (SQLite keeps text, in UTC).
            source, constant = None, connection.ops.adapt_datetimefield_value(now)
        elif column in dims:
            source = dims[column] if isinstance(dims[column], str) else None
            constant = dims[column]
        else:
            source, constant = None, 0 if column == "prefix_digits" else ""
        if source is None:
            values.append("%s")
            params.append(constant)
        else:
            values.append(f"s.{qn(source)}")
    table = qn(DailyRollup._meta.db_table)
    columns = ", ".join(qn(DailyRollup._meta.get_field(c).column) for c in COLUMNS)
    sql = f"INSERT INTO {table} ({columns}) SELECT {', '.join(values)} FROM ({inner}) s"
    return sql, [*params, *inner_params]
