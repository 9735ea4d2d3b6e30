"""``manage.py sms2fa_rollup [--rebuild [--from DAY] [--to DAY]]``."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from django_sms2fa import rollups, stats

# Progress lines at most this often (seconds).
_PROGRESS_EVERY = 2.0


def _day(value: str, option: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} {value[:20]!r} is not a date; use YYYY-MM-DD.") from None
    if not stats.MIN_YEAR <= day.year <= stats.MAX_YEAR:
        raise CommandError(
            f"{option} must fall between the years {stats.MIN_YEAR} and {stats.MAX_YEAR}."
        )
    return day


def _summary(result: rollups.RollupResult, verb: str) -> str:
    if not result.days:
        return f"{verb} no day."
    days = len(result.days)
    span = f"{result.days[0]} to {result.days[-1]}" if days > 1 else str(result.days[0])
    return (
        f"{verb} {days} day{'s' if days != 1 else ''} ({span}): {result.rows} rows "
        f"in {result.elapsed:.1f} s."
    )


class Command(BaseCommand):
    help = (
        "Roll up the statistics of past days that have no roll-up yet: the sends, "
        f"verification rates and prefixes of days that ended more than {rollups.SETTLE_DAYS} "
        f"day ago, the failures of days that ended more than {rollups.GRACE_DAYS} days ago. "
        "The stats page reads them instead of the raw rows. Run it daily (cron), before "
        "sms2fa_purge; safe to run at any time. Roll-ups are never purged, so the figures "
        "of purged days stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Recompute the roll-ups from the raw rows (default: every settled day "
            "since the last purge), replacing those already made.",
        )
        parser.add_argument(
            "--from",
            dest="start",
            help="With --rebuild: the first day, YYYY-MM-DD (not a day a purge reached).",
        )
        parser.add_argument(
            "--to",
            dest="end",
            help="With --rebuild: the last day, YYYY-MM-DD (at most the last settled day: "
            f"{rollups.SETTLE_DAYS + 1} days before today).",
        )

    def handle(
        self, *args: Any, rebuild: bool, start: str | None, end: str | None, **options: Any
    ) -> None:
        if (start or end) and not rebuild:
            raise CommandError("--from and --to go with --rebuild.")
        first = _day(start, "--from") if start else None
        last = _day(end, "--to") if end else None
        if first and last and last < first:
            raise CommandError(f"--to {last} is before --from {first}.")
        verbose = options["verbosity"] >= 1
        printed = [time.monotonic()]

        def progress(result: rollups.RollupResult) -> None:
            if verbose and time.monotonic() - printed[0] >= _PROGRESS_EVERY:
                printed[0] = time.monotonic()
                self.stdout.write(f"  {len(result.days)} days, up to {result.days[-1]} ...")

        try:
            if rebuild:
                result = rollups.rebuild(first, last, progress=progress)
            else:
                result = rollups.roll_up(progress=progress)
        except rollups.RollupError as err:
            raise CommandError(str(err)) from None
        except IntegrityError:
            # Two runs at once (an overlapping cron, a manual run beside the
            # scheduled one): the first to commit a batch of days keeps it,
            # the other's batch is rolled back whole, so no day is counted twice.
            raise CommandError(
                "Another sms2fa_rollup wrote the same days at the same time. This run's "
                "unfinished batch was rolled back and the other run's roll-ups stand; "
                "run it again to roll up what is left."
            ) from None
        self.stdout.write(_summary(result, "Rebuilt" if rebuild else "Rolled up"))
