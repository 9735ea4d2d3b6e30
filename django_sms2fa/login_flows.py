"""Logging in with a phone: password-then-code, passwordless, and phone proofs.

Like ``flows``, these take domain arguments and raise domain errors; the REST
and HTML edges keep the pending state in the session and log the user in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core import signing
from django.utils import timezone  # noqa: F401  (used by redeem_phone_token)
from django.views.decorators.debug import sensitive_variables

from . import flows, methods
from .adapter import get_adapter
from .conf import app_settings
from .exceptions import ChallengeNotFound, DeliveryFailed, InvalidPhoneToken, MethodUnavailable
from .models import Challenge, ChallengeStatus, PhoneDevice, Purpose
from .phones import normalize_phone
from .types import SMS, ClientInfo

PHONE_TOKEN_SALT = "django_sms2fa.phone_token"


def start_second_factor(user: Any, *, client: ClientInfo | None = None) -> Challenge | None:
    """After a correct password: send a login code, or ``None`` if the user has
    no confirmed phone (then the password alone decides)."""
    device = get_adapter().get_login_device(user)
    if device is None:
        return None
    return flows.request_challenge(
        phone=device.number, purpose=Purpose.LOGIN, user=user, device=device, client=client
    )


@dataclass(frozen=True)
class SecondFactorStep:
    """Where a login stands after the right password: the method being used,
    the others the user may switch to, and the phone's challenge (phone only)."""

    method: str
    methods: list[str] = field(default_factory=list)
    challenge: Challenge | None = None


def begin_second_factor(
    user: Any,
    *,
    method: str | None = None,
    client: ClientInfo | None = None,
    channel: str = SMS,
) -> SecondFactorStep | None:
    """After a correct password: start the second factor with ``method``, or
    with the user's default (the method used last, ``methods.user_methods``).

    For the phone a code is sent now; an authenticator app or a recovery code
    needs nothing sent. ``None`` when the user has no second factor at all
    (then the password alone decides).

    :raises MethodUnavailable: ``method`` is not one of the user's.
    """
    available = methods.user_methods(user)
    if not available:
        return None
    chosen = method or available[0]
    if chosen not in available:
        raise MethodUnavailable(method=chosen)
    challenge = None
    if chosen == methods.PHONE:
        device = get_adapter().get_login_device(user)
        if device is None:
            raise MethodUnavailable(method=chosen)
        challenge = flows.request_challenge(
            phone=device.number,
            purpose=Purpose.LOGIN,
            user=user,
            device=device,
            client=client,
            channel=channel,
        )
    return SecondFactorStep(chosen, available, challenge)


@sensitive_variables()
def finish_with_method(
    user: Any,
    method: str,
    code: Any,
    *,
    challenge_id: Any = None,
    client: ClientInfo | None = None,
) -> Any:
    """Check the second factor of ``method``; returns the django-otp device
    that proved it (for ``django_otp.login``). Every method counts against
    the same wrong-code lockout of the account.

    :raises MethodUnavailable: the user has no such method.
    :raises IncorrectCode: a wrong code (likewise :exc:`InvalidCode`,
        :exc:`VerificationLocked`); for the phone, every error of
        :func:`~django_sms2fa.flows.verify_challenge`.
    """
    if method == methods.PHONE:
        return finish_second_factor(challenge_id, code, user=user)
    return methods.check_code(user, method, code, client=client)


@sensitive_variables()
def finish_second_factor(challenge_id: Any, code: Any, *, user: Any) -> PhoneDevice:
    """Check the login code; returns the device that proved it (for ``django_otp.login``)."""
    challenge = flows.verify_challenge(challenge_id, code, user=user, purpose=Purpose.LOGIN)
    device = challenge.device or get_adapter().get_login_device(user)
    if device is None:  # the phone was removed between password and code
        raise ChallengeNotFound()
    return device


