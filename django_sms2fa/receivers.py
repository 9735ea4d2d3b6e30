"""Signal receivers: what a login records in the session, whoever called it.

Connected in ``AppConfig.ready()``, after django-otp's own ``user_logged_in``
receiver (which stores ``user.otp_device`` in the session), so that this one
has the last word.
"""

from __future__ import annotations

from typing import Any

from django_otp import DEVICE_ID_SESSION_KEY

from django.contrib.auth.signals import user_logged_in

from .session_keys import (
    BACKEND_SESSION_KEY,
    METHOD_KEY,
    PASSWORDLESS,
    PHONE_BINDING_KEY,
    is_phone_backend,
)


def record_login_method(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Every ``login()`` says how the session logged in, from the backend.

    * ``PhoneCodeBackend``: the phone's code alone. The session is marked
      passwordless (one factor) and any django-otp verification is dropped,
      also when a third-party view logs in this way and calls
      ``django_otp.login`` with the phone that just logged it in.
    * Any other backend (a password): the session is no longer passwordless;
      ``SecondFactorMiddleware`` then asks a user with a phone for a code as
      after any password login. This app's own password-and-code login sets
      its method again right after.
    """
    session = getattr(request, "session", None)
    if session is None:
        return
    if is_phone_backend(session.get(BACKEND_SESSION_KEY)):
        session[METHOD_KEY] = PASSWORDLESS
        device = getattr(user, "sms2fa_login_device", None)  # set by PhoneCodeBackend
        if device is not None:
            session[PHONE_BINDING_KEY] = {"device_id": device.pk, "number": device.number}
        session.pop(DEVICE_ID_SESSION_KEY, None)
        for holder in (user, getattr(request, "user", None)):
            if holder is not None and hasattr(holder, "otp_device"):
                holder.otp_device = None
    elif session.get(METHOD_KEY) == PASSWORDLESS:
        session.pop(METHOD_KEY, None)
        session.pop(PHONE_BINDING_KEY, None)


def connect() -> None:
    user_logged_in.connect(record_login_method, dispatch_uid="django_sms2fa.record_login_method")
