"""Names of what the app keeps in a Django session, shared by its edges, and
the one question every edge asks of a session: did it log in with a phone's
code alone?"""

from __future__ import annotations

from contextvars import ContextVar
from functools import lru_cache
from typing import Any

#: How the session logged in: "password+sms", or "passwordless" (the phone's
#: code alone: one factor, so the session is never django-otp verified).
METHOD_KEY = "sms2fa_login_method"
PASSWORDLESS = "passwordless"
PASSWORD_AND_SMS = "password+sms"
#: A password and another second factor: an authenticator app, a recovery
#: code, or a browser remembered after one of them (no factor proved now).
PASSWORD_AND_TOTP = "password+totp"
PASSWORD_AND_RECOVERY = "password+recovery"
PASSWORD_AND_REMEMBERED = "password+remembered"

#: When this session last proved a second factor (``time.time()``): the
#: step-up window of sign-in method changes runs from it.
VERIFIED_AT_KEY = "sms2fa_verified_at"

#: The phone a passwordless session logged in with: ``{"device_id": int,
#: "number": "+E164"}``. The session lives only as long as that phone stays
#: the account's, confirmed, with that number (SecondFactorMiddleware).
PHONE_BINDING_KEY = "sms2fa_login_phone"

#: Django's session key for the backend that logged the session in
#: (``django.contrib.auth.BACKEND_SESSION_KEY``, repeated here so that this
#: module imports nothing from Django's auth app).
BACKEND_SESSION_KEY = "_auth_user_backend"

PHONE_BACKEND = "django_sms2fa.backends.PhoneCodeBackend"

#: True while the current request's session logged in with a phone's code
#: alone. ``PhoneDevice.verify_token`` refuses then, so that a third-party view
#: calling ``django_otp.verify_token`` + ``django_otp.login`` in one request
#: cannot count the login factor a second time. Set by SecondFactorMiddleware.
one_factor_request: ContextVar[bool] = ContextVar("sms2fa_one_factor_request", default=False)


@lru_cache(maxsize=64)
def is_phone_backend(path: Any) -> bool:
    """Whether the dotted path names ``PhoneCodeBackend`` (or a subclass)."""
    if not isinstance(path, str) or not path:
        return False
    if path == PHONE_BACKEND:
        return True
    from django.utils.module_loading import import_string

    from .backends import PhoneCodeBackend

    try:
        backend = import_string(path)
    except ImportError:
        return False
    return isinstance(backend, type) and issubclass(backend, PhoneCodeBackend)


def is_passwordless(session: Any) -> bool:
    """Whether ``session`` logged in with a phone's code alone.

    Either mark is enough: the method this app records, or the backend Django
    records (a login through ``PhoneCodeBackend`` is passwordless whoever
    called ``login()``).
    """
    if session is None:
        return False
    return session.get(METHOD_KEY) == PASSWORDLESS or is_phone_backend(
        session.get(BACKEND_SESSION_KEY)
    )