def start_passwordless(
    phone: str,
    *,
    client: ClientInfo | None = None,
    language: str | None = None,
    channel: str = SMS,
) -> Challenge:
    """Send a login code to ``phone`` if it belongs to an account.

    For a number without an account a decoy challenge is created and nothing
    is sent (or, with ``PASSWORDLESS_UNKNOWN_NUMBER = "notify"``, an SMS saying
    so): the caller's answer is the same either way, so it cannot be used to
    find out who has an account (OWASP ASVS 6.3.8).
    """
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    adapter = get_adapter()
    user = adapter.get_user_by_phone(e164)
    # Every number runs the same device look-up, with an account or not: the
    # statements of a request, and so its time, must not tell them apart. A
    # number is confirmed on one account only, so this reads one row at most.
    found = list(PhoneDevice.objects.filter(number=e164, confirmed=True)[:2])
    mine = [d for d in found if user is not None and d.user_id == user.pk]
    device = mine[0] if len(found) == 1 and mine else None
    if user is not None:
        try:
            return flows.request_challenge(
                phone=e164,
                purpose=Purpose.PASSWORDLESS,
                user=user,
                device=device,
                client=client,
                language=language,
                channel=channel,
            )
        except DeliveryFailed as err:
            # Answering 503 here and 202 for an unknown number would tell an
            # attacker which numbers have accounts whenever the provider is
            # down. The challenge is recorded as undeliverable; the caller
            # gets the same answer as for any other number.
            return Challenge.objects.get(pk=err.context["challenge_id"])
    challenge = flows.request_challenge(
        phone=e164, purpose=Purpose.PASSWORDLESS, client=client, deliver=False, channel=channel
    )
    if app_settings.PASSWORDLESS_UNKNOWN_NUMBER == "notify" and not app_settings.SEND_VIA_TASKS:
        # With SEND_VIA_TASKS the worker sends the notice when it takes the
        # decoy (flows.send_queued): sent here, the provider's latency would
        # be in the answers for numbers without an account only.
        flows.send_notice(phone=e164, text=adapter.unknown_number_text())
    return challenge


@sensitive_variables()
def finish_passwordless(challenge_id: Any, code: Any) -> tuple[Any, PhoneDevice | None]:
    """Check a passwordless code; returns the user to log in and the phone
    that proved it (for ``django_otp.login``).

    :raises ChallengeNotFound: the account is gone or inactive.
    """
    challenge = flows.verify_challenge(challenge_id, code, purpose=Purpose.PASSWORDLESS)
    return passwordless_login_of(challenge)


def passwordless_login_of(challenge: Challenge) -> tuple[Any, PhoneDevice | None]:
    """The user a verified passwordless ``challenge`` logs in, and the phone
    that proved it (see :func:`finish_passwordless`).

    :raises ChallengeNotFound: the account is gone or inactive.
    """
    if challenge.purpose != Purpose.PASSWORDLESS or challenge.status != ChallengeStatus.VERIFIED:
        raise ChallengeNotFound()
    user = challenge.user
    if user is None or not user.is_active:
        raise ChallengeNotFound()
    device = challenge.device
    if (
        device is None
        or not device.confirmed
        or device.user_id != user.pk
        or device.number != challenge.phone
    ):
        device = _confirmed_device(challenge.phone, user)
    return user, device


def _confirmed_device(e164: str, user: Any) -> PhoneDevice | None:
    """``user``'s confirmed device for the number, or ``None``.

    One row at most: (user, number) is unique, and a number is confirmed on
    one account only. Nothing is ever picked by row order.
    """
    devices = list(PhoneDevice.objects.filter(user=user, number=e164, confirmed=True)[:2])
    return devices[0] if len(devices) == 1 else None


def issue_phone_token(challenge: Challenge) -> str:
    """A signed, short-lived proof that ``challenge.phone`` was verified."""
    return signing.dumps({"c": str(challenge.pk), "p": challenge.phone}, salt=PHONE_TOKEN_SALT)


def redeem_phone_token(token: str, *, max_age: int | None = None) -> str:
    """Use a ``phone_token`` once; returns the verified phone (E.164).

    Registration code calls this when it creates the account::

        phone = redeem_phone_token(form.cleaned_data["phone_token"])
        device_flows.bind_verified_phone(user, phone)  # one account per number

    :raises InvalidPhoneToken: forged, expired (``PHONE_TOKEN_MAX_AGE``), or used.
    """
    try:
        data = signing.loads(
            str(token),
            salt=PHONE_TOKEN_SALT,
            max_age=max_age if max_age is not None else app_settings.PHONE_TOKEN_MAX_AGE,
        )
        challenge_id, phone = str(data["c"]), str(data["p"])
    except (signing.BadSignature, KeyError, TypeError) as err:
        raise InvalidPhoneToken() from err
    used = Challenge.objects.filter(
        pk=challenge_id,
        phone=phone,
        purpose=Purpose.VERIFY_PHONE,
        status=ChallengeStatus.VERIFIED,
        consumed_at__isnull=True,
    ).update(consumed_at=timezone.now())
    if not used:
        raise InvalidPhoneToken()
    return phone
