"""CSV export of audit rows: streamed, without secrets, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone

# A cell a spreadsheet would run as a formula (OWASP "CSV injection"); tab and
# carriage return can start one too after the program trims the cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 2000


def safe_cell(value: Any) -> str:
    """``value`` as CSV text that no spreadsheet evaluates (leading ``'``)."""
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file-like object whose ``write`` returns the line for streaming."""

    def write(self, value: str) -> str:
        return value


def stream_csv(
    rows: Iterable[Any],
    columns: list[tuple[str, Callable[[Any], Any]]],
    *,
    filename: str,
) -> StreamingHttpResponse:
    """Stream one line per row; ``columns`` are (header, value of a row) pairs."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([safe_cell(header) for header, _value in columns])
        for row in rows:
            yield writer.writerow([safe_cell(value(row)) for _header, value in columns])

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response
