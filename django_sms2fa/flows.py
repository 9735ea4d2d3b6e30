"""The business rules: request, resend, verify and cancel a challenge.

Every edge (REST, HTML, the django-otp device, the auth backend, tasks) calls
these functions and nothing else. They take domain arguments — a user, a phone,
a challenge id, a code, :class:`~django_sms2fa.types.ClientInfo` — never an
``HttpRequest``, and raise :mod:`~django_sms2fa.exceptions` errors that each
edge translates in one place.

Concurrency. Each state change is one conditional ``UPDATE`` whose ``WHERE``
re-checks the state, so the database decides races, whatever the number of
processes:

* a guess is evaluated only after ``UPDATE … SET attempts = attempts + 1 WHERE
  status = 'pending' AND attempts < max_attempts AND expires_at > now AND
  code_hash = <the hash we read>`` changed one row — so no more than
  ``max_attempts`` guesses are ever evaluated, and a guess is never evaluated
  against a code that a concurrent resend replaced;
* a right code wins only through ``UPDATE … SET status = 'verified' WHERE
  status = 'pending'`` — so of many concurrent right answers, exactly one
  succeeds.

No transaction is held while a provider is called. Called inside a transaction
(django-otp's login form wraps ``generate_challenge()`` in one), the SMS is sent
once that transaction commits.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.dispatch import Signal
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from . import ratelimit, signals
from .client import limit_key
from .codes import clean_submitted_code, code_matches, generate_code, hash_code
from .conf import MAX_RETRY_AFTER, app_settings
from .exceptions import (
    ChallengeAlreadyUsed,
    ChallengeCancelled,
    ChallengeExpired,
    ChallengeNotFound,
    ChallengeQueued,
    ChallengeUndeliverable,
    ChannelUnavailable,
    DeliveryFailed,
    IncorrectCode,
    LimitsUnavailable,
    NumberNotAllowed,
    ProviderError,
    ProviderLimited,
    ProviderUnavailable,
    RateLimited,
    Sms2faConfigurationError,
    Sms2faError,
    TooManyAttempts,
    VerificationLocked,
)
from .models import (
    Challenge,
    ChallengeStatus,
    CheckedBy,
    Message,
    PhoneDevice,
    Purpose,
    Refusal,
)
from .phones import mask_phone, normalize_phone, number_type_of, region_of
from .providers import get_provider
from .providers.base import BaseProvider
from .types import CHANNELS, FAILED, SMS, UNKNOWN, ClientInfo, OutgoingSms, SendResult

logger = logging.getLogger("django_sms2fa")

#: A check an edge runs on a challenge as the flow reads it (``accept=``):
#: it raises a domain error to refuse the challenge.
Accept = Callable[[Challenge], None]

# Rendered into the SMS template in place of the code, then replaced: once by
# the code (the text sent) and once by bullets (the text kept for the audit).
_CODE_SLOT = "SMS2FACODESLOT"

_CLOSED_ERRORS: dict[str, type[Sms2faError]] = {
    ChallengeStatus.VERIFIED: ChallengeAlreadyUsed,
    ChallengeStatus.EXPIRED: ChallengeExpired,
    ChallengeStatus.FAILED: TooManyAttempts,
    ChallengeStatus.CANCELLED: ChallengeCancelled,
    ChallengeStatus.UNDELIVERABLE: ChallengeUndeliverable,
    # Not closed: waiting for a task worker to send its code.
    ChallengeStatus.QUEUED: ChallengeQueued,
}


# --------------------------------------------------------------------------- public


@sensitive_variables()
def request_challenge(
    *,
    phone: str,
    purpose: str,
    user: Any = None,
    device: PhoneDevice | None = None,
    client: ClientInfo | None = None,
    language: str | None = None,
    deliver: bool = True,
    channel: str = SMS,
) -> Challenge:
    """Create a challenge for ``phone`` and send its code.

    :param phone: as the user typed it; normalized to E.164 here.
    :param purpose: a :class:`~django_sms2fa.models.Purpose` value.
    :param user: the user the challenge is for, if known.
    :param language: language of the SMS (default: the adapter's
        ``get_language(user)``, else the active language).
    :param deliver: ``False`` creates the challenge without sending anything —
        a decoy for an unknown number, so that the answer to "send a code to
        this number" cannot tell whether the number has an account.
    :param channel: ``"sms"``, or ``"call"`` / ``"whatsapp"`` where a provider
        on the number's route offers it (:func:`channels_for`).
    :returns: the saved :class:`Challenge` (status ``pending``; ``queued``
        with ``SEND_VIA_TASKS``, until a task worker sends the code). Its
        ``delivery_uncertain`` is true when no provider surely took the code
        but one may have (the code may be delayed; a resend is allowed at once).
    :raises InvalidPhone: the number is not a valid phone number.
    :raises ChannelUnavailable: no provider on the route offers ``channel``.
    :raises DeliveryFailed: no provider took the SMS; the challenge is left
        ``undeliverable`` (``context["challenge_id"]`` names it).
        :class:`ProviderLimited` (a subclass): the provider's own limit for
        this number refused it.
    """
    purpose = _valid_purpose(purpose)
    channel = _valid_channel(channel)
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    client = client or ClientInfo()
    user = user if getattr(user, "pk", None) is not None else None
    language = language or _language_for(user)
    fixed_code = app_settings.TEST_NUMBERS.get(e164)
    queued = app_settings.SEND_VIA_TASKS and fixed_code is None
    # Sent here and now (not a decoy, a test number, a task's, or after the
    # caller's commit): the provider is called first, and the challenge goes
    # into the database with the audit row of its SMS, in one transaction.
    send_now = deliver and fixed_code is None and not queued and not _in_real_transaction()
    # Refused before anything is counted: the route decides, not the account.
    chain = _provider_chain(e164, channel)
    # Every refusal happens here, before any row is written or provider called.
    # A decoy (deliver=False) counts like a real send: the limits must answer
    # the same for numbers with and without an account.
    ticket = _guard_send(
        e164,
        user=user,
        client=client,
        count=fixed_code is None,
        purpose=purpose,
        device=device,
        pump=send_now,
        channel=channel,
    )
    now = timezone.now()
    challenge = Challenge(
        id=uuid.uuid4(),
        user=user,
        device=device,
        phone=e164,
        region=region_of(e164) or "ZZ",
        purpose=purpose,
        max_attempts=app_settings.MAX_ATTEMPTS,
        sends=1 if deliver and fixed_code is None else 0,
        created_at=now,
        expires_at=now + timedelta(seconds=app_settings.CODE_LIFETIME),
        last_sent_at=now,
        channel=channel,
        client_ip=client.ip,
        # Printable characters only: PostgreSQL text cannot hold NUL, and the
        # audit has no use for control characters.
        user_agent="".join(ch for ch in client.user_agent or "" if ch.isprintable())[:300],
    )
    # The first provider's mode is known before the insert, so the code hash
    # goes in with the row: one statement, and never a pending row without it.
    alias, provider = chain[0]
    # SEND_VIA_TASKS: the worker makes the code (task arguments are stored in
    # the queue, so a code must never be one); the row goes in queued, without
    # a hash, and only the worker's claim (send_queued) arms it. A decoy is
    # queued too, so that it looks like any other challenge.
    if queued:
        challenge.status, challenge.provider, code = ChallengeStatus.QUEUED, alias, ""
    else:
        code = _arm(challenge, alias, provider)
    if fixed_code is not None:
        # A configured test number (app-store review): a fixed code, checked
        # like any other, and no SMS ever.
        challenge.code_hash, challenge.checked_by = (
            _hash_for(challenge, fixed_code),
            CheckedBy.LOCAL,
        )
        deliver = False
    logger.info("sms2fa: challenge %s requested (%s, %s)", challenge.pk, purpose, mask_phone(e164))
    if send_now:
        try:
            _send_then_save(challenge, chain, code, language, ticket)
        except DeliveryFailed:
            _give_back_cooldowns(challenge, ticket)
            raise
        _give_back_cooldowns(challenge, ticket)
        return challenge
    challenge.save(force_insert=True)
    _send_signal(signals.challenge_requested, challenge=challenge)
    if queued:
        _enqueue_send(challenge, language)
    elif deliver:
        _deliver_now_or_on_commit(challenge, chain, code, language)
    return challenge


@sensitive_variables()
def resend_challenge(
    challenge_id: Any,
    *,
    user: Any = None,
    purpose: str | Iterable[str] | None = None,
    language: str | None = None,
    client: ClientInfo | None = None,
    accept: Accept | None = None,
    channel: str | None = None,
) -> Challenge:
    """Send a new code for a pending challenge; the old code stops working.

    ``accept``: as for :func:`verify_challenge`. ``channel``: switch to another
    way of reaching the phone ("call me instead"); the default keeps the
    challenge's. A switch away from SMS is not held back by ``RESEND_INTERVAL``
    (the new channel's own limits apply), and neither is a resend after a delivery
    that may not have happened (``delivery_uncertain``), except for
    passwordless login, whose answers must not differ between numbers.

    The attempt counter is *not* reset (a new code never resets failures,
    NIST SP 800-63B-4 §3.1.3.2) and the lifetime starts again. Sends of one
    challenge are at least ``RESEND_INTERVAL`` seconds apart.

    :raises ChallengeNotFound: unknown id, or not ``user``'s, or not ``purpose``.
    :raises ChallengeExpired: the challenge is closed (likewise
        :exc:`ChallengeAlreadyUsed`, :exc:`TooManyAttempts`,
        :exc:`ChallengeCancelled`, :exc:`ChallengeUndeliverable`).
    :raises ChallengeQueued: its code is still waiting for a task worker.
    :raises RateLimited: the last send was less than ``RESEND_INTERVAL`` ago.
    :raises DeliveryFailed: as for :func:`request_challenge`.
    """
    challenge = _load(challenge_id, user=user, purpose=purpose, with_user=True, accept=accept)
    _as_decoy_if_undeliverable(challenge)
    if not challenge.is_pending:
        raise _closed_error(challenge)
    language = language or _language_for(challenge.user)
    channel = challenge.channel if channel is None else _valid_channel(channel)
    # "Call me instead": leaving SMS for another channel is not held back by
    # RESEND_INTERVAL (that channel's own limits apply). Any other switch —
    # back to SMS, or between call and WhatsApp — waits like a resend, so
    # toggling cannot send a channel twice within the interval. Decided on
    # the challenge's own fields: a decoy answers alike.
    switching = channel != challenge.channel and challenge.channel == SMS
    now = timezone.now()
    chain = _provider_chain(challenge.phone, channel)
    ready_at = now if switching else _resend_ready_at(challenge)
    if ready_at > now:
        raise RateLimited(
            challenge_id=str(challenge.pk),
            retry_after=math.ceil((ready_at - now).total_seconds()),
        )
    deliver = bool(challenge.sends)  # a decoy (no SMS ever) stays silent
    fixed_code = app_settings.TEST_NUMBERS.get(challenge.phone)
    deliver = deliver and fixed_code is None
    ticket = _guard_send(
        challenge.phone,
        user=challenge.user,
        client=client or ClientInfo(),
        count=fixed_code is None,
        purpose=challenge.purpose,
        device=challenge.device,
        channel=channel,
    )
    challenge.channel = channel
    challenge.delivery_uncertain = False
    alias, provider = chain[0]
    old_hash = challenge.code_hash
    superseded = _in_flight_at_provider(challenge) if deliver else None
    challenge.expires_at = now + timedelta(seconds=app_settings.CODE_LIFETIME)
    # SEND_VIA_TASKS: back to queued without a hash (the old code dies now);
    # the worker makes the new code, as for a request.
    queued = app_settings.SEND_VIA_TASKS and fixed_code is None
    if queued:
        challenge.status, challenge.provider, challenge.code_hash, code = (
            ChallengeStatus.QUEUED,
            alias,
            "",
            "",
        )
    else:
        code = _arm(challenge, alias, provider)
    if fixed_code is not None:
        challenge.code_hash = _hash_for(challenge, fixed_code)
    updated = Challenge.objects.filter(
        pk=challenge.pk,
        status=ChallengeStatus.PENDING,
        code_hash=old_hash,
        attempts__lt=F("max_attempts"),
        # Re-checked by the database: of two concurrent resends, one sends.
        last_sent_at=challenge.last_sent_at,
    ).update(
        status=challenge.status,
        code_hash=challenge.code_hash,
        checked_by=challenge.checked_by,
        provider=alias,
        expires_at=challenge.expires_at,
        last_sent_at=now,
        sends=F("sends") + (1 if deliver else 0),
        channel=channel,
        delivery_uncertain=False,
    )
    if not updated:
        current = _load(challenge_id)
        if not current.is_pending:
            raise _closed_error(current)
        if current.attempts >= current.max_attempts:
            raise TooManyAttempts(challenge_id=str(challenge.pk))
        retry = math.ceil(max((_resend_ready_at(current) - now).total_seconds(), 1))
        raise RateLimited(challenge_id=str(challenge.pk), retry_after=retry)
    challenge.last_sent_at = now
    challenge.sends += 1 if deliver else 0
    logger.info("sms2fa: challenge %s resent", challenge.pk)
    if superseded is not None:
        # Never inside the caller's transaction: after its commit, if any.
        _run_now_or_on_commit(lambda: _cancel_at_provider(*superseded))
    _send_signal(signals.challenge_resent, challenge=challenge)
    if queued:
        _enqueue_send(challenge, language)
    elif deliver and _in_real_transaction():
        _deliver_now_or_on_commit(challenge, chain, code, language)
    elif deliver:
        try:
            _deliver(challenge, chain, code, language)
        except DeliveryFailed:
            _give_back_cooldowns(challenge, ticket)
            if challenge.purpose != Purpose.PASSWORDLESS:
                raise
            # Answered as a decoy's resend is (silently), or the failure
            # would tell that the number has an account; the challenge
            # becomes a decoy (its messages keep what happened).
            _as_decoy_if_undeliverable(challenge)
            return challenge
        _give_back_cooldowns(challenge, ticket)
    return challenge


def _in_flight_at_provider(challenge: Challenge) -> tuple[str, BaseProvider, str] | None:
    """The provider's own verification behind a provider-checked challenge, if
    its provider can cancel it: (alias, provider, message id)."""
    if challenge.checked_by != CheckedBy.PROVIDER or not challenge.provider:
        return None
    if challenge.provider not in app_settings.PROVIDERS:
        return None
    provider = get_provider(challenge.provider)
    if not provider.can_cancel():
        return None
    message_id = (
        Message.objects.filter(challenge=challenge, provider=challenge.provider)
        .exclude(provider_message_id="")
        .order_by("-id")
        .values_list("provider_message_id", flat=True)
        .first()
    )
    return (challenge.provider, provider, message_id) if message_id else None


def _run_now_or_on_commit(action: Callable[[], None]) -> None:
    if _in_real_transaction():
        transaction.on_commit(action)
    else:
        action()


def _cancel_at_provider(alias: str, provider: BaseProvider, message_id: str) -> None:
    """End the verification a resend replaces, where the provider allows one
    per number at a time (Vonage: a second one is refused with 409 until the
    first ends). Its code is dead for us already; a failure here only means
    the provider may refuse the new send, which the flows then report."""
    try:
        provider.cancel(message_id)
    except ProviderError as err:
        logger.warning(
            "sms2fa: %s could not cancel verification %s (%s)",
            alias,
            message_id,
            err.provider_code or err.code,
        )


def resend_ready_at(challenge: Challenge) -> datetime:
    """When :func:`resend_challenge` will next accept this challenge."""
    return _resend_ready_at(challenge)


def _resend_ready_at(challenge: Challenge) -> datetime:
    sent = challenge.last_sent_at or challenge.created_at
    if uncertain_delivery_told(challenge):
        return sent  # the code may never come: another may be asked for at once
    return sent + timedelta(seconds=app_settings.RESEND_INTERVAL)


def uncertain_delivery_told(challenge: Challenge) -> bool:
    """Whether the user is told the code may be delayed (and may resend at once).

    True after a send that no provider surely took but one may have — except
    in passwordless login, where an unknown number's decoy is never
    uncertain, so telling it would tell the numbers apart.
    """
    return challenge.delivery_uncertain and challenge.purpose != Purpose.PASSWORDLESS


def _give_back_cooldowns(challenge: Challenge, ticket: ratelimit.SendTicket) -> None:
    """After a send that surely or maybe did not reach the phone, the limits'
    cooldowns (``"1/30s"``) are given back, so the user can ask again at once;
    the windows (``"5/10m"``) keep the send. Not in passwordless login, whose
    refusals must be the same for every number."""
    if challenge.purpose == Purpose.PASSWORDLESS:
        return
    if challenge.status == ChallengeStatus.UNDELIVERABLE or challenge.delivery_uncertain:
        cooldowns = [hit for hit in ticket.hits if hit.cooldown]
        if cooldowns:
            ratelimit.give_back(cooldowns)


@sensitive_variables()
def verify_challenge(
    challenge_id: Any,
    code: Any,
    *,
    user: Any = None,
    purpose: str | Iterable[str] | None = None,
    accept: Accept | None = None,
) -> Challenge:
    """Check ``code``; on success the challenge becomes ``verified`` (once).

    :param user: when given, the challenge must belong to this user.
    :param purpose: when given, the challenge must have this purpose (or one of
        these); a code for another purpose behaves as an unknown challenge.
    :param accept: called with the challenge as soon as it is read, before
        anything is judged; it raises a domain error (``ChallengeNotFound``)
        to refuse it. An edge checks here who may act on the challenge, on the
        row the flow reads anyway — one read per verify.
    :returns: the verified :class:`Challenge`.
    :raises InvalidCode: ``code`` is not ASCII digits (no attempt is used).
    :raises IncorrectCode: wrong code; ``attempts_left`` tells how many remain.
    :raises TooManyAttempts: the attempts are used up.
    :raises VerificationLocked: too many wrong codes for this account or number
        (no attempt is used).
    :raises ChallengeNotFound: unknown id, or not ``user``'s, or not ``purpose``.
    :raises ChallengeExpired: the challenge is closed (likewise
        :exc:`ChallengeAlreadyUsed`, :exc:`ChallengeCancelled`,
        :exc:`ChallengeUndeliverable`).
    :raises ChallengeQueued: the code is still waiting for a task worker (no
        attempt is used).
    :raises ProviderError: the provider that checks this code did not answer.
    :raises LimitsUnavailable: the limits cache is down; nothing was judged.
    """
    code = clean_submitted_code(code)
    # With its user and device (one JOIN): the login flows read both next.
    challenge = _load(challenge_id, user=user, purpose=purpose, with_user=True, accept=accept)
    _as_decoy_if_undeliverable(challenge)
    now = timezone.now()
    _ensure_open(challenge, now)
    subject = _lock_subject(challenge.phone, challenge.user_id, purpose=challenge.purpose)
    # A code we check ourselves is judged first, so that a right one takes its
    # attempt and closes the challenge in one guarded UPDATE (one statement,
    # one commit — with the device's last use, when that is written, in the
    # same transaction). Its outcome is still acted on only once that UPDATE
    # admitted it and it holds a place in the failure count, so no more than
    # max_attempts guesses per challenge, and LOCKOUT_THRESHOLD per account or
    # number, ever get an answer.
    local = challenge.checked_by != CheckedBy.PROVIDER
    right = local and _code_is_right(challenge, code)
    # Test numbers are never sent to, so they must not count as verified
    # sends either: known fixed codes could hold the breaker.
    counted = challenge.phone not in app_settings.TEST_NUMBERS
    verified = _pump_count(challenge) if counted else None
    guess: ratelimit.Guess | None = None
    refused: VerificationLocked | None = None
    if right:
        # Its place in the count is taken — and, right as it is, settled, with
        # the lock check and the breaker's count: one round trip — before the
        # UPDATE that closes the challenge. Refused by the gate, it goes on as
        # a wrong guess refused after its UPDATE would: the same answer, right
        # code or not. (Should its UPDATE then lose a race — a concurrent right
        # answer, a resend, the expiry — the count stays cleared and the
        # verification counted: the code was right, the number proved itself.)
        try:
            guess = ratelimit.reserve_guess(subject, right=True, verified=verified)
        except ratelimit.LockRunning as err:
            _record_refusal(err, phone=challenge.phone, user_id=challenge.user_id, ip=None)
            raise
        except VerificationLocked as err:
            refused, right = err, False
    else:
        _ensure_not_locked(subject, phone=challenge.phone, user_id=challenge.user_id)
    closing = {"status": ChallengeStatus.VERIFIED, "verified_at": now, "closed_at": now}
    touch_device = right and _device_use_due(challenge, now)
    attempt_held = settled = False
    try:
        with transaction.atomic(savepoint=False) if touch_device else nullcontext():
            reserved = Challenge.objects.filter(
                pk=challenge.pk,
                status=ChallengeStatus.PENDING,
                attempts__lt=F("max_attempts"),
                expires_at__gt=now,
                code_hash=challenge.code_hash,
            ).update(attempts=F("attempts") + 1, **(closing if right else {}))
            if reserved and touch_device:
                _touch_device(challenge, now)
        if not reserved:
            # Lost a race: the attempts ran out, the code was replaced, or the
            # challenge closed after we read it. Tell the caller which.
            current = _load(challenge_id)
            _ensure_open(current, now)
            if current.code_hash != challenge.code_hash:
                raise IncorrectCode(
                    challenge_id=str(challenge.pk),
                    attempts_left=max(current.max_attempts - current.attempts, 0),
                )
            raise TooManyAttempts(challenge_id=str(challenge.pk))
        challenge.attempts += 1
        attempt_held = not right
        if guess is None:
            # The count is taken now, before the verdict is known or told:
            # concurrent guesses over several challenges cannot all pass it.
            if refused is None:
                try:
                    guess = ratelimit.reserve_guess(subject)
                except VerificationLocked as err:
                    refused = err
            if refused is not None:
                _give_back_attempt(challenge)
                attempt_held = False
                raise refused

        if not local:
            try:
                right = _code_is_right(challenge, code)
            except ProviderError as err:
                if err.provider_limit == "check" and challenge.purpose == Purpose.PASSWORDLESS:
                    # The provider checks no more codes for this send. In
                    # passwordless login a decoy would still answer "wrong
                    # code" with our own attempts left, so this must too.
                    right = False
                else:
                    # The admitted guess was never judged: count it as not right so
                    # the challenge can still close once every admitted guess failed.
                    attempt_held = False
                    _count_wrong(challenge, now)
                    if err.provider_limit == "check":
                        # The provider will not check another code for this send
                        # (Twilio Verify 60202): nothing can verify it any more.
                        _close(challenge, ChallengeStatus.FAILED, now)
                        raise TooManyAttempts(challenge_id=str(challenge.pk)) from err
                    raise
            attempt_held = False
            if right:
                won = Challenge.objects.filter(
                    pk=challenge.pk, status=ChallengeStatus.PENDING
                ).update(**closing)
                if not won:
                    raise _closed_error(_load(challenge_id))
                if _device_use_due(challenge, now):
                    _touch_device(challenge, now)
        attempt_held = False
        if right:
            challenge.status = ChallengeStatus.VERIFIED
            challenge.verified_at = challenge.closed_at = now
            # Only this factor's failure count; every other limiter keeps
            # counting. (A code we check was settled with its place.)
            ratelimit.settle_right(guess, verified=verified)
            settled = True
            logger.info("sms2fa: challenge %s verified", challenge.pk)
            _send_signal(signals.challenge_verified, challenge=challenge)
            return challenge

        attempts_left = max(challenge.max_attempts - challenge.attempts, 0)
        logger.info(
            "sms2fa: wrong code for challenge %s (%d attempts left)", challenge.pk, attempts_left
        )
        _count_wrong(challenge, now)
        failures = ratelimit.settle_wrong(guess)
        settled = True
        if failures == app_settings.LOCKOUT_THRESHOLD:
            logger.warning(
                "sms2fa: SMS verification locked after %d wrong codes (challenge %s)",
                failures,
                challenge.pk,
            )
            # The owner hears of it (by email by default; masked number, no code).
            _send_signal(
                signals.security_event,
                sender=PhoneDevice,
                user=challenge.user,
                event="lockout",
                context={
                    "phone": mask_phone(challenge.phone),
                    "new_phone": "",
                    "when": now,
                    "ip": challenge.client_ip or "",
                },
            )
        _send_signal(
            signals.challenge_code_rejected, challenge=challenge, attempts_left=attempts_left
        )
        raise IncorrectCode(challenge_id=str(challenge.pk), attempts_left=attempts_left)
    except LimitsUnavailable:
        # The cache went away during the guess: nothing more can be counted
        # (and trying would only log the outage again). An attempt taken but
        # not judged goes back to the challenge.
        if attempt_held:
            _give_back_attempt(challenge)
        raise
    except BaseException:
        if guess is not None and not settled:
            ratelimit.release_guess(guess)
        raise


def cancel_challenge(
    challenge_id: Any, *, user: Any = None, purpose: str | Iterable[str] | None = None
) -> bool:
    """Close a pending challenge so its code no longer works.

    :returns: ``True`` if it was pending, ``False`` if it was already closed.
    :raises ChallengeNotFound: unknown id, or not ``user``'s, or not ``purpose``.
    """
    challenge = _load(challenge_id, user=user, purpose=purpose)
    _as_decoy_if_undeliverable(challenge)
    return _close(challenge, ChallengeStatus.CANCELLED, timezone.now())


def close_challenges_for(*, phone: str, user: Any, device: Any = None) -> list[Challenge]:
    """Cancel every open challenge of ``phone`` (E.164) for ``user``.

    For a phone leaving an account (removed, replaced, or confirmed on another
    account): a code already sent to it, for any purpose (login, passwordless,
    verify_phone, change_phone; resent or still queued), must die with the
    phone's place in the account, or whoever holds the phone could still
    resend to it and log in with it. ``device`` adds that device's challenges
    (the same number, but also rows whose user was since deleted).

    Each row moves with its own conditional ``UPDATE … WHERE status IN
    ('pending', 'queued')``, so a concurrent verify either won before (the
    code was used while the phone still counted) or finds the challenge
    cancelled. ``challenge_closed`` (reason ``"cancelled"``) is sent for each;
    inside a transaction, once it commits, so that a broken receiver cannot
    undo the removal.

    :returns: the challenges this call closed.
    """
    user_id = getattr(user, "pk", user)
    mine = Q(phone=phone, user_id=user_id) if user_id is not None else Q(pk__in=[])
    if getattr(device, "pk", None) is not None:
        mine |= Q(device_id=device.pk)
    open_statuses = (ChallengeStatus.PENDING, ChallengeStatus.QUEUED)
    now = timezone.now()
    closed = []
    for challenge in Challenge.objects.filter(mine, status__in=open_statuses):
        if Challenge.objects.filter(pk=challenge.pk, status__in=open_statuses).update(
            status=ChallengeStatus.CANCELLED, closed_at=now
        ):
            challenge.status, challenge.closed_at = ChallengeStatus.CANCELLED, now
            closed.append(challenge)
            logger.info("sms2fa: challenge %s closed (its phone left the account)", challenge.pk)

    def announce() -> None:
        for challenge in closed:
            _send_signal(signals.challenge_closed, challenge=challenge, reason="cancelled")

    if _in_real_transaction():
        transaction.on_commit(announce, robust=True)
    else:
        announce()
    return closed


@sensitive_variables()
def send_queued(challenge_id: Any, *, queued_at: str, language: str | None = None) -> str:
    """Send the code of a queued challenge: the task worker's side of ``SEND_VIA_TASKS``.

    The code is made here, in the worker, and the run claims the send with one
    conditional ``UPDATE … SET status = 'pending', code_hash = … WHERE status =
    'queued' AND last_sent_at = <queued_at> AND expires_at > now``: only the
    run that wins the claim calls a provider, so a task that runs twice (a
    retry, a duplicate delivery) never sends a second SMS. The price is
    at-most-once: a worker that dies between the claim and the provider's
    answer leaves a pending challenge whose code nobody received, and the
    user asks for a new one (resend).

    :param queued_at: ``last_sent_at`` of the challenge when it was queued
        (ISO 8601); a later resend queues a new send, which this run leaves alone.
    :param language: the SMS language, chosen in the request.
    :returns: ``"sent"`` (a provider took it), ``"decoy"`` (claimed; a decoy
        sends nothing), ``"undeliverable"`` (no provider took it; recorded),
        ``"expired"`` (queued for longer than the code's lifetime: not sent)
        or ``"skipped"`` (nothing to claim: already sent, cancelled, unknown).
    """
    try:
        pk = uuid.UUID(str(challenge_id))
        token = datetime.fromisoformat(queued_at)
    except (TypeError, ValueError):
        logger.warning("sms2fa: a queued send with malformed arguments was dropped")
        return "skipped"
    challenge = Challenge.objects.select_related("user").filter(pk=pk).first()
    if challenge is None or challenge.status != ChallengeStatus.QUEUED:
        return "skipped"
    now = timezone.now()
    if challenge.expires_at <= now:
        # The queue held it longer than the code's lifetime: the user has
        # moved on, and a late code would only confuse.
        if challenge.last_sent_at == token and _close(challenge, ChallengeStatus.EXPIRED, now):
            logger.warning("sms2fa: challenge %s expired in the task queue", challenge.pk)
            return "expired"
        return "skipped"
    try:
        chain = _provider_chain(challenge.phone, challenge.channel)
    except ChannelUnavailable:
        # The providers changed since the request: nothing can send it now.
        _close(challenge, ChallengeStatus.UNDELIVERABLE, now)
        return "undeliverable"
    alias, provider = chain[0]
    code = _arm(challenge, alias, provider)
    claimed = Challenge.objects.filter(
        pk=challenge.pk,
        status=ChallengeStatus.QUEUED,
        last_sent_at=token,
        expires_at__gt=now,
    ).update(
        status=ChallengeStatus.PENDING,
        code_hash=challenge.code_hash,
        checked_by=challenge.checked_by,
        provider=alias,
        last_sent_at=now,
    )
    if not claimed:
        return "skipped"  # another run claimed it, or it was cancelled meanwhile
    challenge.status, challenge.last_sent_at = ChallengeStatus.PENDING, now
    if not challenge.sends:
        # A decoy for a number without an account: armed, its code never sent.
        # With PASSWORDLESS_UNKNOWN_NUMBER = "notify" the number is told here,
        # after the answer, as a known number gets its code: the request
        # waits for no provider either way (login_flows.start_passwordless).
        if (
            challenge.purpose == Purpose.PASSWORDLESS
            and challenge.user_id is None
            and app_settings.PASSWORDLESS_UNKNOWN_NUMBER == "notify"
        ):
            from .adapter import get_adapter

            with translation.override(language or translation.get_language()):
                send_notice(phone=challenge.phone, text=get_adapter().unknown_number_text())
        return "decoy"
    try:
        _deliver(challenge, chain, code, language)
    except DeliveryFailed:
        # Nobody waits for an answer here; the challenge is undeliverable and
        # its messages record why.
        logger.warning("sms2fa: challenge %s could not be delivered", challenge.pk)
        return "undeliverable"
    return "sent"


@sensitive_variables()
def send_test_sms(
    *,
    phone: str,
    alias: str | None = None,
    username: str = "",
    language: str | None = None,
    channel: str = SMS,
) -> Message:
    """Send one test SMS through a provider and record it (no challenge).

    :param alias: the provider to use; default: the one ``ROUTES`` picks.
    :param username: passed to providers that address users (AxelNAC).
    :param channel: ``call`` or ``whatsapp`` to try those, where the provider
        offers them.
    :raises ChannelUnavailable: the provider does not offer ``channel``.
    :returns: the recorded :class:`Message` (status ``sent`` or as reported).
    :raises InvalidPhone: the number is not valid.
    :raises ProviderError: the provider did not take it (also recorded).
    """
    with translation.override(language or translation.get_language()):
        text = str(_("This is a test message from django-sms2fa."))
    return _send_plain(
        phone=phone,
        text=text,
        alias=alias,
        username=username,
        purpose="test",
        any_mode=True,
        channel=_valid_channel(channel),
    )


@sensitive_variables()
def send_notice(*, phone: str, text: str) -> Message | None:
    """Tell a phone's owner something (a number replaced, a phone added).

    Sent through the first provider of the number's chain that delivers text;
    providers that only carry codes cannot. Failures are recorded and logged,
    never raised: a notice must not undo the change it reports.

    :returns: the recorded :class:`Message`, or ``None`` when no provider of the
        chain can deliver text.
    """
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    for alias, provider in _provider_chain(e164):
        if provider.capabilities.delivers_text:
            try:
                return _send_plain(phone=e164, text=text, alias=alias, purpose="notice")
            except ProviderError:
                continue
    logger.warning("sms2fa: no provider could deliver a notice to %s", mask_phone(e164))
    return None


def _send_plain(
    *,
    phone: str,
    text: str,
    alias: str | None,
    purpose: str,
    username: str = "",
    any_mode: bool = False,
    channel: str = SMS,
) -> Message:
    """Hand a code-less SMS to one provider and record it."""
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    alias = alias or _provider_chain(e164, channel)[0][0]
    provider = get_provider(alias)
    caps = provider.capabilities
    if channel not in caps.channels:
        raise ChannelUnavailable(channel=channel)
    length = min(app_settings.CODE_LENGTH, caps.max_code_length or app_settings.CODE_LENGTH)
    # A test through a provider that only carries codes gets a throw-away one;
    # it is not kept anywhere.
    code = (
        generate_code(length)
        if any_mode and not caps.delivers_text and caps.takes_our_code(length)
        else ""
    )
    sms = OutgoingSms(
        to=e164,
        text=text,
        code=code,
        purpose=purpose,
        code_length=length,
        ttl=app_settings.CODE_LIFETIME,
        username=username,
        channel=channel,
    )
    kept = text if caps.delivers_text else ""
    try:
        result = provider.send(sms)
    except ProviderError as err:
        message = _failed_message(err, alias=alias, phone=e164, text=kept, channel=channel)
        _send_signal(signals.message_failed, sender=Message, message=message, error=err)
        raise
    message = _sent_message(result, alias=alias, phone=e164, text=kept, channel=channel)
    _send_signal(signals.message_sent, sender=Message, message=message)
    return message


# -------------------------------------------------------------------- internals


# ------------------------------------------------------------ abuse defences


def _destination(e164: str) -> tuple[str, str]:
    """The region (for ``ALLOWED_REGIONS`` and the country cap) and the number
    prefix (for the pumping breaker) of ``e164``."""
    return region_of(e164) or "ZZ", ratelimit.number_prefix(e164)


#: Who can spend a send, and so whose per-phone budget it comes out of
#: (``_sender``). Someone who knows only a number can spend the anonymous
#: budget and nothing else: the owner's login SMS come out of a budget only
#: the password opens.
ANONYMOUS, PASSWORD, ACCOUNT = "anonymous", "password", "account"


def _sender(purpose: str | None, user: Any) -> str:
    """``anonymous``: anyone who can type the number (passwordless, a
    ``verify_phone`` without a session); ``password``: a login code after a
    correct password; ``account``: a logged-in user's own phone enrolment."""
    if purpose == Purpose.PASSWORDLESS or getattr(user, "pk", None) is None:
        return ANONYMOUS
    if purpose == Purpose.LOGIN:
        return PASSWORD
    return ACCOUNT


def _to_confirmed_device(e164: str, device: PhoneDevice | None) -> bool:
    return device is not None and device.confirmed and device.number == e164


def _lock_subject(phone: str, user_id: Any, *, purpose: str) -> str:
    """Whose failure count a wrong code for a ``purpose`` challenge adds to.

    Per account (``user:<pk>``) only where a password or a session stands
    behind the challenge: a ``login`` code (sent after the right password)
    and the codes of a logged-in user (``verify_phone``, ``change_phone``
    with a user). Everything else — passwordless codes, anonymous
    ``verify_phone`` — counts per number (``phone:<e164>``), the same whether
    or not the number has an account. So failures without a password never
    lock the owner's password-then-code login, and the lock of a number
    answers alike for every number.

    ``purpose`` is keyword-only and required: which subject counts depends on it.
    """
    if user_id is not None and purpose != Purpose.PASSWORDLESS:
        return f"user:{user_id}"
    return f"phone:{phone}"


def _guard_send(
    e164: str,
    *,
    user: Any,
    client: ClientInfo,
    count: bool,
    purpose: str | None = None,
    device: PhoneDevice | None = None,
    pump: bool = False,
    channel: str = SMS,
) -> ratelimit.SendTicket:
    """Refuse a send before anything is written or any provider is called.

    Every limit below is one call, :func:`ratelimit.guard_send` (one round
    trip on Redis), which takes all or nothing.

    What is counted where:

    * per phone, in three budgets of the same rates, by who can spend them
      (:func:`_sender`): anonymous sends (passwordless, ``verify_phone``
      without a session), login codes after a correct password, and a
      logged-in user's own enrolment sends. Someone who knows only the number
      can use up the first and never the owner's login SMS;
    * per user: login and enrolment sends (anonymous ones are counted per
      phone only, so a stranger cannot spend an account's budget either);
    * per IP, per country and for the whole site: every send, the login SMS
      included — those are what bound the cost of a site, whoever asks;
    * the pumping breaker refuses every send to a suspended prefix except a
      login code to a confirmed device (whose owner has proved the number).

    :param count: whether this send counts against the limits (a decoy for an
        unknown number counts too — limits must not tell numbers apart — but a
        test number does not).
    :param pump: count this send towards the pumping breaker now, in the same
        round trip (the SMS goes out right after; :func:`_deliver` gives the
        count back if no provider takes it). Sends made later — on commit, by
        a task worker — are counted once sent instead.
    :returns: what was taken, with the breaker's count and whether it tripped.
    :raises NumberNotAllowed, VerificationLocked, DestinationSuspended, RateLimited:
    """
    region, prefix = _destination(e164)
    user_id = getattr(user, "pk", None)
    sender = _sender(purpose, user)
    confirmed = _to_confirmed_device(e164, device)
    now = time.time()  # one clock for every window, the breaker's included
    try:
        allowed = app_settings.ALLOWED_REGIONS
        if allowed is not None and region not in allowed:
            raise NumberNotAllowed(limit="region")
        if number_type_of(e164) not in app_settings.ALLOWED_NUMBER_TYPES:
            raise NumberNotAllowed(limit="number_type")
        # Per phone and per user, each channel has its own counts: a call
        # after an SMS that never came is not held back by the SMS's cooldown,
        # and calls have a budget of their own. Per IP, country and site,
        # every send counts together.
        per_channel = "" if channel == SMS else f"{channel}:"
        subjects = [
            ("phone", f"{sender}:{per_channel}{e164}"),
            ("ip", limit_key(client.ip)),  # None without an address
            (
                "user",
                f"{per_channel}{user_id}" if sender != ANONYMOUS and user_id is not None else None,
            ),
            ("country", region),
            ("global", "all"),
        ]
        takes = [(scope, str(subject)) for scope, subject in subjects if subject is not None]
        ticket = ratelimit.guard_send(
            lock_subject=_lock_subject(e164, user_id, purpose=purpose),
            # A confirmed phone's login code is never refused by the breaker:
            # pumping is sends to numbers nobody proved, and refusing this one
            # would let the breaker be aimed at real users of a prefix.
            breaker_prefix=None if sender == PASSWORD and confirmed else prefix,
            takes=takes if count else [],
            pump=ratelimit.PumpCount(e164, prefix, confirmed, now) if pump else None,
            now=now,
        )
    except (RateLimited, NumberNotAllowed) as err:  # the lockout and the breaker too
        _record_refusal(err, phone=e164, user_id=user_id, ip=client.ip)
        raise
    if ticket.tripped:
        _announce_trip(prefix)
    return ticket


def _as_decoy_if_undeliverable(challenge: Challenge) -> None:
    """Turn a passwordless challenge whose SMS no provider took into a decoy.

    Its caller was answered as for any number (``login_flows.start_passwordless``);
    what comes next must not tell either: "challenge undeliverable" on verify,
    resend or cancel would say the number has an account, where a decoy
    counts wrong codes down to ``too_many_attempts``. So on its first verify,
    resend or cancel it becomes a decoy in every field that decides an answer
    — pending, never sent (a resend stays silent), armed with a hash no code
    can match — and from then on takes the decoy's own paths. The audit keeps
    what happened: its messages record the provider's refusal.
    """
    if not (
        challenge.purpose == Purpose.PASSWORDLESS
        and challenge.status == ChallengeStatus.UNDELIVERABLE
    ):
        return
    fields: dict[str, Any] = {"status": ChallengeStatus.PENDING, "closed_at": None, "sends": 0}
    if challenge.checked_by == CheckedBy.LOCAL:
        # Not a code: submitted codes are digits, so nothing ever matches.
        fields["code_hash"] = _hash_for(challenge, uuid.uuid4().hex)
    converted = Challenge.objects.filter(
        pk=challenge.pk, status=ChallengeStatus.UNDELIVERABLE
    ).update(**fields)
    if converted:
        for name, value in fields.items():
            setattr(challenge, name, value)
        logger.info("sms2fa: undeliverable challenge %s answers as a decoy", challenge.pk)
    else:  # converted (or closed) by a concurrent request: take its state
        challenge.refresh_from_db(fields=["status", "closed_at", "sends", "code_hash"])


def _give_back_attempt(challenge: Challenge) -> None:
    """Return an attempt taken by a guess that was refused before its verdict."""
    Challenge.objects.filter(pk=challenge.pk, attempts__gt=0).update(attempts=F("attempts") - 1)
    challenge.attempts -= 1


def _ensure_not_locked(subject: str, *, phone: str, user_id: Any) -> None:
    """Refuse a guess while the lock of ``subject`` runs, before it takes an
    attempt (one read of the limits cache)."""
    state = ratelimit.lock_state(subject)
    if state.locked_for:
        err = VerificationLocked(limit="lockout", retry_after=state.locked_for)
        _record_refusal(err, phone=phone, user_id=user_id, ip=None)
        raise err


#: django-otp's record of when a device last proved a login is written at
#: most this often: a login a moment after another leaves it (one statement
#: and one commit less per login).
DEVICE_USE_PRECISION = timedelta(seconds=60)


def _device_use_due(challenge: Challenge, now: datetime) -> bool:
    if challenge.device_id is None:
        return False
    device = challenge.device  # loaded with the challenge
    last = device.last_used_at if device is not None else None
    return last is None or not (timedelta(0) <= now - last < DEVICE_USE_PRECISION)


def _touch_device(challenge: Challenge, now: datetime) -> None:
    PhoneDevice.objects.filter(pk=challenge.device_id).update(last_used_at=now)
    if challenge.device is not None:
        challenge.device.last_used_at = now


def _record_refusal(err: Sms2faError, *, phone: str, user_id: Any, ip: str | None) -> None:
    retry_after = err.context.get("retry_after")
    if retry_after is not None:
        # The settings are bounded (conf.py), but the column is 32-bit: a
        # refusal must be recorded whatever a limiter computed.
        retry_after = min(max(int(retry_after), 0), MAX_RETRY_AFTER)
    Refusal.objects.create(
        created_at=timezone.now(),
        reason=err.code,
        limit=str(err.context.get("limit", ""))[:16],
        phone=phone,
        user_id=user_id,
        client_ip=ip,
        retry_after=retry_after,
    )
    logger.info(
        "sms2fa: refused %s for %s (%s, retry after %s s)",
        err.code,
        mask_phone(phone),
        err.context.get("limit", ""),
        retry_after,
    )


def _pump_count(challenge: Challenge) -> ratelimit.PumpCount:
    """The breaker's view of this challenge's send (or verification)."""
    _region, prefix = _destination(challenge.phone)
    return ratelimit.PumpCount(
        challenge.phone,
        prefix,
        _to_confirmed_device(challenge.phone, challenge.device),
        challenge.created_at.timestamp(),
    )


def _count_for_pumping(challenge: Challenge) -> None:
    """Count a send towards the breaker, unless it went to a proved number
    (whose mark is refreshed instead: the numbers of confirmed devices become
    known through their logins, also those confirmed before the mark existed)."""
    pump = _pump_count(challenge)
    if ratelimit.count_pump_send(pump):
        _announce_trip(pump.prefix)


def _announce_trip(prefix: str) -> None:
    suspended_for = app_settings.PUMPING["SUSPEND_FOR"]
    logger.warning(
        "sms2fa: SMS-pumping breaker tripped for prefix %s: too few codes to never-"
        "verified numbers are verified; sending there is suspended for %s s",
        prefix,
        suspended_for,
    )
    _send_signal(
        signals.pumping_suspected,
        sender=Message,
        scope="prefix",
        value=prefix,
        suspended_for=suspended_for,
    )


def _valid_purpose(purpose: str) -> str:
    if purpose not in Purpose.values:
        raise ValueError(f"purpose must be one of {Purpose.values}, not {purpose!r}")
    return str(purpose)


def _provider_chain(e164: str, channel: str = SMS) -> list[tuple[str, BaseProvider]]:
    """The routed provider first, then the fallbacks, each once — those that
    reach the phone on ``channel``.

    :raises ChannelUnavailable: none of them does (never for ``sms``, which
        every provider offers).
    """
    first = app_settings.ROUTES.get(region_of(e164) or "", "default")
    aliases = list(dict.fromkeys([first, *app_settings.FALLBACKS]))
    chain = [(alias, get_provider(alias)) for alias in aliases]
    if channel == SMS:
        return chain
    chain = [(alias, p) for alias, p in chain if channel in p.capabilities.channels]
    if not chain:
        raise ChannelUnavailable(channel=channel)
    return chain


def channels_for(phone: str) -> list[str]:
    """The channels a code can take to ``phone`` (E.164) on its route, ``sms``
    first: what the pages and the API offer ("call me instead")."""
    first = app_settings.ROUTES.get(region_of(phone) or "", "default")
    found: set[str] = {SMS}
    for alias in dict.fromkeys([first, *app_settings.FALLBACKS]):
        found |= get_provider(alias).capabilities.channels
    return [channel for channel in CHANNELS if channel in found]


def _valid_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
    return str(channel)


def _arm(challenge: Challenge, alias: str, provider: BaseProvider) -> str:
    """Choose how ``provider`` will prove this challenge and set the fields.

    Sets ``code_hash``, ``checked_by`` and ``provider`` on the (unsaved)
    challenge and returns the code we made, or ``""`` when the provider makes
    it. The strongest mode wins: our own code, checked here; then a code the
    provider returns (hashed on arrival); provider-side checking last.
    """
    caps = provider.capabilities
    length = app_settings.CODE_LENGTH
    challenge.provider = alias
    challenge.checked_by = CheckedBy.LOCAL
    challenge.code_hash = ""
    if caps.takes_our_code(length):
        code = generate_code(length)
        challenge.code_hash = _hash_for(challenge, code)
        return code
    if caps.returns_code:
        return ""
    if caps.verifies_code:
        challenge.checked_by = CheckedBy.PROVIDER
        return ""
    raise Sms2faConfigurationError(
        f"SMS provider {alias!r} can neither take a {length}-digit code nor make one.",
        check_id="sms2fa.E002",
    )


def _hash_for(challenge: Challenge, code: str) -> str:
    return hash_code(
        code,
        challenge_id=challenge.pk,
        purpose=challenge.purpose,
        phone=challenge.phone,
        user_id=challenge.user_id,
    )


def _code_is_right(challenge: Challenge, code: str) -> bool:
    if challenge.checked_by == CheckedBy.PROVIDER and not challenge.sends:
        # A decoy (passwordless, a number without an account): no provider
        # ever sent it a code, so none can be right — answered as a wrong
        # code, as for a real challenge, never as a provider error.
        return False
    if challenge.checked_by == CheckedBy.PROVIDER:
        # The provider keeps the code; our attempt limit, expiry and single use
        # still applied above. Autocommit here: no transaction is open. The
        # provider may hold several live codes for one phone (iP1 keeps up to
        # five), so the check names the SMS this challenge sent last: a code
        # from another challenge must not pass.
        message_id = (
            Message.objects.filter(challenge=challenge, provider=challenge.provider)
            .exclude(provider_message_id="")
            .order_by("-id")
            .values_list("provider_message_id", flat=True)
            .first()
        )
        return get_provider(challenge.provider).check_code(
            phone=challenge.phone, code=code, message_id=message_id or ""
        )
    return code_matches(
        code,
        challenge.code_hash,
        challenge_id=challenge.pk,
        purpose=challenge.purpose,
        phone=challenge.phone,
        user_id=challenge.user_id,
    )


def _count_wrong(challenge: Challenge, now: datetime) -> None:
    """Record a wrong guess; the guess that uses up the last attempt closes the challenge.

    Two statements, so that exactly one concurrent caller sees its close
    succeed (and sends the signal once).
    """
    Challenge.objects.filter(pk=challenge.pk, status=ChallengeStatus.PENDING).update(
        wrong_attempts=F("wrong_attempts") + 1
    )
    challenge.wrong_attempts += 1
    _close(challenge, ChallengeStatus.FAILED, now, only_if_exhausted=True)


def _in_real_transaction() -> bool:
    # The atomic blocks Django's TestCase opens around each test do not count:
    # they are not the caller's transaction.
    conn = transaction.get_connection()
    return any(not getattr(block, "_from_testcase", False) for block in conn.atomic_blocks)


def _deliver_now_or_on_commit(
    challenge: Challenge, chain: list[tuple[str, BaseProvider]], code: str, language: str | None
) -> None:
    if not _in_real_transaction():
        _deliver(challenge, chain, code, language)
        return
    language = language or translation.get_language()

    def deliver_after_commit() -> None:
        try:
            _deliver(challenge, chain, code, language)
        except DeliveryFailed:
            # Nobody is waiting for an answer any more; the challenge is already
            # marked undeliverable and the messages record why.
            logger.warning("sms2fa: challenge %s could not be delivered", challenge.pk)

    transaction.on_commit(deliver_after_commit)


def _enqueue_send(challenge: Challenge, language: str | None) -> None:
    """Queue the send of a ``queued`` challenge on the task backend, after commit.

    The task gets identifiers only (task arguments are stored in the queue):
    the challenge id, the moment it was queued and the language.
    """
    # The one place the flows reach an edge: the task is how the send leaves
    # this process. Imported here, so SEND_VIA_TASKS off needs no task framework.
    from . import tasks

    args = (str(challenge.pk), challenge.last_sent_at.isoformat(), language or "")

    def enqueue() -> None:
        try:
            tasks.send_challenge_sms.using(backend=app_settings.TASK_BACKEND).enqueue(*args)
        except Exception as err:
            # The backend is down (database, Redis): nothing will ever send
            # this code, so say so now rather than leave it queued.
            logger.error(
                "sms2fa: challenge %s could not be queued (%s)", challenge.pk, type(err).__name__
            )
            _close(challenge, ChallengeStatus.UNDELIVERABLE, timezone.now())
            if not challenge.sends:
                # A decoy: its caller answers as for a real number whose SMS
                # failed (login_flows.start_passwordless), so no error here.
                return
            raise DeliveryFailed(challenge_id=str(challenge.pk)) from err

    if not _in_real_transaction():
        enqueue()
        return

    def enqueue_after_commit() -> None:
        # The worker must never look for a row the caller's transaction has
        # not committed (or rolled back).
        try:
            enqueue()
        except DeliveryFailed:
            pass  # logged above; the challenge is undeliverable

    transaction.on_commit(enqueue_after_commit)


class _Unsaved:
    """What a delivery did to a challenge that is not in the database yet
    (:func:`_send_then_save`): its messages and the signals that announce them,
    written and sent once the providers have answered."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.announcements: list[tuple[Signal, type, dict[str, Any]]] = []

    def announce(self, signal: Signal, sender: type = Challenge, **kwargs: Any) -> None:
        self.announcements.append((signal, sender, kwargs))


@sensitive_variables()
def _send_then_save(
    challenge: Challenge,
    chain: list[tuple[str, BaseProvider]],
    code: str,
    language: str | None,
    ticket: ratelimit.SendTicket,
) -> None:
    """Send first, then write the challenge with its messages in one transaction.

    One commit for the whole request instead of two (the challenge, then its
    message), and no transaction open across the provider call. The row is
    written whatever the delivery did — sent, refused by every provider,
    interrupted by an error — so the audit keeps every challenge and every
    SMS a provider answered for. (The code is in memory only meanwhile: a
    process killed between the provider's answer and this write leaves an
    SMS whose code matches nothing; the log line "requested" names it.)
    """
    unsaved = _Unsaved()
    error: BaseException | None = None
    try:
        _deliver(challenge, chain, code, language, unsaved=unsaved)
    except BaseException as err:  # written first, raised after
        error = err
    try:
        # No savepoint: this runs only outside the caller's transactions (a
        # test's own atomic block aside), where the block is the transaction.
        with transaction.atomic(savepoint=False):
            challenge.save(force_insert=True)
            for message in unsaved.messages:
                message.save(force_insert=True)
    except Exception as db_error:
        logger.error(
            "sms2fa: challenge %s could not be saved after its send (%s)",
            challenge.pk,
            type(db_error).__name__,
        )
        raise
    if ticket.pump is not None and not any(m.status != FAILED for m in unsaved.messages):
        # No provider took (or may have taken) the SMS: it was never sent.
        ratelimit.undo_pump_send(ticket.pump)
    receiver_error: BaseException | None = None
    for signal, sender, kwargs in [
        (signals.challenge_requested, Challenge, {"challenge": challenge}),
        *unsaved.announcements,
    ]:
        try:
            _send_signal(signal, sender=sender, **kwargs)
        except Exception as err:
            receiver_error = receiver_error or err
    if error is not None:
        raise error
    if receiver_error is not None:
        raise receiver_error


@sensitive_variables()
def _deliver(
    challenge: Challenge,
    chain: list[tuple[str, BaseProvider]],
    code: str,
    language: str | None,
    *,
    unsaved: _Unsaved | None = None,
) -> None:
    """Hand the code to the chain's providers in turn until one surely takes it.

    The failover rule (docs/failover.md), in one place:

    * a provider that surely did not send (refused before processing, no
      connection, 429/502/503; a refusal about the provider itself, such as
      its credentials) is followed by the next fallback, re-armed for it;
    * an uncertain outcome (500/504, a read timeout or a connection dropped
      after the request left, an answer we cannot read) is followed by the
      next fallback **with the same code** where we made the code and check
      it here — a double delivery then carries one code, and costs one extra
      SMS at most. Where the provider made or checks the code, nothing more
      is sent: a second provider's code would differ from the one that may be
      on its way;
    * a refusal of the message itself (a bad number) ends the chain: any
      other provider would refuse it too.

    When no provider surely took the code but one may have, the challenge
    stays pending with ``delivery_uncertain`` set: the edges tell the user
    the code may be delayed, and a resend is allowed at once. When none took
    it, the challenge is closed ``undeliverable`` and :class:`DeliveryFailed`
    raised.

    With ``unsaved``, the challenge is not in the database yet: what happens
    to it is kept in memory and in ``unsaved`` for :func:`_send_then_save`."""
    last_error: Exception | None = None
    length = app_settings.CODE_LENGTH
    uncertain = False  # a provider may hold the current code
    chain = _serviceable(chain, chain[0][1], challenge.channel)
    for index, (alias, provider) in enumerate(chain):
        if index > 0 and uncertain:
            # Only the same code may follow a code that may be on its way.
            if not (code and provider.capabilities.takes_our_code(length)):
                continue
            logger.info(
                "sms2fa: challenge %s fails over to %s with the same code", challenge.pk, alias
            )
        elif index > 0:
            # Failover after a sure failure: the next provider may work in
            # another mode, so the challenge is re-armed with its code (and
            # the old one dropped).
            previous_hash = challenge.code_hash
            code = _arm(challenge, alias, provider)
            if unsaved is None:
                rearmed = Challenge.objects.filter(
                    pk=challenge.pk, status=ChallengeStatus.PENDING, code_hash=previous_hash
                ).update(
                    code_hash=challenge.code_hash, checked_by=challenge.checked_by, provider=alias
                )
                if not rearmed:
                    return  # closed or resent meanwhile: nothing more to send
        text, masked = _render(challenge, code, language)
        sms = OutgoingSms(
            to=challenge.phone,
            text=text,
            code=code,
            purpose=challenge.purpose,
            reference=str(challenge.pk),
            language=language or "",
            code_length=length,
            ttl=max(int((challenge.expires_at - timezone.now()).total_seconds()), 1),
            username=challenge.user.get_username() if challenge.user_id else "",
            channel=challenge.channel,
        )
        text_kept = masked if provider.capabilities.delivers_text and code else ""
        try:
            result = provider.send(sms)
        except ProviderError as err:
            last_error = err
            _record_failure(challenge, alias, err, text_kept, unsaved)
            if err.provider_limit == "send":
                # The provider's own per-number limit (Twilio Verify 60203):
                # told as this app's rate limit, not as a failure.
                break
            if err.may_have_sent:
                if code and challenge.checked_by == CheckedBy.LOCAL:
                    uncertain = True
                    continue  # the same code to the next provider that takes it
                if challenge.checked_by == CheckedBy.PROVIDER:
                    uncertain = True  # the provider's code may be on its way
                # A code the provider was to return is lost with its answer:
                # nothing can check it, so the challenge is undeliverable.
                break
            if not (isinstance(err, ProviderUnavailable) or getattr(err, "failover", False)):
                # A refusal of the message itself (bad number) would only be
                # refused again elsewhere. Transient failures, and refusals
                # about the provider (credentials, quota), go to the fallbacks.
                break
            continue
        except Sms2faConfigurationError:
            # A broken setting found only at send time (a provider option that
            # is read lazily): close the challenge, then let it surface loudly.
            _close(challenge, ChallengeStatus.UNDELIVERABLE, timezone.now(), unsaved=unsaved)
            raise
        except Exception as err:  # a bug or an unwrapped transport error
            last_error = err
            logger.error(
                "sms2fa: provider %s raised %s for challenge %s",
                alias,
                type(err).__name__,
                challenge.pk,
            )
            _record_failure(challenge, alias, err, text_kept, unsaved)
            continue
        _record_success(challenge, alias, result, text_kept, unsaved)
        if unsaved is None:  # else counted with the limits (_guard_send)
            _count_for_pumping(challenge)
        return
    if uncertain:
        _mark_uncertain(challenge, unsaved)
        return
    _close(challenge, ChallengeStatus.UNDELIVERABLE, timezone.now(), unsaved=unsaved)
    if isinstance(last_error, ProviderError) and last_error.provider_limit == "send":
        raise ProviderLimited(
            challenge_id=str(challenge.pk),
            retry_after=int(last_error.context.get("retry_after") or app_settings.RESEND_INTERVAL),
        ) from last_error
    raise DeliveryFailed(challenge_id=str(challenge.pk)) from last_error


def _mark_uncertain(challenge: Challenge, unsaved: _Unsaved | None) -> None:
    """No provider surely took the code, but one may have: say so on the row."""
    challenge.delivery_uncertain = True
    logger.warning(
        "sms2fa: challenge %s: delivery uncertain (a provider may have sent the code)",
        challenge.pk,
    )
    if unsaved is None:
        Challenge.objects.filter(
            pk=challenge.pk, status=ChallengeStatus.PENDING, last_sent_at=challenge.last_sent_at
        ).update(delivery_uncertain=True)


def _serviceable(
    chain: list[tuple[str, BaseProvider]], first: BaseProvider, channel: str = SMS
) -> list[tuple[str, BaseProvider]]:
    """The chain without fallbacks that cannot serve a challenge armed for ``first``.

    A challenge that only the provider can check (iP1) is never handed to a
    provider that cannot check codes itself; otherwise any provider that can
    get a code to the phone (ours or its own) will do — on the challenge's
    channel.
    """
    length = app_settings.CODE_LENGTH
    first_caps = first.capabilities
    provider_checked = not (first_caps.takes_our_code(length) or first_caps.returns_code)

    def serves(provider: BaseProvider) -> bool:
        caps = provider.capabilities
        if channel not in caps.channels:
            return False
        if provider_checked:
            return caps.verifies_code and not (caps.takes_our_code(length) or caps.returns_code)
        return caps.takes_our_code(length) or caps.returns_code

    return [chain[0], *[(alias, p) for alias, p in chain[1:] if serves(p)]]


def _language_for(user: Any) -> str | None:
    """The SMS language: the adapter's choice for ``user``, else the active one.

    Resolved here, in the request: a send deferred past the commit (or to a
    task worker) has no request language of its own.
    """
    from .adapter import get_adapter

    chosen = get_adapter().get_language(user) if user is not None else None
    return chosen or translation.get_language()


def _render(challenge: Challenge, code: str, language: str | None) -> tuple[str, str]:
    """The SMS text with the code, and the same text with the code masked."""
    return render_code_text(code, purpose=challenge.purpose, language=language)


def render_code_text(
    code: str, *, purpose: str, language: str | None, lifetime: int | None = None
) -> tuple[str, str]:
    """``SMS_TEMPLATE`` around ``code``: the text to send, and the same text
    with the code masked (for the audit). ``lifetime`` (seconds, default
    ``CODE_LIFETIME``) is what the text says the code lasts; a code made by
    another package (:mod:`django_sms2fa.foreign`) lasts as long as it says."""
    if not code:
        return "", ""
    webotp_domain = app_settings.WEBOTP_DOMAIN
    context = {
        "code": _CODE_SLOT,
        "purpose": purpose,
        "minutes": math.ceil((lifetime or app_settings.CODE_LIFETIME) / 60),
        "webotp_domain": webotp_domain,
    }
    with translation.override(language or translation.get_language()):
        template = render_to_string(app_settings.SMS_TEMPLATE, context).strip()
    if webotp_domain:
        # WebOTP (https://wicg.github.io/sms-one-time-codes/): a last line
        # "@host #code" lets the browser on that host fill the code in. A
        # site's own SMS_TEMPLATE that leaves it out gets it appended.
        webotp_line = f"@{webotp_domain} #{_CODE_SLOT}"
        if template.splitlines()[-1:] != [webotp_line]:
            template = f"{template}\n\n{webotp_line}"
    return template.replace(_CODE_SLOT, code), template.replace(_CODE_SLOT, "•" * len(code))


def _record_success(
    challenge: Challenge,
    alias: str,
    result: SendResult,
    text: str,
    unsaved: _Unsaved | None = None,
) -> None:
    if result.returned_code and unsaved is not None:
        # Not in the database yet: the row goes in with the hash.
        challenge.code_hash = _hash_for(challenge, result.returned_code)
    elif result.returned_code:
        # The provider made the code: keep only its keyed hash — and only
        # where the challenge is still armed by this send (the hash it had
        # before the send, and this send's time). An answer that arrives after
        # a resend (or a failover) re-armed the challenge would otherwise
        # bring the old code back and kill the new one.
        armed = challenge.code_hash
        returned = _hash_for(challenge, result.returned_code)
        written = Challenge.objects.filter(
            pk=challenge.pk,
            status=ChallengeStatus.PENDING,
            code_hash=armed,
            last_sent_at=challenge.last_sent_at,
        ).update(code_hash=returned)
        if written:
            challenge.code_hash = returned
        else:
            logger.info(
                "sms2fa: the code returned for challenge %s came after it was re-armed or "
                "closed; dropped",
                challenge.pk,
            )
    message = _sent_message(
        result,
        alias=alias,
        phone=challenge.phone,
        text=text,
        challenge=challenge,
        save=unsaved is None,
    )
    logger.info(
        "sms2fa: challenge %s sent via %s (message %s)",
        challenge.pk,
        alias,
        message.provider_message_id,
    )
    _announce_message(unsaved, signals.message_sent, message)


def _record_failure(
    challenge: Challenge,
    alias: str,
    error: Exception,
    text: str,
    unsaved: _Unsaved | None = None,
) -> None:
    message = _failed_message(
        error,
        alias=alias,
        phone=challenge.phone,
        text=text,
        challenge=challenge,
        save=unsaved is None,
    )
    logger.warning(
        "sms2fa: provider %s did not take challenge %s (%s)",
        alias,
        challenge.pk,
        message.error_code,
    )
    _announce_message(unsaved, signals.message_failed, message, error=error)


def _announce_message(
    unsaved: _Unsaved | None, signal: Signal, message: Message, **kwargs: Any
) -> None:
    """Send ``signal`` for a saved message now, or keep an unsaved one (with
    its signal) for :func:`_send_then_save`."""
    if unsaved is None:
        _send_signal(signal, sender=Message, message=message, **kwargs)
        return
    unsaved.messages.append(message)
    unsaved.announce(signal, sender=Message, message=message, **kwargs)


def _sent_message(
    result: SendResult,
    *,
    alias: str,
    phone: str,
    text: str,
    challenge: Challenge | None = None,
    save: bool = True,
    channel: str = SMS,
) -> Message:
    """The audit row of an SMS a provider took (saved unless ``save`` is false)."""
    now = timezone.now()
    return _message(
        save,
        challenge=challenge,
        phone=phone,
        provider=alias,
        channel=challenge.channel if challenge is not None else channel,
        provider_message_id=str(result.message_id)[:128],
        status=result.status,
        provider_status=str(result.provider_status)[:64],
        text_masked=text,
        created_at=now,
        sent_at=now,
        latency_ms=result.latency_ms,
    )


def _failed_message(
    error: Exception,
    *,
    alias: str,
    phone: str,
    text: str,
    challenge: Challenge | None = None,
    save: bool = True,
    channel: str = SMS,
) -> Message:
    """The audit row of an SMS a provider did not take (or may have taken)."""
    if isinstance(error, ProviderError):
        # Scrubbed on the error itself too, so that message_failed receivers
        # and whatever logs the error later see only the clean text.
        error.provider_text = _audit_safe(error.provider_text, challenge)
        error.provider_code = _audit_safe(error.provider_code, challenge)[:64]
        code, detail = error.provider_code or error.code, error.provider_text
        status = UNKNOWN if error.may_have_sent else FAILED
    else:
        # Unexpected exception text may hold anything (URLs with tokens): keep
        # only its class name.
        code, detail, status = type(error).__name__, "", FAILED
    return _message(
        save,
        challenge=challenge,
        phone=phone,
        provider=alias,
        channel=challenge.channel if challenge is not None else channel,
        status=status,
        error_code=code[:64],
        error_text=detail[:500],
        text_masked=text,
        created_at=timezone.now(),
    )


def _message(save: bool, **fields: Any) -> Message:
    message = Message(**fields)
    if save:
        message.save(force_insert=True)
    return message


def _audit_safe(text: str, challenge: Challenge | None) -> str:
    """A provider's text as the audit may keep it: no code, no credential.

    Every provider's error text passes here, whatever its module already
    blanked: a provider that echoes our request (the SMS text, a key in the
    body) must not put a live code where a staff member who may only view
    messages can read it and finish a passwordless login. Digit runs as long
    as our codes are masked in any spelling; shorter ones (a provider's own
    4-digit code) when they are this challenge's live code.
    """
    from .providers.http import secret_registry
    from .providers.redaction import scrub_provider_text

    is_live = None
    if challenge is not None and challenge.code_hash:
        stored = challenge.code_hash

        def is_live(candidate: str) -> bool:
            return code_matches(
                candidate,
                stored,
                challenge_id=challenge.pk,
                purpose=challenge.purpose,
                phone=challenge.phone,
                user_id=challenge.user_id,
            )

    return scrub_provider_text(text, redact=secret_registry.redact, is_live=is_live)[:500]


def _load(
    challenge_id: Any,
    *,
    user: Any = None,
    purpose: str | Iterable[str] | None = None,
    with_user: bool = False,
    accept: Accept | None = None,
) -> Challenge:
    try:
        pk = challenge_id if isinstance(challenge_id, uuid.UUID) else uuid.UUID(str(challenge_id))
    except (ValueError, TypeError, AttributeError) as err:
        raise ChallengeNotFound() from err
    query = Challenge.objects
    if with_user:
        # The device always comes along (the breaker and the device's last
        # use read it); the user too, unless the caller gave it — then the
        # caller's object is attached below, and the JOIN is one table shorter.
        query = query.select_related("device", *(("user",) if user is None else ()))
    # By primary key: at most one row, so neither ORDER BY nor LIMIT (.first()
    # would add both, and the ORM would build them on every call).
    challenge = next(iter(query.filter(pk=pk)), None)
    if challenge is None:
        raise ChallengeNotFound()
    if user is not None:
        if challenge.user_id != getattr(user, "pk", None):
            raise ChallengeNotFound()
        if with_user:
            challenge.user = user
    if purpose is not None:
        allowed = {purpose} if isinstance(purpose, str) else set(purpose)
        if challenge.purpose not in allowed:
            raise ChallengeNotFound()
    if accept is not None:
        accept(challenge)
    return challenge


def _closed_error(challenge: Challenge) -> Sms2faError:
    return _CLOSED_ERRORS.get(challenge.status, ChallengeNotFound)(challenge_id=str(challenge.pk))


def _ensure_open(challenge: Challenge, now: datetime) -> None:
    """Raise the right error unless ``challenge`` can take a guess now."""
    if not challenge.is_pending and challenge.status != ChallengeStatus.QUEUED:
        raise _closed_error(challenge)
    if challenge.expires_at <= now:
        _close(challenge, ChallengeStatus.EXPIRED, now)
        raise ChallengeExpired(challenge_id=str(challenge.pk))
    if challenge.status == ChallengeStatus.QUEUED:
        # Not sent yet: there is no code to compare, and no attempt is used.
        raise ChallengeQueued(challenge_id=str(challenge.pk))
    if challenge.attempts >= challenge.max_attempts:
        # Every attempt is taken. Do not close the challenge here: a right
        # answer admitted a moment ago may still be under evaluation.
        raise TooManyAttempts(challenge_id=str(challenge.pk))


def _close(
    challenge: Challenge,
    status: str,
    now: datetime,
    *,
    only_if_exhausted: bool = False,
    unsaved: _Unsaved | None = None,
) -> bool:
    """Move a pending (or queued) challenge to a closed ``status``; ``False`` if it was
    neither."""
    if unsaved is not None:  # not in the database yet (_send_then_save)
        challenge.status, challenge.closed_at = status, now
        logger.info("sms2fa: challenge %s closed (%s)", challenge.pk, status)
        unsaved.announce(signals.challenge_closed, challenge=challenge, reason=str(status))
        return True
    query = Challenge.objects.filter(
        pk=challenge.pk, status__in=(ChallengeStatus.PENDING, ChallengeStatus.QUEUED)
    )
    if only_if_exhausted:
        query = query.filter(wrong_attempts__gte=F("max_attempts"))
    if not query.update(status=status, closed_at=now):
        return False
    challenge.status, challenge.closed_at = status, now
    logger.info("sms2fa: challenge %s closed (%s)", challenge.pk, status)
    _send_signal(signals.challenge_closed, challenge=challenge, reason=str(status))
    return True


def _send_signal(signal: Signal, *, sender: type = Challenge, **kwargs: Any) -> None:
    """Send to every receiver; re-raise the first receiver error afterwards.

    One broken receiver must not keep the others (an audit hook, an alert)
    from hearing about the event.
    """
    errors = [
        response
        for _receiver, response in signal.send_robust(sender=sender, **kwargs)
        if isinstance(response, Exception)
    ]
    if errors:
        raise errors[0]
