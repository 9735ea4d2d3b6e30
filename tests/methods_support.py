"""Helpers of the sign-in method tests: authenticator-app codes computed as
the app would, a user's confirmed app and phone, and a fake request with a
session for the step-up checks."""

from __future__ import annotations

import time
from typing import Any

from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from django_sms2fa import methods
from django_sms2fa.models import PhoneDevice

PHONE = "+46701234567"
SECOND_PHONE = "+46709876543"


def totp_code(device: TOTPDevice, *, at: float | None = None, steps: int = 0) -> str:
    """The code the user's app shows at ``at`` (now), ``steps`` time steps on."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = (time.time() if at is None else at) + steps * device.step
    return f"{totp.token():0{device.digits}d}"


def wrong_totp(device: TOTPDevice) -> str:
    """A well-formed code no step within the device's tolerance accepts."""
    near = {totp_code(device, steps=s) for s in range(-2, 3)}
    for n in range(1_000_000):
        guess = f"{(n * 7919) % 1_000_000:06d}"
        if guess not in near:
            return guess
    raise AssertionError("unreachable")


def confirmed_totp(user: Any) -> TOTPDevice:
    """A confirmed authenticator app, enrolled through the flow."""
    device = methods.start_totp(user)
    return methods.confirm_totp(user, device.pk, totp_code(device))


def next_step() -> float:
    """Seconds to wait until the next TOTP time step begins (plus a margin)."""
    return 30 - (time.time() % 30) + 0.5


def phone_of(user: Any, number: str = PHONE, *, confirmed: bool = True) -> PhoneDevice:
    return PhoneDevice.objects.create(user=user, number=number, name="Mobile", confirmed=confirmed)


def wrong_recovery(codes: list[str]) -> str:
    """A well-formed recovery code that is none of ``codes``."""
    taken = {c.replace("-", "") for c in codes}
    for n in range(10**6):
        guess = "".join(methods.RECOVERY_ALPHABET[(n + i) % 31] for i in range(10))
        if guess not in taken:
            return guess
    raise AssertionError("unreachable")


def request_for(user: Any, *, verified: bool, verified_at: Any = None, set_key: bool = True):
    """A request whose session says ``user`` logged in (and proved a factor
    at ``verified_at``), as the edges would hand it to the step-up check."""
    from django_sms2fa.session_keys import VERIFIED_AT_KEY

    request = RequestFactory().post("/")
    request.session = SessionStore()
    request.user = user
    user.is_verified = lambda: verified
    if set_key:
        request.session[VERIFIED_AT_KEY] = time.time() if verified_at is None else verified_at
    return request


def backed_codes(user: Any, **kwargs: Any) -> list[str]:
    """``methods.generate_recovery_codes`` for ``user``, who first gets an
    authenticator app if they have no method yet: recovery codes back up a
    phone or an app, and are refused alone."""
    if not methods.can_have_recovery_codes(user):
        TOTPDevice.objects.create(user=user, name="Backing app", confirmed=True)
    return methods.generate_recovery_codes(user, **kwargs)
