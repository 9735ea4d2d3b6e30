"""Daily roll-ups of the statistics (rollups.py, ``sms2fa_rollup``) and the
stats page's count axes.

The figures read from roll-ups must be the figures the raw rows give: every
test here compares a report with roll-ups against the same report computed
from the raw rows alone (the closed-day boundary moved before every row).
"""

from __future__ import annotations

import io
import random
import re
import uuid
from datetime import date, datetime, time, timedelta

import pytest

from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_sms2fa import rollups, stats
from django_sms2fa.admin import stats as stats_page
from django_sms2fa.models import (
    AuditAction,
    AuditRecord,
    Challenge,
    ChallengeStatus,
    DailyRollup,
    Message,
    Purpose,
    RollupKind,
)

from .test_stats import STATS_URLS, page, staff

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate
SPAN = 100  # days of traffic
PROVIDERS = ("acme", "backup", "default")
REGIONS = ("SE", "DE", "US", "", "ZZ")  # "" and "ZZ": an unknown region, both ways
PHONES = {
    "SE": ("+46701234", "+46702345", "+46731111"),
    "DE": ("+49151123", "+49170999"),
    "US": ("+12025550", "+13105551"),
    "": ("+88299111",),
    "ZZ": ("+99912345",),
}
ERRORS = ("", "E401", "quota", "30008")


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def build(days: int = SPAN, per_day: int = 14, seed: int = 18) -> None:
    """Varied traffic on each of the last ``days`` days, today included:
    several regions, providers, purposes and outcomes; failed SMS with error
    codes and failed delivery receipts; resends and fallbacks; challenges
    that sent nothing (test numbers); test SMS without a challenge; rows just
    after midnight and just before the next."""
    rng = random.Random(seed)
    challenges, messages = [], []
    statuses = list(ChallengeStatus.values)
    for back in range(days):
        day = TODAY() - timedelta(days=back)
        for _ in range(per_day + rng.randrange(6)):
            region = rng.choice(REGIONS)
            phone = rng.choice(PHONES[region]) + f"{rng.randrange(1000):03d}"
            hour = rng.choice((0, 1, 9, 12, 17, 23))
            created = at(day, hour, rng.randrange(60))
            status = rng.choice(statuses + [ChallengeStatus.VERIFIED] * 3)
            shape = rng.randrange(12)
            sends = []
            if shape == 0:
                pass  # a test number: no SMS at all
            elif shape == 1:
                # Refused by the provider: a failure, not a send.
                sends.append(("failed", rng.choice(ERRORS[1:]), False))
            elif shape == 2:
                # Taken, then a failed delivery receipt: a send and a failure.
                sends.append(("failed", rng.choice(ERRORS), True))
            elif shape == 3:
                # A fallback: the first provider refused, the next took it.
                sends += [("failed", "quota", False), ("sent", "", True)]
            elif shape == 4:
                sends.append(("queued", "", False))  # never left
            elif shape == 5:
                sends.append(("unknown", "", True))  # taken, status unknown
            elif shape == 6:
                # Taken by its status alone (no sent_at: a row from raw SQL).
                sends.append(("delivered", "", None))
            elif shape == 7:
                # An error code on a status that is not "failed": a failure.
                sends.append(("unknown", "30008", True))
            else:
                sends += [("delivered" if rng.random() < 0.5 else "sent", "", True)]
                if rng.random() < 0.3:  # a resend
                    sends.append(("sent", "", True))
            challenge = Challenge(
                id=uuid.uuid4(),
                phone=phone,
                region=region,
                purpose=rng.choice(Purpose.values),
                status=status,
                max_attempts=5,
                sends=len(sends),  # attempts, taken or not (as flows counts them)
                provider=rng.choice(PROVIDERS),
                created_at=created,
                expires_at=created + timedelta(minutes=5),
            )
            challenges.append(challenge)
            for n, (msg_status, error, taken) in enumerate(sends):
                # taken: sent_at set; None: taken all the same (by its status).
                sent_at = created + timedelta(seconds=n) if taken else None
                messages.append(
                    Message(
                        challenge=challenge,
                        phone=phone,
                        provider=rng.choice(PROVIDERS),
                        status=msg_status,
                        error_code=error,
                        created_at=created + timedelta(seconds=n),
                        sent_at=sent_at,
                    )
                )
        if back % 3 == 0:  # sms2fa_send_test: an SMS without a challenge
            messages.append(
                Message(
                    phone="+46709990000",
                    provider="default",
                    status="sent",
                    created_at=at(day, 10),
                    sent_at=at(day, 10),
                )
            )
    Challenge.objects.bulk_create(challenges)
    Message.objects.bulk_create(messages)


