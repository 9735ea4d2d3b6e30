"""Delivery tracking: what providers tell us about a message after they took it.

The package holds all of it: this module (the rules), ``webhooks.py`` (the
HTTP edge providers call) and ``urls.py`` (include it under any prefix). How
to *read* a provider's webhook body is the provider's own business
(``providers/reports.py`` and each provider's parser): providers know nothing
of models, so they cannot live here.

Two ways in, one rule:

* webhooks (``delivery/webhooks.py``): a provider pushes reports;
  :func:`receive_webhook` reads them through the provider's parser and records
  each one;
* ``manage.py sms2fa_refresh_status``: :func:`refresh_pending` asks providers
  with a status API about the messages still waiting for a final status.

Both end in one conditional ``UPDATE`` per message (:func:`_transition`), a
compare-and-swap on the status just read, so reports may arrive twice, late or
out of order, from several processes at once, and still:

* a final status (``delivered``, ``failed``) never changes again;
* a status only moves forward: ``unknown`` < ``queued`` < ``sent`` < final
  (a late ``sent`` after ``delivered`` changes nothing);
* the same report twice changes nothing the second time, and
  ``message_status_changed`` is sent exactly once per change that happened.

A report is matched on provider alias *and* message id: a webhook of one
provider alias can never touch a message sent through another.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from .. import signals
from ..conf import app_settings
from ..exceptions import ProviderError, ProviderUnavailable, Sms2faConfigurationError
from ..models import Message
from ..providers import get_provider
from ..providers.base import BaseProvider, InvalidDeliveryReport
from ..types import FINAL_STATUSES, MESSAGE_STATUSES, QUEUED, SENT, UNKNOWN, DeliveryReport

__all__ = [
    "PENDING_STATUSES",
    "InvalidDeliveryReport",
    "RefreshSummary",
    "WebhookOutcome",
    "accepts_reports",
    "receive_webhook",
    "report_provider",
    "record_delivery",
    "refresh_pending",
]

logger = logging.getLogger("django_sms2fa")

#: Statuses that may still change: the ones ``sms2fa_refresh_status`` polls.
PENDING_STATUSES = (QUEUED, SENT, UNKNOWN)
# How far a status has got. "unknown" (a send that may or may not have gone
# out) is below everything: any real news replaces it.
_RANK = {UNKNOWN: 0, QUEUED: 1, SENT: 2}
_FINAL_RANK = 3
# A provider's clock ahead of ours by more than this is not believed.
_CLOCK_SKEW = timedelta(minutes=5)
# Compare-and-swap rounds before giving up on a row other writers keep moving.
_CAS_ROUNDS = 4
# One alias is given up for the rest of a refresh run after this many
# consecutive transient failures (each may have cost a full read timeout).
_MAX_CONSECUTIVE_UNAVAILABLE = 3


# --------------------------------------------------------------------------- recording


def record_delivery(
    alias: str,
    message_id: str,
    status: str,
    provider_status: str = "",
    at: datetime | None = None,
) -> Message | None:
    """Record that provider ``alias`` reports ``status`` for its message ``message_id``.

    :param status: a normalized status (``types.MESSAGE_STATUSES``).
    :param provider_status: the provider's own value, kept for the audit.
    :param at: when the provider says the status changed (default: now).
    :returns: the message (with its current status), or ``None`` when provider
        ``alias`` sent no message with that id. Nothing is changed for an
        unknown id, an old or repeated report, or a message already final.
    :raises ValueError: ``status`` is not a normalized status.
    """
    message, _changed = _record(alias, message_id, status, provider_status, at)
    return message


def _record(
    alias: str, message_id: str, status: str, provider_status: str, at: datetime | None
) -> tuple[Message | None, bool]:
    if status not in MESSAGE_STATUSES:
        raise ValueError(f"status must be one of {MESSAGE_STATUSES}, not {status!r}")
    message_id = str(message_id or "")
    if not message_id:
        return None, False
    # Ids are unique per provider in practice; should one repeat, every
    # message of that alias with the id hears the news.
    rows = list(
        Message.objects.filter(provider=alias, provider_message_id=message_id).order_by(
            "-created_at", "-pk"
        )[:10]
    )
    if not rows:
        return None, False
    changed = False
    errors: list[Exception] = []
    for row in rows:
        old = _transition(row, status, provider_status, at)
        if old is not None:
            changed = True
            errors.extend(_announce(row, old, status))
    if errors:
        raise errors[0]
    return rows[0], changed


def _transition(
    message: Message, status: str, provider_status: str, at: datetime | None
) -> str | None:
    """Move ``message`` to ``status`` if that is progress; the old status, or ``None``.

    A compare-and-swap: ``UPDATE … WHERE pk = … AND status = <what we read>``.
    Of concurrent writers only one changes a given status, and the old status
    it reports is the one the row really had.
    """
    when = _when(at)
    for _round in range(_CAS_ROUNDS):
        old = message.status
        if not _is_progress(old, status):
            return None
        updated = Message.objects.filter(pk=message.pk, status=old).update(
            status=status, provider_status=str(provider_status or "")[:64], status_changed_at=when
        )
        if updated:
            message.status = status
            message.provider_status = str(provider_status or "")[:64]
            message.status_changed_at = when
            return old
        # Someone else moved it first: read what they wrote and judge again.
        message.refresh_from_db(fields=["status", "provider_status", "status_changed_at"])
    return None


def _is_progress(old: str, new: str) -> bool:
    if old in FINAL_STATUSES or new == old:
        return False
    new_rank = _FINAL_RANK if new in FINAL_STATUSES else _RANK.get(new, 0)
    return new_rank > _RANK.get(old, 0)


def _when(at: datetime | None) -> datetime:
    now = timezone.now()
    if at is None:
        return now
    if timezone.is_naive(at):
        at = at.replace(tzinfo=UTC)
    return now if at > now + _CLOCK_SKEW else at


def _announce(message: Message, old: str, new: str) -> list[Exception]:
    """Send ``message_status_changed``; the receivers' errors (all run first)."""
    logger.info(
        "sms2fa: message %s via %s (%s): %s -> %s",
        message.pk,
        message.provider,
        message.provider_message_id,
        old,
        new,
    )
    return [
        response
        for _receiver, response in signals.message_status_changed.send_robust(
            sender=Message, message=message, old_status=old, new_status=new
        )
        if isinstance(response, Exception)
    ]


