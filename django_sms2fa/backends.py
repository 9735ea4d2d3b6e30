"""An authentication backend for passwordless phone login.

Passwordless login is opt-in: ``SMS2FA["PASSWORDLESS_LOGIN"] = True`` and the
backend beside Django's own::

    AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "django_sms2fa.backends.PhoneCodeBackend",
    ]

``authenticate(request, challenge=<id>, code=<code>)`` returns the user of a
verified passwordless challenge, or ``None`` — for anything else, including
every wrong, expired or used code, and always while ``PASSWORDLESS_LOGIN`` is
off, so that it composes with other backends.

A session logged in through this backend has one factor, whoever calls
``login()``: it is never django-otp verified, and it ends when the phone that
logged it in is removed or replaced (``SecondFactorMiddleware``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.views.decorators.debug import sensitive_variables

from .exceptions import Sms2faError


class PhoneCodeBackend(ModelBackend):
    @sensitive_variables()
    def authenticate(
        self, request: Any, challenge: Any = None, code: Any = None, **kwargs: Any
    ) -> Any:
        if challenge is None or code is None:
            return None
        from .conf import app_settings
        from .login_flows import finish_passwordless

        if not app_settings.PASSWORDLESS_LOGIN:
            return None  # off: not even an attempt is used
        try:
            user, device = finish_passwordless(challenge, code)
        except Sms2faError:
            return None
        if device is None or not self.user_can_authenticate(user):
            return None
        # The phone that proved the code: the session is bound to it at login
        # (receivers.record_login_method).
        user.sms2fa_login_device = device
        return user