def nothing_closed(patch) -> None:
    """Move the settled and closed boundaries before every row."""
    for name in ("last_settled_day", "last_closed_day"):
        patch.setattr(rollups, name, lambda today=None: date(1900, 1, 1))


@pytest.fixture
def everything_live(monkeypatch):
    """Compute reports from the raw rows only: no day is closed."""

    def live(**kwargs):
        with monkeypatch.context() as patch:
            nothing_closed(patch)
            return stats.report(**kwargs)

    return live


def rollup(*args: str) -> str:
    out = io.StringIO()
    call_command("sms2fa_rollup", *args, stdout=out)
    return out.getvalue()


def rolled_days(marker: str = RollupKind.DAY) -> set[date]:
    return set(DailyRollup.objects.filter(kind=marker).values_list("day", flat=True))


def a_range(days: int, *, ending: int = 0) -> stats.DateRange:
    end = TODAY() - timedelta(days=ending)
    return stats.make_range(end - timedelta(days=days - 1), end)


# ------------------------------------------------------------ equal figures


@pytest.mark.parametrize("days", [7, 30, 90])
@pytest.mark.parametrize("limit", [stats.TOP_LIMIT, 3, None])
def test_rebuilt_rollups_give_the_live_figures(everything_live, days, limit):
    build()
    rng = a_range(days)
    live = everything_live(rng=rng, limit=limit)
    assert stats.totals(live).sms > 0 and live.failures and live.prefixes  # not vacuous
    assert "Rebuilt" in rollup("--rebuild")
    settled = {d for d in rng.days if d <= rollups.last_settled_day()}
    assert settled and settled <= rolled_days()
    result = stats.report(rng, limit=limit)
    assert result == live
    assert result.unrolled_days == ()


def test_every_figure_function_agrees_with_the_raw_rows(everything_live, monkeypatch):
    build()
    rollup()
    rng = a_range(60, ending=2)  # ends in the open days
    with monkeypatch.context() as patch:
        nothing_closed(patch)
        live = (
            stats.sends_per_day(rng),
            stats.verification_by_day(rng),
            stats.verification_by_country(rng, limit=2),
            stats.failures_by_error(rng, limit=None),
            stats.top_prefixes(rng, limit=4),
        )
    assert (
        stats.sends_per_day(rng),
        stats.verification_by_day(rng),
        stats.verification_by_country(rng, limit=2),
        stats.failures_by_error(rng, limit=None),
        stats.top_prefixes(rng, limit=4),
    ) == live


def test_a_range_of_closed_days_only_reads_the_rollups(everything_live):
    build()
    rollup()
    rng = a_range(40, ending=rollups.GRACE_DAYS + 1)
    live = everything_live(rng=rng)
    with CaptureQueriesContext(connection) as queries:
        result = stats.report(rng)
    assert result == live
    sqls = [q["sql"] for q in queries.captured_queries]
    assert len(sqls) == 4, sqls
    assert all(DailyRollup._meta.db_table in sql for sql in sqls)
    assert not any(Message._meta.db_table in sql or Challenge._meta.db_table in sql for sql in sqls)


def test_open_days_are_read_from_the_raw_rows_only(everything_live):
    build(days=rollups.SETTLE_DAYS + 1)
    rollup()
    rng = a_range(rollups.SETTLE_DAYS + 1)
    assert not rolled_days() & set(rng.days)  # nothing settled yet
    with CaptureQueriesContext(connection) as queries:
        result = stats.report(rng)
    assert len(queries) == 5  # as before roll-ups: no roll-up is looked for
    assert result == everything_live(rng=rng)


# ------------------------------------------------------------ closed is closed


