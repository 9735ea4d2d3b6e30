"""``manage.py sms2fa_purge [--older-than 90d] [--batch-size N] [--dry-run]``."""

from __future__ import annotations

import getpass
import re
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_sms2fa import retention
from django_sms2fa.conf import app_settings

_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(\d{1,7})([hdw])")
_MAX_AGE = timedelta(days=36500)
# Progress lines at most this often (seconds), so a big purge prints a few
# dozen lines rather than one per batch.
_PROGRESS_EVERY = 2.0


def parse_age(value: str) -> timedelta:
    """``"90d"``, ``"12h"``, ``"2w"`` → a positive :class:`timedelta`."""
    match = _DURATION.fullmatch(value.strip().lower())
    age = timedelta(**{_UNITS[match[2]]: int(match[1])}) if match else None
    # Past a century the cutoff would leave the calendar (OverflowError).
    if age is None or not timedelta(0) < age <= _MAX_AGE:
        raise CommandError(
            f"--older-than takes a positive whole number and a unit h, d or w "
            f"(such as 90d, 12h, 2w; at most {_MAX_AGE.days}d), not {value[:20]!r}."
        )
    return age


def _summary(result: retention.PurgeResult) -> str:
    counts = result.counts
    verb = "would delete" if result.dry_run else "deleted"
    text = (
        f"{verb} {counts['challenges']} challenges, {counts['messages']} messages, "
        f"{counts['refusals']} refusals, {counts['device_events']} device events"
    )
    if result.dry_run:
        return text
    return f"{text} in {result.elapsed:.1f} s ({result.rows_per_second:.0f} rows/s)"


def _who() -> str:
    """The command and the system account that ran it, for the purge's audit record."""
    try:
        account = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        account = "unknown"
    return f"manage.py sms2fa_purge ({account})"


class Command(BaseCommand):
    help = (
        "Delete challenges (with their messages), messages without a challenge and refusals "
        "older than the retention period, in batches. Safe to interrupt and run again. "
        "Device events (the record of every phone ever bound) are kept unless "
        "--device-events is given. Each run leaves an audit record (who, the cutoff, "
        "the rows deleted); audit records are never purged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            dest="older_than",
            default=None,
            help="Age of the rows to delete: 12h, 90d, 2w. Default: SMS2FA['RETENTION_DAYS'] days.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=retention.DEFAULT_BATCH_SIZE,
            help=f"Challenges (or other rows) per transaction (default "
            f"{retention.DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; delete nothing."
        )
        parser.add_argument(
            "--device-events",
            dest="device_events",
            action="store_true",
            help="Also delete old device events (kept by default: NIST SP 800-63B-4 §4.1 "
            "asks for a record of every phone ever bound).",
        )

    def handle(self, *args: Any, older_than: str | None, batch_size: int, **options: Any) -> None:
        if older_than is None:
            age = timedelta(days=app_settings.RETENTION_DAYS)
        else:
            age = parse_age(older_than)
        if not 1 <= batch_size <= retention.MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be from 1 to {retention.MAX_BATCH_SIZE}.")
        cutoff = retention.cutoff_for(age)
        verbose = options["verbosity"] >= 1
        if options["dry_run"]:
            self.stdout.write(f"Rows created before {cutoff:%Y-%m-%d %H:%M:%S %Z}:")
            self.stdout.write(
                _summary(retention.count_purgeable(cutoff, device_events=options["device_events"]))
            )
            return
        if verbose:
            self.stdout.write(f"Deleting rows created before {cutoff:%Y-%m-%d %H:%M:%S %Z} ...")
        last: list[retention.PurgeResult] = []
        printed = [time.monotonic()]

        def progress(result: retention.PurgeResult) -> None:
            last[:] = [result]
            if verbose and time.monotonic() - printed[0] >= _PROGRESS_EVERY:
                printed[0] = time.monotonic()
                self.stdout.write(f"  {result.batches} batches: {_summary(result)}")

        try:
            result = retention.purge(
                cutoff,
                batch_size=batch_size,
                progress=progress,
                device_events=options["device_events"],
                actor_repr=_who(),
            )
        except KeyboardInterrupt:
            # Every finished batch is committed; the one in flight rolled back.
            done = _summary(last[0]) if last else "deleted nothing"
            raise CommandError(f"Interrupted: {done}. Run the command again to continue.") from None
        self.stdout.write(_summary(result))
