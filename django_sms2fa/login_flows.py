"""Logging in with a phone: password-then-code, passwordless, and phone proofs.

Like ``flows``, these take domain arguments and raise domain errors; the REST
and HTML edges keep the pending state in the session and log the user in.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.utils import timezone  # noqa: F401  (used by redeem_phone_token)

from . import flows
from .adapter import get_adapter
from .conf import app_settings
from .exceptions import ChallengeNotFound, DeliveryFailed, InvalidPhoneToken
from .models import Challenge, ChallengeStatus, PhoneDevice, Purpose
from .phones import normalize_phone
from .types import ClientInfo

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


def finish_second_factor(challenge_id: Any, code: Any, *, user: Any) -> PhoneDevice:
    """Check the login code; returns the device that proved it (for ``django_otp.login``)."""
    challenge = flows.verify_challenge(challenge_id, code, user=user, purpose=Purpose.LOGIN)
    device = challenge.device or get_adapter().get_login_device(user)
    if device is None:  # the phone was removed between password and code
        raise ChallengeNotFound()
    return device


def start_passwordless(
    phone: str, *, client: ClientInfo | None = None, language: str | None = None
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
    if user is not None:
        device = PhoneDevice.objects.filter(user=user, number=e164, confirmed=True).first()
        try:
            return flows.request_challenge(
                phone=e164,
                purpose=Purpose.PASSWORDLESS,
                user=user,
                device=device,
                client=client,
                language=language,
            )
        except DeliveryFailed as err:
            # Answering 503 here and 202 for an unknown number would tell an
            # attacker which numbers have accounts whenever the provider is
            # down. The challenge is recorded as undeliverable; the caller
            # gets the same answer as for any other number.
            return Challenge.objects.get(pk=err.context["challenge_id"])
    challenge = flows.request_challenge(
        phone=e164, purpose=Purpose.PASSWORDLESS, client=client, deliver=False
    )
    if app_settings.PASSWORDLESS_UNKNOWN_NUMBER == "notify":
        flows.send_notice(phone=e164, text=adapter.unknown_number_text())
    return challenge


def finish_passwordless(challenge_id: Any, code: Any) -> tuple[Any, PhoneDevice | None]:
    """Check a passwordless code; returns the user to log in and the phone
    that proved it (for ``django_otp.login``).

    :raises ChallengeNotFound: the account is gone or inactive.
    """
    challenge = flows.verify_challenge(challenge_id, code, purpose=Purpose.PASSWORDLESS)
    user = challenge.user
    if user is None or not user.is_active:
        raise ChallengeNotFound()
    device = challenge.device
    if device is None or not device.confirmed:
        device = PhoneDevice.objects.filter(
            user=user, number=challenge.phone, confirmed=True
        ).first()
    return user, device


def issue_phone_token(challenge: Challenge) -> str:
    """A signed, short-lived proof that ``challenge.phone`` was verified."""
    return signing.dumps({"c": str(challenge.pk), "p": challenge.phone}, salt=PHONE_TOKEN_SALT)


def redeem_phone_token(token: str, *, max_age: int | None = None) -> str:
    """Use a ``phone_token`` once; returns the verified phone (E.164).

    Registration code calls this when it creates the account::

        phone = redeem_phone_token(form.cleaned_data["phone_token"])
        PhoneDevice.objects.create(user=user, number=phone, confirmed=True)

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
