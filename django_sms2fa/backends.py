"""An authentication backend for passwordless phone login.

Add it beside Django's own::

    AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "django_sms2fa.backends.PhoneCodeBackend",
    ]

``authenticate(request, challenge=<id>, code=<code>)`` returns the user of a
verified passwordless challenge, or ``None`` — for anything else, including
every wrong, expired or used code, so that it composes with other backends.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from .exceptions import Sms2faError


class PhoneCodeBackend(ModelBackend):
    def authenticate(
        self, request: Any, challenge: Any = None, code: Any = None, **kwargs: Any
    ) -> Any:
        if challenge is None or code is None:
            return None
        from .login_flows import finish_passwordless

        try:
            user, _device = finish_passwordless(challenge, code)
        except Sms2faError:
            return None
        return user if self.user_can_authenticate(user) else None