def test_a_closed_day_is_not_recomputed_until_rebuilt(everything_live):
    build()
    rollup()
    day = rollups.last_closed_day() - timedelta(days=10)
    rng = stats.make_range(day, day)
    before = stats.report(rng)
    # A raw row of that closed day changes (by hand: the app would not).
    challenge = (
        Challenge.objects.filter(created_at__gte=at(day, 0), created_at__lt=at(day, 23, 59))
        .exclude(status=ChallengeStatus.VERIFIED)
        .filter(sends__gt=0, messages__sent_at__isnull=False)
        .first()
    )
    Challenge.objects.filter(pk=challenge.pk).update(status=ChallengeStatus.VERIFIED)
    Message.objects.create(
        phone="+46701234000",
        provider="late",
        status="sent",
        created_at=at(day, 8),
        sent_at=at(day, 8),
    )
    assert stats.report(rng) == before  # read from the roll-up
    assert "Rolled up no day." in rollup()  # the daily run leaves it alone
    assert stats.report(rng) == before
    rollup("--rebuild", "--from", day.isoformat(), "--to", day.isoformat())
    after = stats.report(rng)
    assert after != before
    assert after.rate_by_day[0].verified == before.rate_by_day[0].verified + 1
    assert after.sends.counts[day]["late"] == 1
    assert after == everything_live(rng=rng)


def test_the_daily_run_rolls_up_each_closed_day_once():
    build(days=20)
    first = rollup()
    assert re.search(r"Rolled up \d+ days", first)
    # The days with rows, and the days before them back to the horizon (empty).
    horizon = rollups.HORIZON_DAYS + rollups.SETTLE_DAYS
    assert rolled_days() == {
        TODAY() - timedelta(days=back) for back in range(rollups.SETTLE_DAYS + 1, horizon + 1)
    }
    assert rolled_days(RollupKind.RECEIPTS) == {
        TODAY() - timedelta(days=back) for back in range(rollups.GRACE_DAYS + 1, horizon + 1)
    }
    empty = TODAY() - timedelta(days=20)
    assert not DailyRollup.objects.filter(day__lte=empty).exclude(
        kind__in=[RollupKind.DAY, RollupKind.RECEIPTS]
    )
    computed = set(DailyRollup.objects.values_list("computed_at", flat=True))
    assert rollup().strip() == "Rolled up no day."
    assert set(DailyRollup.objects.values_list("computed_at", flat=True)) == computed


def test_rebuild_is_idempotent():
    def rows() -> list[tuple]:
        fields = [*rollups.DIMENSIONS, "count", "sms"]
        return sorted(DailyRollup.objects.values_list(*fields))

    build(days=30)
    rollup("--rebuild")
    before = rows()
    rollup("--rebuild")
    assert rows() == before


def test_rolling_up_is_set_based_whatever_the_rows():
    """A batch of days costs the same statements at 10 rows as at 1,000: the
    database counts (INSERT … SELECT … GROUP BY), no row comes to Python."""
    day = rollups.last_closed_day()

    def statements() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            rollups.roll_up_days(day - timedelta(days=6), day)
        return [q["sql"] for q in queries.captured_queries]

    build(days=12, per_day=1)
    few = statements()
    build(days=12, per_day=150, seed=7)
    many = statements()
    assert len(few) == len(many)
    counted = [sql for sql in many if sql.startswith("INSERT") and "GROUP BY" in sql]
    assert len(counted) == len(RollupKind) - 2  # one per kind (not the markers), per batch


# ------------------------------------------------------------------ purge


def test_purged_days_keep_their_figures(everything_live):
    build()
    rng = a_range(90)
    live = everything_live(rng=rng)
    rollup()
    call_command("sms2fa_purge", "--older-than", f"{rollups.GRACE_DAYS + 2}d", stdout=io.StringIO())
    # Every raw row of the closed days but the newest one or two is gone ...
    oldest = Challenge.objects.order_by("created_at").values_list("created_at", flat=True).first()
    assert timezone.localdate(oldest) >= rollups.last_closed_day() - timedelta(days=1)
    # ... and their figures stay.
    assert stats.report(rng) == live
    # A rebuild leaves the purged days alone: their roll-ups are all that is left.
    rollup("--rebuild")
    assert stats.report(rng) == live
    purged = rollups.purged_through()
    with pytest.raises(CommandError, match="purged"):
        rollup("--rebuild", "--from", purged.isoformat())


def test_a_closed_day_without_a_rollup_is_read_live_and_the_page_says_so(
    everything_live, client, django_user_model
):
    build(days=30)
    rollup()
    missing = rollups.last_closed_day() - timedelta(days=3)
    DailyRollup.objects.filter(day=missing).delete()  # as if the job had not run yet
    rng = a_range(30)
    result = stats.report(rng)
    assert result.unrolled_days == (missing,)
    assert result == stats.Report(**{**vars(everything_live(rng=rng)), "unrolled_days": (missing,)})