# --------------------------------------------------------------------------- webhooks


@dataclass
class WebhookOutcome:
    """What one webhook call did, for the provider's answer and for tests."""

    received: int = 0  # reports in the body
    updated: int = 0  # messages whose status changed
    unknown: int = 0  # reports naming no message of this alias
    deferred: int = 0  # look-ups that failed: sms2fa_refresh_status catches up


def accepts_reports(alias: str) -> bool:
    """Whether provider ``alias`` exists and can read delivery webhooks."""
    return report_provider(alias) is not None


def report_provider(alias: str) -> BaseProvider | None:
    """Provider ``alias``, if it exists and can read delivery webhooks."""
    if alias not in app_settings.PROVIDERS:
        return None
    provider = get_provider(alias)
    return provider if provider.receives_delivery_reports() else None


def receive_webhook(alias: str, body: bytes, content_type: str) -> WebhookOutcome:
    """Record the delivery reports in a webhook body that provider ``alias`` sent.

    The caller (the webhook edge) has checked the shared secret. Reports that
    only name a message (``needs_lookup``, GoSMS) are confirmed with the
    provider's status API, and only for messages of this alias that are not
    final yet, so a forged or replayed callback costs no API call.

    :raises InvalidDeliveryReport: the body is not a report of this provider.
    :raises ProviderError: never; a failed look-up is counted as ``deferred``.
    """
    provider = get_provider(alias)
    reports = provider.parse_delivery_report(body, content_type)
    outcome = WebhookOutcome(received=len(reports))
    errors: list[Exception] = []
    for report in reports:
        try:
            state = _receive_one(provider, alias, report)
        except ProviderError as err:
            outcome.deferred += 1
            logger.warning(
                "sms2fa: status look-up at %s for message %s failed (%s); left for "
                "sms2fa_refresh_status",
                alias,
                report.message_id,
                err.provider_code or err.code,
            )
            continue
        except Exception as err:  # a signal receiver: the other reports still count
            errors.append(err)
            continue
        if state == "unknown":
            outcome.unknown += 1
        elif state == "updated":
            outcome.updated += 1
    if errors:
        raise errors[0]
    return outcome


def _receive_one(provider: BaseProvider, alias: str, report: DeliveryReport) -> str:
    status, provider_status, at = report.status, report.provider_status, report.at
    if report.needs_lookup:
        message = (
            Message.objects.filter(provider=alias, provider_message_id=report.message_id)
            .order_by("-created_at", "-pk")
            .first()
        )
        if message is None:
            return "unknown"
        if message.status in FINAL_STATUSES:
            return "unchanged"  # a replay: nothing left to learn, no API call
        # Never trust the callback's own account of the status.
        result = provider.get_status(report.message_id)
        status, provider_status, at = result.status, result.provider_status, None
    message, changed = _record(alias, report.message_id, status, provider_status, at)
    if message is None:
        return "unknown"
    return "updated" if changed else "unchanged"


# --------------------------------------------------------------------------- polling


