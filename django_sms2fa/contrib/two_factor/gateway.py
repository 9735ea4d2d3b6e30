"""A django-two-factor-auth gateway that sends through django-sms2fa.

two_factor makes the token (a TOTP of its ``PhoneDevice``) and checks it; this
gateway only carries it, through :func:`django_sms2fa.foreign.send_foreign_code`:
this app's providers, failover, send limits and audit (one ``Message`` per
provider tried, the token masked).

A refusal (a send limit, a number this site does not send to, no provider
took it, no provider on the route calls) is never raised: two_factor calls the
gateway while it renders its login page, and turns any exception there into
a server error. It is logged (without the token) and, where the request is
known, told to the user as an error message (``django.contrib.messages``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from django_sms2fa import foreign
from django_sms2fa.client import client_info
from django_sms2fa.exceptions import Sms2faError
from django_sms2fa.models import Purpose
from django_sms2fa.types import CALL, SMS, ClientInfo

logger = logging.getLogger("django_sms2fa")

#: How long two_factor accepts a phone token: its PhoneDevice takes the TOTP
#: of the current 30-second step and of the five before it.
TOKEN_LIFETIME = 150


class Sms2faGateway:
    """``TWO_FACTOR_SMS_GATEWAY`` and ``TWO_FACTOR_CALL_GATEWAY``."""

    @sensitive_variables("token")
    def send_sms(self, device: Any, token: str) -> None:
        """Text ``token`` to ``device.number``."""
        self._send(device, token, SMS)

    @sensitive_variables("token")
    def make_call(self, device: Any, token: str) -> None:
        """Have a provider read ``token`` out in a call (a provider on the
        route must offer the ``call`` channel)."""
        self._send(device, token, CALL)

    @sensitive_variables("token")
    def _send(self, device: Any, token: str, channel: str) -> None:
        request = _current_request()
        user = _owner(device, request)
        # A saved device is proving a login (after the password); an unsaved
        # one is being set up by its signed-in owner.
        purpose = Purpose.LOGIN if device.pk is not None else Purpose.VERIFY_PHONE
        try:
            foreign.send_foreign_code(
                phone=device.number.as_e164,
                code=str(token),
                user=user,
                purpose=purpose,
                channel=channel,
                client=client_info(request) if request is not None else ClientInfo(),
                lifetime=TOKEN_LIFETIME,
            )
        except Sms2faError as err:
            logger.warning("sms2fa: two_factor's token was not sent (%s)", err.code)
            if request is not None:
                messages.error(request, err.message, fail_silently=True)


def _current_request() -> HttpRequest | None:
    """The request, where two_factor's ``ThreadLocals`` middleware keeps it
    (for the per-IP limits and the error message)."""
    from two_factor.middleware.threadlocals import get_current_request

    return get_current_request()


def _owner(device: Any, request: HttpRequest | None) -> Any:
    """The device's user; a backup phone being set up has none yet, and is
    the signed-in user's."""
    if getattr(device, "user_id", None) is not None:
        return device.user
    current = getattr(request, "user", None)
    return current if current is not None and current.is_authenticated else None