@STATS_URLS
def test_the_page_says_which_days_are_not_rolled_up(client, django_user_model):
    build(days=30)
    client.force_login(staff(django_user_model, "view_challenge"))
    settled = 30 - (rollups.SETTLE_DAYS + 1)
    html = page(client)
    assert f"{settled} days of this range are not rolled up yet" in html
    rollup()
    html = page(client)
    assert "not rolled up yet" not in html
    DailyRollup.objects.filter(day=rollups.last_closed_day()).delete()
    assert "1 day of this range is not rolled up yet" in page(client)


def test_other_prefix_digits_read_the_prefixes_live(everything_live, sms2fa_settings):
    build(days=30)
    rollup()
    sms2fa_settings(PUMPING={"PREFIX_DIGITS": 3})
    rng = a_range(30)
    result = stats.report(rng)
    closed = tuple(d for d in rng.days if d <= rollups.last_settled_day())
    assert result.prefix_unrolled_days == closed
    assert all(len(p.prefix) == 4 for p in result.prefixes)
    assert result == stats.Report(
        **{**vars(everything_live(rng=rng)), "prefix_unrolled_days": closed}
    )
    rollup("--rebuild")
    assert stats.report(rng) == everything_live(rng=rng)


# ------------------------------------------------------------------- today


def test_todays_figures_are_live():
    build(days=30)
    rollup()
    rng = a_range(30)
    before = stats.report(rng)
    now = timezone.now()
    Message.objects.create(
        phone="+46701234999", provider="default", status="sent", created_at=now, sent_at=now
    )
    after = stats.report(rng)
    assert after.sends.counts[TODAY()]["default"] == before.sends.counts[TODAY()]["default"] + 1
    assert stats.totals(after).sms == stats.totals(before).sms + 1


def test_a_day_settles_then_closes():
    today = date(2026, 3, 10)
    assert rollups.last_settled_day(today) == date(2026, 3, 8)  # SETTLE_DAYS = 1
    assert rollups.last_closed_day(today) == date(2026, 3, 6)  # GRACE_DAYS = 3
    with pytest.raises(rollups.RollupError, match="not settled yet"):
        rollups.rebuild(date(2026, 3, 9), today=today)


def test_a_late_failed_receipt_counts_until_the_day_closes(everything_live):
    """Between settled and closed, a day's sends and rates come from its
    roll-up and its failures from the raw rows; when it closes, the failures
    are rolled up, once."""
    build(days=20)
    rollup()
    day = rollups.last_settled_day()
    assert day in rolled_days() and day not in rolled_days(RollupKind.RECEIPTS)
    rng = stats.make_range(day, day)
    before = stats.report(rng)
    # A failed receipt for an SMS of that day comes in now.
    late = Message.objects.filter(
        created_at__gte=at(day, 0), created_at__lt=at(day, 23, 59), status="delivered"
    ).first()
    Message.objects.filter(pk=late.pk).update(status="failed", error_code="late-receipt")
    after = stats.report(rng)
    assert after.sends == before.sends  # still a send
    assert (late.provider, "late-receipt", 1) in [
        (f.provider, f.error_code, f.count) for f in after.failures
    ]
    assert after == everything_live(rng=rng)
    # The day closes (GRACE_DAYS - SETTLE_DAYS days later): its failures are rolled up once.
    later = TODAY() + timedelta(days=rollups.GRACE_DAYS - rollups.SETTLE_DAYS)
    result = rollups.roll_up(today=later)
    assert day in result.days and day in rolled_days(RollupKind.RECEIPTS)
    assert (
        DailyRollup.objects.get(kind=RollupKind.DELIVERY, day=day, error_code="late-receipt").count
        == 1
    )
    assert rollups.roll_up(today=later).days == []


# ----------------------------------------------------------------- command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rebuild", "--from", "2025-13-01"), "not a date"),
        (("--rebuild", "--to", "yesterday"), "not a date"),
        (("--rebuild", "--from", "0001-01-01"), "between the years"),
        (("--from", "2025-01-01"), "go with --rebuild"),
        (("--rebuild", "--from", "2025-02-01", "--to", "2025-01-01"), "before"),
        (("--rebuild", "--to", "2999-01-01"), "not settled yet"),
        (("--rebuild", "--from", "2999-01-01"), "not settled yet"),
    ],
)
def test_command_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        rollup(*args)


def test_command_refuses_days_a_purge_reached():
    AuditRecord.objects.create(
        created_at=timezone.now(),
        action=AuditAction.PURGED,
        cutoff=at(date(2025, 6, 1), 12),
    )
    with pytest.raises(CommandError, match="purged"):
        rollup("--rebuild", "--from", "2025-06-01", "--to", "2025-06-02")
    assert "Rebuilt 1 day (2025-06-02)" in rollup(
        "--rebuild", "--from", "2025-06-02", "--to", "2025-06-02"
    )


