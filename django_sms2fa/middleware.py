"""Make every way of logging in enforce the second factor.

Put it after ``django_otp.middleware.OTPMiddleware``::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django_otp.middleware.OTPMiddleware",
        "django_sms2fa.middleware.SecondFactorMiddleware",
    ]

A passwordless session (logged in with the phone's code alone) stays
authenticated but is never *verified*: it has one factor.

A session that logged in with a password alone — through any view: the admin,
``LoginView``, a third-party login, DRF's session login — belongs to a user
with a confirmed phone but has not proved it. For such a request
``request.user`` is anonymous: the session is not logged in until a code is
checked (``django_otp.login`` marks it verified). The login edges of this app
keep their own pending state and never rely on a half-logged-in session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse

from .adapter import get_adapter
from .session_keys import METHOD_KEY, PASSWORDLESS


class SecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user: Any = getattr(request, "user", None)
        if user is None:
            raise RuntimeError(
                "SecondFactorMiddleware must come after AuthenticationMiddleware and "
                "django_otp.middleware.OTPMiddleware."
            )
        verified = _is_verified(user)  # also proves OTPMiddleware ran, on every request
        if user.is_authenticated and not verified and not _passwordless(request):
            if get_adapter().has_second_factor(user):
                anonymous = AnonymousUser()
                # What OTPMiddleware gives every user, so otp_required and
                # friends work on the substitute too.
                anonymous.otp_device = None
                anonymous.is_verified = lambda: False
                request.user = anonymous

                async def auser() -> Any:
                    return anonymous

                request.auser = auser  # async views read the user through this
                request.sms2fa_unverified_user = user  # for logout views and the audit
        return self.get_response(request)


def _passwordless(request: HttpRequest) -> bool:
    # A passwordless login (the phone's code alone) is a real login with one
    # factor: authenticated, never verified. See api/session.py.
    session = getattr(request, "session", None)
    return session is not None and session.get(METHOD_KEY) == PASSWORDLESS


def _is_verified(user: Any) -> bool:
    is_verified = getattr(user, "is_verified", None)
    if is_verified is None:
        raise RuntimeError(
            "SecondFactorMiddleware needs django_otp.middleware.OTPMiddleware before it."
        )
    return bool(is_verified())
