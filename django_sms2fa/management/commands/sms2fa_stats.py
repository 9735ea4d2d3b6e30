"""``manage.py sms2fa_stats [--days N | --from DAY --to DAY] [--format text|csv|json]``."""

from __future__ import annotations

import csv
import json
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_sms2fa import stats


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date; use YYYY-MM-DD.") from None


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


class Command(BaseCommand):
    help = (
        "Print SMS sends per day by provider, the verification rate (verified / sent) by "
        "day and by country, failures by error code and the top number prefixes, for a "
        "range of days (default: the last 30)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="start", help="First day, YYYY-MM-DD.")
        parser.add_argument("--to", dest="end", help="Last day, YYYY-MM-DD (default: today).")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"The last N days up to today (default {stats.DEFAULT_RANGE_DAYS}); "
            "not with --from/--to.",
        )
        parser.add_argument("--format", choices=["text", "csv", "json"], default="text")
        parser.add_argument(
            "--limit",
            type=int,
            default=stats.TOP_LIMIT,
            help=f"Rows of the country, error code and prefix figures (default {stats.TOP_LIMIT}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rng = self._range(options["start"], options["end"], options["days"])
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        result = stats.report(rng, limit=options["limit"])
        {"text": self._text, "csv": self._csv, "json": self._json}[options["format"]](result)

    def _range(self, start: str | None, end: str | None, days: int | None) -> stats.DateRange:
        try:
            if days is not None:
                if start or end:
                    raise CommandError("Give either --days or --from/--to, not both.")
                return stats.last_days(days)
            if start is None and end is None:
                return stats.last_days()
            last = _day(end) if end else stats.last_days(1).end
            first = (
                _day(start)
                if start
                else stats.last_days(stats.DEFAULT_RANGE_DAYS, today=last).start
            )
            return stats.make_range(first, last)
        except stats.InvalidRange as err:
            raise CommandError(f"{err} ({err.code})") from None

    def _text(self, result: stats.Report) -> None:
        total = stats.totals(result)
        self.stdout.write(
            f"{result.range.start} to {result.range.end}: {total.sms} SMS sent, "
            f"{total.verified} of {total.sent} challenges verified ({_rate(total.rate)}), "
            f"{total.failures} failures"
        )
        for table in stats.tables(result):
            self.stdout.write("")
            self.stdout.write(table.title)
            self.stdout.write(_aligned(table))

    def _csv(self, result: stats.Report) -> None:
        # One long table (figure, key, column, value) so every figure fits one CSV.
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow(["figure", "key", "column", "value"])
        for table in stats.tables(result):
            for row in table.rows:
                for header, value in zip(table.headers[1:], row[1:], strict=True):
                    writer.writerow([table.name, row[0], header, "" if value is None else value])

    def _json(self, result: stats.Report) -> None:
        payload = {
            "from": result.range.start.isoformat(),
            "to": result.range.end.isoformat(),
            **{
                table.name: [dict(zip(table.headers, row, strict=True)) for row in table.rows]
                for table in stats.tables(result)
            },
        }
        self.stdout.write(json.dumps(payload, indent=2))


def _aligned(table: stats.Table) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [table.headers] + [
        [_rate(v) if h == "rate" else str(v) for h, v in zip(table.headers, row, strict=True)]
        for row in table.rows
    ]
    if not table.rows:
        return "  (none)"
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in table.rows)
        for i in range(len(table.headers))
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(table.headers))]
    lines = []
    for line in cells:
        padded = [
            cell.rjust(width) if is_num else cell.ljust(width)
            for cell, width, is_num in zip(line, widths, numeric, strict=True)
        ]
        lines.append("  " + "  ".join(padded).rstrip())
    lines.insert(1, "  " + "  ".join("-" * width for width in widths))
    return "\n".join(lines)