def test_command_on_an_empty_database():
    # The days the stats page can show are marked: empty, nothing to count.
    assert f"Rolled up {rollups.HORIZON_DAYS} days" in rollup()
    assert DailyRollup.objects.count() == 2 * rollups.HORIZON_DAYS - (
        rollups.GRACE_DAYS - rollups.SETTLE_DAYS
    )
    assert rollup().strip() == "Rolled up no day."
    assert rollup("--rebuild").strip() == "Rebuilt no day."


def test_the_horizon_is_the_longest_range():
    assert rollups.HORIZON_DAYS == stats.MAX_RANGE_DAYS


def test_a_young_site_has_no_day_without_a_rollup(everything_live):
    """Days before the first challenge had no row: the daily run marks them,
    so the page does not call them "not rolled up"."""
    build(days=10)
    rollup()
    rng = a_range(stats.MAX_RANGE_DAYS)
    result = stats.report(rng)
    assert result.unrolled_days == ()
    assert result == everything_live(rng=rng)


def test_a_day_a_purge_reached_first_is_never_rolled_up(everything_live):
    """The purge got to the oldest days before any roll-up: the day of its
    cutoff lost part of its rows, so it gets no roll-up (one would look
    complete), and the page says it has none."""
    build(days=30)
    call_command("sms2fa_purge", "--older-than", "20d", stdout=io.StringIO())
    purged = rollups.purged_through()
    assert purged is not None and purged > TODAY() - timedelta(days=30)
    rollup()
    rolled = rolled_days()
    assert purged not in rolled and purged + timedelta(days=1) in rolled
    assert not {d for d in rolled if d <= purged}
    rng = a_range(30)
    result = stats.report(rng)
    assert result.unrolled_days == tuple(d for d in rng.days if d <= purged)
    assert result == stats.Report(
        **{**vars(everything_live(rng=rng)), "unrolled_days": result.unrolled_days}
    )


# ------------------------------------------------------------ count axes


@pytest.mark.parametrize("peak", [1, 2, 3, 5, 7, 9, 11, 37, 101, 1234, 99_999])
def test_count_axes_have_whole_ticks(peak):
    top, ticks = stats_page._count_axis(peak)
    assert ticks[0] == 0 and ticks[-1] == top >= peak
    assert all(isinstance(t, int) for t in ticks)
    assert len(ticks) <= stats_page.MAX_COUNT_STEPS + 1
    assert len({b - a for a, b in zip(ticks, ticks[1:], strict=False)}) == 1  # even steps


@pytest.mark.parametrize("peak", [1, 3, 5, 15])
def test_the_sends_chart_never_shows_a_fraction(peak):
    day = TODAY()
    now = timezone.now()
    Message.objects.bulk_create(
        Message(
            phone="+46701234567", provider="default", status="sent", created_at=now, sent_at=now
        )
        for _ in range(peak)
    )
    figure = stats_page.figures(stats.report(stats.make_range(day, day)))[0]
    # The axis labels (the last day's date is right-aligned too).
    axis = [
        label.text
        for label in figure.chart.labels
        if label.anchor == "end" and label.text != day.isoformat()
    ]
    assert axis and all(re.fullmatch(r"\d+", text) for text in axis), axis
    if peak == 3:
        assert axis == ["0", "1", "2", "3"]


def test_two_runs_at_once_end_in_a_clear_error_and_no_double_count(monkeypatch):
    """A run that meets another's rows (the unique constraint) stops with a
    CommandError that says what happened, and the day is counted once."""
    build(days=5)
    rollup()
    rows = DailyRollup.objects.count()
    first = DailyRollup.objects.filter(kind=RollupKind.CHALLENGE).first()

    def racing(**kwargs):
        # What the second of two overlapping runs meets: rows the first
        # committed under the same dimensions (in a transaction of its own,
        # as a batch of roll_up is).
        with transaction.atomic():
            DailyRollup.objects.create(
                **{f: getattr(first, f) for f in rollups.DIMENSIONS},
                count=1,
                computed_at=first.computed_at,
            )

    monkeypatch.setattr(rollups, "roll_up", racing)
    with pytest.raises(CommandError, match="Another sms2fa_rollup wrote the same days"):
        rollup()
    assert DailyRollup.objects.count() == rows