@dataclass
class RefreshSummary:
    """What one :func:`refresh_pending` run did."""

    aliases: list[str] = field(default_factory=list)  # providers polled
    checked: int = 0  # look-ups that answered
    changed: int = 0  # messages whose status changed
    errors: int = 0  # look-ups that failed
    skipped: int = 0  # not asked: their provider was given up for this run
    new_statuses: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)  # "alias: code"
    given_up: dict[str, str] = field(default_factory=dict)  # alias -> reason
    receiver_errors: int = 0

    @property
    def unchanged(self) -> int:
        return self.checked - self.changed


#: Called once per message polled: (message, old status, new status or None, error code).
Progress = Callable[[Message, str, "str | None", str], None]


def refresh_pending(
    *,
    alias: str | None = None,
    max_age: timedelta = timedelta(days=3),
    min_age: timedelta = timedelta(0),
    limit: int = 1000,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RefreshSummary:
    """Ask providers with a status API about messages not yet final.

    Polls messages in ``queued``, ``sent`` or ``unknown`` that have a provider
    message id, sent between ``max_age`` and ``min_age`` ago, newest first, at
    most ``limit`` of them, through providers whose class implements
    ``get_status()`` (GoSMS, telefon-ip). One message's failure does not stop
    the run; a provider that refuses our credentials, throttles us or keeps
    failing is given up for the rest of the run.

    :param alias: poll only this provider alias.
    :raises Sms2faConfigurationError: ``alias`` is not a provider, or has no
        status look-up.
    """
    now = now or timezone.now()
    summary = RefreshSummary()
    providers = _pollable_providers(alias, summary)
    summary.aliases = sorted(providers)
    if not providers or limit <= 0:
        return summary
    rows = (
        Message.objects.filter(
            provider__in=list(providers),
            status__in=PENDING_STATUSES,
            created_at__gte=now - max_age,
            created_at__lte=now - min_age,
        )
        .exclude(provider_message_id="")
        .order_by("-created_at", "-pk")[:limit]
    )
    failures_in_a_row: Counter[str] = Counter()
    for message in rows:
        name = message.provider
        if name in summary.given_up:
            summary.skipped += 1
            continue
        old = message.status
        try:
            result = providers[name].get_status(message.provider_message_id)
        except ProviderError as err:
            code = err.provider_code or err.code
            summary.errors += 1
            summary.error_codes[f"{name}: {code}"] += 1
            reason = _give_up_reason(err, code, failures_in_a_row, name)
            if reason:
                summary.given_up[name] = reason
            _notify(progress, message, old, None, code)
            continue
        except Exception as err:  # a bug in one provider must not stop the others
            code = type(err).__name__
            summary.errors += 1
            summary.error_codes[f"{name}: {code}"] += 1
            logger.error("sms2fa: status look-up at %s failed unexpectedly (%s)", name, code)
            _notify(progress, message, old, None, code)
            continue
        failures_in_a_row[name] = 0
        summary.checked += 1
        changed_from = _transition(message, result.status, result.provider_status, None)
        if changed_from is not None:
            summary.changed += 1
            summary.new_statuses[result.status] += 1
            errors = _announce(message, changed_from, result.status)
            if errors:
                summary.receiver_errors += len(errors)
                logger.error(
                    "sms2fa: a message_status_changed receiver failed (%s)",
                    type(errors[0]).__name__,
                )
        _notify(progress, message, old, result.status, "")
    return summary


def _pollable_providers(alias: str | None, summary: RefreshSummary) -> dict[str, BaseProvider]:
    configured = app_settings.PROVIDERS
    if alias is not None:
        if alias not in configured:
            raise Sms2faConfigurationError(
                f"No SMS provider {alias!r} in SMS2FA['PROVIDERS'].", check_id="sms2fa.E002"
            )
        provider = get_provider(alias)
        if not provider.has_status_lookup():
            raise Sms2faConfigurationError(
                f"SMS provider {alias!r} ({type(provider).__name__}) has no status look-up.",
                check_id="sms2fa.E002",
            )
        return {alias: provider}
    found: dict[str, BaseProvider] = {}
    for name in configured:
        try:
            provider = get_provider(name)
        except Sms2faConfigurationError:
            # manage.py check reports it (sms2fa.E002); the others still run.
            summary.given_up[name] = "configuration_error"
            continue
        if provider.has_status_lookup():
            found[name] = provider
    return found


def _give_up_reason(err: ProviderError, code: str, in_a_row: Counter[str], name: str) -> str:
    if code == "auth":
        return "auth"  # every other look-up would be refused the same way
    if isinstance(err, ProviderUnavailable):
        if err.retry_after or err.http_status == 429:
            return "rate_limited"
        in_a_row[name] += 1
        if in_a_row[name] >= _MAX_CONSECUTIVE_UNAVAILABLE:
            return "unavailable"
    else:
        in_a_row[name] = 0
    return ""


def _notify(progress: Progress | None, message: Message, old: str, new: str | None, code: str):
    if progress is not None:
        progress(message, old, new, code)
