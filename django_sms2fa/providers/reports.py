"""Helpers for providers' delivery-report parsers (webhook bodies).

A webhook body is untrusted input even after its secret was checked (a
provider may change its format; a leaked secret lets anyone post). These
helpers decode it defensively and raise
:class:`~django_sms2fa.providers.base.InvalidDeliveryReport` with a stable code
for anything that is not a report, never echoing the body.

This module is not in ``delivery/`` with the rest of delivery tracking on
purpose: providers must not import anything that imports models, and
``django_sms2fa.delivery`` does (it records reports on ``Message`` rows).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from .base import InvalidDeliveryReport

__all__ = [
    "MAX_REPORTS",
    "as_int",
    "clean_message_id",
    "decode_body",
    "first_message_id",
    "parse_time",
    "records",
]

#: Reports read from one body at most. A provider sends one (iP1) or a few; a
#: body naming thousands of messages would make us look up thousands of
#: statuses (GoSMS) for one request.
MAX_REPORTS = 100
# Provider message ids seen so far: GoSMS ObjectIDs (24 hex), iP1 ObjectIDs or
# numbers, telefon-ip numbers. Anything else printable and short is tolerated;
# the id is only ever compared with stored ids.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_FORM = "application/x-www-form-urlencoded"


def decode_body(body: bytes, content_type: str) -> Any:
    """A JSON value, or a ``dict`` for a form-encoded body.

    The content type is a hint only: a provider that posts JSON with a wrong
    type (``text/plain``) is still understood.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidDeliveryReport("body is not UTF-8") from err
    if not text.strip():
        raise InvalidDeliveryReport("empty body")
    if (content_type or "").split(";")[0].strip().lower() == _FORM:
        try:
            fields = parse_qs(text, strict_parsing=True, max_num_fields=50)
        except ValueError as err:
            raise InvalidDeliveryReport("not a form body") from err
        # A field given twice is ambiguous (which id?): refuse it.
        if any(len(values) != 1 for values in fields.values()):
            raise InvalidDeliveryReport("a form field appears more than once")
        return {key: values[0] for key, values in fields.items()}
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise InvalidDeliveryReport("not JSON") from err


def records(value: Any) -> list[dict[str, Any]]:
    """The report objects in a decoded body: one object, or a list of them."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise InvalidDeliveryReport("no report in the body")
    if len(items) > MAX_REPORTS:
        raise InvalidDeliveryReport(
            f"more than {MAX_REPORTS} reports in one body", code="too_many_reports"
        )
    if not all(isinstance(item, dict) for item in items):
        raise InvalidDeliveryReport("a report is not a JSON object")
    return items


def clean_message_id(value: Any) -> str:
    """``value`` as a message id, or ``""`` when it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return ""
    text = str(value).strip()
    return text if _MESSAGE_ID.fullmatch(text) else ""


def first_message_id(record: dict[str, Any], keys: Iterable[str]) -> str:
    """The first usable id among ``keys`` of ``record``."""
    for key in keys:
        message_id = clean_message_id(record.get(key))
        if message_id:
            return message_id
    return ""


def as_int(value: Any) -> int | None:
    """An int from a JSON number or a digit string; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 9:
            return int(text)
    return None


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from an ISO-8601 string (naive means UTC), else ``None``."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
