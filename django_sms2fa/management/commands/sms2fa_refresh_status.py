"""``manage.py sms2fa_refresh_status``: poll providers for messages not yet final.

Run it from cron (e.g. every 5 minutes) where a provider has a status API but
no webhook, or as a safety net behind the webhooks.
"""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_sms2fa import delivery
from django_sms2fa.exceptions import Sms2faConfigurationError
from django_sms2fa.models import Message

_DURATION = re.compile(r"([0-9]{1,7})([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> timedelta:
    """``"90"``, ``"90s"``, ``"15m"``, ``"6h"``, ``"3d"`` → a timedelta."""
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise ValueError(value)
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class Command(BaseCommand):
    help = (
        "Ask providers with a status API (GoSMS, telefon-ip) about messages still "
        "queued, sent or unknown, record what changed and send message_status_changed. "
        "Prints a summary; one message's failure does not stop the run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider",
            dest="alias",
            default=None,
            help="Poll only this provider alias (default: every alias with a status API).",
        )
        parser.add_argument(
            "--max-age",
            "--older-than",
            dest="max_age",
            type=_duration_arg,
            default=timedelta(days=3),
            help="Skip messages sent longer ago than this (default 3d; SMS centres give "
            "up on a message after about 72 hours). Units s, m, h, d.",
        )
        parser.add_argument(
            "--min-age",
            dest="min_age",
            type=_duration_arg,
            default=timedelta(0),
            help="Skip messages sent more recently than this (default 0), e.g. to give "
            "webhooks a head start.",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=1000,
            help="At most this many messages per run, newest first (default 1000).",
        )

    def handle(
        self,
        *args: Any,
        alias: str | None,
        max_age: timedelta,
        min_age: timedelta,
        limit: int,
        **options: Any,
    ) -> None:
        if limit < 0:
            raise CommandError("--limit must be 0 or more.")
        if min_age > max_age:
            raise CommandError("--min-age must not be more than --max-age.")
        verbose = int(options.get("verbosity", 1)) >= 2
        try:
            summary = delivery.refresh_pending(
                alias=alias,
                max_age=max_age,
                min_age=min_age,
                limit=limit,
                progress=self._progress if verbose else None,
            )
        except Sms2faConfigurationError as err:
            # Names the alias and the class, never an option's value.
            raise CommandError(err.bare_message) from None
        self._report(summary)

    def _progress(self, message: Message, old: str, new: str | None, error: str) -> None:
        head = f"message {message.pk} via {message.provider} ({message.provider_message_id})"
        if error:
            self.stdout.write(f"{head}: look-up failed ({error})")
        elif message.status != old:
            self.stdout.write(f"{head}: {old} -> {message.status}")
        else:
            self.stdout.write(f"{head}: still {message.status}")

    def _report(self, summary: delivery.RefreshSummary) -> None:
        if not summary.aliases:
            self.stdout.write("No provider with a status look-up is configured; nothing to do.")
        else:
            changes = ", ".join(
                f"{status} {count}" for status, count in sorted(summary.new_statuses.items())
            )
            line = (
                f"Polled {', '.join(summary.aliases)}: {summary.checked} checked, "
                f"{summary.changed} changed"
                + (f" ({changes})" if changes else "")
                + f", {summary.unchanged} unchanged, {summary.errors} failed"
            )
            if summary.skipped:
                line += f", {summary.skipped} skipped"
            self.stdout.write(line + ".")
        for code, count in sorted(summary.error_codes.items()):
            self.stderr.write(f"  look-up errors {code}: {count}")
        for name, reason in sorted(summary.given_up.items()):
            self.stderr.write(f"  provider {name} given up for this run: {reason}")
        if summary.receiver_errors:
            self.stderr.write(
                f"  {summary.receiver_errors} message_status_changed receiver error(s); "
                "see the django_sms2fa log."
            )


def _duration_arg(value: str) -> timedelta:
    try:
        return duration(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration such as 90s, 15m, 6h or 3d"
        ) from None
