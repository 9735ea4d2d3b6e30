"""Codes that another package made, sent through this app's rules.

django-allauth and django-two-factor-auth make and check their own codes;
:func:`send_foreign_code` only carries such a code to the phone — with this
app's send limits, region and number-type rules, pumping breaker refusals,
providers, failover and audit (``contrib.allauth``, ``contrib.two_factor``).

No :class:`~django_sms2fa.models.Challenge` is made: the other package keeps
the code and checks it. Each provider tried leaves a
:class:`~django_sms2fa.models.Message` (``challenge`` empty, the code masked
in its text) and a ``message_sent`` / ``message_failed`` signal.

The failover rule of ``docs/failover.md`` holds, and is simpler here: the
code is the same for every provider, so after an uncertain send the next
provider gets the same code, as for our own codes. Providers that cannot carry
a caller's code are skipped — those that make or check their own (Twilio
Verify, Vonage Verify, iP1), and those that take only a code when this one is
too long or not digits.

Part of the flows layer: it reuses the private helpers of :mod:`.flows`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from . import flows, ratelimit, signals
from .codes import mask_code_in
from .conf import app_settings
from .exceptions import (
    DeliveryFailed,
    NumberNotAllowed,
    ProviderError,
    ProviderLimited,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from .models import Message, Purpose
from .phones import mask_phone, normalize_phone, number_type_of, region_of
from .providers.base import BaseProvider
from .types import SMS, ClientInfo, OutgoingSms

logger = logging.getLogger("django_sms2fa")


@sensitive_variables()
def send_foreign_code(
    *,
    phone: str,
    code: str,
    user: Any = None,
    purpose: str = Purpose.LOGIN,
    channel: str = SMS,
    client: ClientInfo | None = None,
    language: str | None = None,
    lifetime: int | None = None,
    deliver: bool = True,
) -> Message | None:
    """Send ``code`` (made by another package) to ``phone``.

    :param purpose: a :class:`~django_sms2fa.models.Purpose` value; with
        ``user`` it picks the per-phone budget the send comes out of, as for
        our own codes (``passwordless``: anyone who can type the number;
        ``login``: after a password; ``verify_phone``/``change_phone``: a
        signed-in user's own phone).
    :param lifetime: seconds the code lasts, for the SMS text (default
        ``CODE_LIFETIME``).
    :param deliver: ``False`` counts the send against the limits and sends
        nothing — the answer for a number without an account, so that the
        limits answer alike for every number.
    :returns: the :class:`Message` of the provider that took the code (status
        ``unknown`` when none surely took it but one may have: the code may be
        delayed), or ``None`` when nothing was sent now (``deliver=False``, or
        inside a transaction: the code goes once it commits).
    :raises InvalidPhone: not a phone number.
    :raises NumberNotAllowed, RateLimited: refused by the limits (recorded as a
        :class:`~django_sms2fa.models.Refusal`); nothing was sent.
    :raises ChannelUnavailable: no provider on the route offers ``channel``.
    :raises DeliveryFailed: no provider took it (:class:`ProviderLimited`: a
        provider's own limit for the number).
    """
    purpose = flows._valid_purpose(purpose)
    channel = flows._valid_channel(channel)
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    user = user if getattr(user, "pk", None) is not None else None
    chain = _carriers(flows._provider_chain(e164, channel), code, channel) if deliver else []
    if deliver and not chain:
        # Checked before anything is counted: the route decides, not the user.
        logger.error(
            "sms2fa: no provider on the route to %s can carry a code made elsewhere "
            "(providers that make or check their own codes cannot)",
            mask_phone(e164),
        )
        raise DeliveryFailed()
    # The pumping breaker is not fed: it learns a number is real when a code
    # is verified, and these codes are verified by the other package. A
    # suspended prefix still refuses them.
    ticket = flows._guard_send(
        e164, user=user, client=client or ClientInfo(), count=True, purpose=purpose, channel=channel
    )
    if not deliver:
        return None
    language = language or flows._language_for(user)
    text, masked = flows.render_code_text(
        code, purpose=purpose, language=language, lifetime=lifetime
    )
    masked = mask_code_in(masked, code)
    sms = OutgoingSms(
        to=e164,
        text=text,
        code=code,
        purpose=purpose,
        language=language or "",
        code_length=len(code),
        ttl=lifetime or app_settings.CODE_LIFETIME,
        username=user.get_username() if user is not None else "",
        channel=channel,
    )
    if flows._in_real_transaction():
        # Never a provider call inside the caller's transaction; the limits
        # have answered already.
        def send_after_commit() -> None:
            try:
                _deliver(chain, sms, masked, ticket, purpose)
            except DeliveryFailed:
                logger.warning("sms2fa: a code made elsewhere could not be delivered")

        transaction.on_commit(send_after_commit)
        return None
    return _deliver(chain, sms, masked, ticket, purpose)


def allowed_phone(phone: str) -> str:
    """``phone`` in E.164, if this site sends codes there (for a form to say so
    before anything is sent; :func:`send_foreign_code` checks again).

    The same two rules as the send limits' first step: ``ALLOWED_REGIONS`` and
    ``ALLOWED_NUMBER_TYPES``. Nothing is counted or recorded.

    :raises InvalidPhone, NumberNotAllowed:
    """
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    allowed = app_settings.ALLOWED_REGIONS
    if allowed is not None and (region_of(e164) or "ZZ") not in allowed:
        raise NumberNotAllowed(limit="region")
    if number_type_of(e164) not in app_settings.ALLOWED_NUMBER_TYPES:
        raise NumberNotAllowed(limit="number_type")
    return e164


def _carriers(
    chain: list[tuple[str, BaseProvider]], code: str, channel: str
) -> list[tuple[str, BaseProvider]]:
    """The providers of ``chain`` that can put ``code`` on the phone as it is."""

    def carries(provider: BaseProvider) -> bool:
        caps = provider.capabilities
        if channel not in caps.channels or not caps.takes_our_code(len(code)):
            return False
        # A provider that takes only a code writes its own text around it;
        # such fields are for digits (allauth's default codes are letters).
        return caps.delivers_text or (code.isascii() and code.isdigit())

    return [(alias, provider) for alias, provider in chain if carries(provider)]


@sensitive_variables()
def _deliver(
    chain: list[tuple[str, BaseProvider]],
    sms: OutgoingSms,
    masked: str,
    ticket: ratelimit.SendTicket,
    purpose: str,
) -> Message:
    """Hand ``sms`` to the providers in turn until one surely takes it."""
    last_error: Exception | None = None
    maybe: Message | None = None  # a provider may have sent it
    for alias, provider in chain:
        kept = masked if provider.capabilities.delivers_text else ""
        try:
            result = provider.send(sms)
        except ProviderError as err:
            last_error = err
            message = flows._failed_message(
                err, alias=alias, phone=sms.to, text=kept, channel=sms.channel
            )
            logger.warning(
                "sms2fa: provider %s did not take a code for %s (%s)",
                alias,
                mask_phone(sms.to),
                message.error_code,
            )
            flows._send_signal(signals.message_failed, sender=Message, message=message, error=err)
            if err.provider_limit == "send":
                break  # the provider's own limit for this number
            if err.may_have_sent:
                # The same code to the next provider: a double delivery
                # carries one code.
                maybe = maybe or message
                continue
            if not (isinstance(err, ProviderUnavailable) or getattr(err, "failover", False)):
                break  # the message itself was refused: so would it be elsewhere
            continue
        except Sms2faConfigurationError:
            raise
        except Exception as err:  # a bug or an unwrapped transport error
            last_error = err
            logger.error(
                "sms2fa: provider %s raised %s for a code to %s",
                alias,
                type(err).__name__,
                mask_phone(sms.to),
            )
            message = flows._failed_message(
                err, alias=alias, phone=sms.to, text=kept, channel=sms.channel
            )
            flows._send_signal(signals.message_failed, sender=Message, message=message, error=err)
            continue
        message = flows._sent_message(
            result, alias=alias, phone=sms.to, text=kept, channel=sms.channel
        )
        logger.info(
            "sms2fa: code made elsewhere sent to %s via %s (message %s)",
            mask_phone(sms.to),
            alias,
            message.provider_message_id,
        )
        flows._send_signal(signals.message_sent, sender=Message, message=message)
        return message
    _give_back_cooldowns(ticket, purpose)
    if maybe is not None:
        logger.warning("sms2fa: delivery to %s uncertain (it may be delayed)", mask_phone(sms.to))
        return maybe
    if isinstance(last_error, ProviderError) and last_error.provider_limit == "send":
        raise ProviderLimited(
            retry_after=int(last_error.context.get("retry_after") or app_settings.RESEND_INTERVAL)
        ) from last_error
    raise DeliveryFailed() from last_error


def _give_back_cooldowns(ticket: ratelimit.SendTicket, purpose: str) -> None:
    """As for our own codes (``flows._give_back_cooldowns``): a send that did
    not surely reach the phone gives its cooldowns back, so the user can ask
    again at once — except where anyone can ask (passwordless), whose
    refusals must be the same for every number."""
    if purpose == Purpose.PASSWORDLESS:
        return
    cooldowns = [hit for hit in ticket.hits if hit.cooldown]
    if cooldowns:
        ratelimit.give_back(cooldowns)
