"""An allauth account adapter whose phone codes go through django-sms2fa.

allauth makes and checks its codes (login by code, phone verification); this
adapter only carries them, through :func:`django_sms2fa.foreign.send_foreign_code`:
this app's providers, failover, send limits and audit. The phone of an
account is this app's confirmed :class:`~django_sms2fa.models.PhoneDevice`.

What allauth gets back when this app refuses a send:

* a login code asked for without a password (``/accounts/login/code/``):
  nothing — allauth answers "code sent" whatever the number, so the limits
  must not tell a number with an account from one without (the refusal is
  recorded as a ``Refusal`` row and logged);
* any other code (phone verification, reauthentication): a rate limit is
  allauth's own ``RateLimited`` — its resend views show their "too many
  requests" message — and, where allauth does not catch that (the first
  send), an ``ImmediateHttpResponse`` with allauth's 429 page; a failed
  delivery or a number this site does not send to is an error message, and
  allauth's page goes on (the user may resend).
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.core.exceptions import RateLimited as AllauthRateLimited
from allauth.core.ratelimit import respond_429

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from django_sms2fa import device_flows, foreign
from django_sms2fa.client import client_info
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import InvalidPhone, NumberNotAllowed, RateLimited, Sms2faError
from django_sms2fa.models import DeviceAction, PhoneDevice, Purpose
from django_sms2fa.phones import mask_phone, normalize_phone
from django_sms2fa.types import ClientInfo

logger = logging.getLogger("django_sms2fa")


class SendRefused(ImmediateHttpResponse, AllauthRateLimited):
    """This app's send limits refused a code allauth asked to send.

    Both of allauth's ways to stop: its resend views catch ``RateLimited``
    (and show their message); elsewhere its middleware (or the login view)
    answers the ``ImmediateHttpResponse`` — allauth's 429 page.
    """

    def __init__(self, request: HttpRequest | None) -> None:
        response = respond_429(request) if request is not None else None
        ImmediateHttpResponse.__init__(self, response)  # type: ignore[arg-type]


class Sms2faAccountAdapter(DefaultAccountAdapter):
    """``ACCOUNT_ADAPTER``: allauth's SMS through this app, its phones as this
    app's devices."""

    # ------------------------------------------------------------ sending

    def phone_form_field(self, **kwargs: Any) -> Any:
        """allauth's phone field, taking numbers as people write them
        (``070-123 45 67`` in ``DEFAULT_REGION``): :meth:`clean_phone` turns
        them into E.164 instead of allauth's "+ and digits only" rule."""
        kwargs.setdefault("validators", [])
        return super().phone_form_field(**kwargs)

    def clean_phone(self, phone: str) -> str:
        """E.164, and only numbers this site sends codes to (a form error,
        before any account is made or code sent)."""
        try:
            return foreign.allowed_phone(phone)
        except (InvalidPhone, NumberNotAllowed) as err:
            raise forms.ValidationError(err.message, code=err.code) from None

    @sensitive_variables("code")
    def send_verification_code_sms(
        self, user: AbstractBaseUser, phone: str, code: str, **kwargs: Any
    ) -> None:
        # allauth passes ``reauthentication`` with login codes only (its
        # login-by-code and reauthentication flows), never with phone
        # verification.
        if "reauthentication" not in kwargs:
            lifetime = _allauth_setting("PHONE_VERIFICATION_TIMEOUT")
            user = self._signed_in(user)
            self._send(phone, code, user=user, purpose=Purpose.VERIFY_PHONE, lifetime=lifetime)
            return
        lifetime = _allauth_setting("LOGIN_BY_CODE_TIMEOUT")
        if kwargs["reauthentication"]:
            # A signed-in user proving themselves again: their own budget.
            user = self._signed_in(user)
            self._send(phone, code, user=user, purpose=Purpose.LOGIN, lifetime=lifetime)
            return
        # Anyone who types the number can ask for a login code: the number's
        # anonymous budget, and refusals answered as allauth answers every number.
        self._send(
            phone, code, user=None, purpose=Purpose.PASSWORDLESS, quiet=True, lifetime=lifetime
        )

    def send_unknown_account_sms(self, phone: str, **kwargs: Any) -> None:
        """No SMS (allauth's default), but the send limits count as for a real
        code: their refusals must not tell which numbers have an account."""
        self._send(phone, "", user=None, purpose=Purpose.PASSWORDLESS, quiet=True, deliver=False)

    def send_account_already_exists_sms(self, phone: str) -> None:
        """As :meth:`send_unknown_account_sms`, for a signup with a number that
        has an account: counted like the verification code of a new one."""
        self._send(phone, "", user=None, purpose=Purpose.VERIFY_PHONE, deliver=False)

    @sensitive_variables("code")
    def _send(
        self,
        phone: str,
        code: str,
        *,
        user: Any,
        purpose: str,
        quiet: bool = False,
        deliver: bool = True,
        lifetime: int | None = None,
    ) -> None:
        request = self._request()
        try:
            foreign.send_foreign_code(
                phone=phone,
                code=code,
                user=user,
                purpose=purpose,
                client=client_info(request) if request is not None else ClientInfo(),
                lifetime=lifetime,
                deliver=deliver,
            )
        except Sms2faError as err:
            logger.info("sms2fa: allauth's code was not sent (%s)", err.code)
            if quiet:
                return
            if isinstance(err, RateLimited):
                raise SendRefused(request) from None
            if request is not None:
                messages.error(request, err.message, fail_silently=True)

    def _request(self) -> HttpRequest | None:
        return self.request or context.request

    def _signed_in(self, user: Any) -> Any:
        """``user`` when this request's session is theirs (their own budget),
        else ``None``: at signup nobody has proved anything yet, so the code
        comes out of the number's anonymous budget."""
        request = self._request()
        current = getattr(request, "user", None)
        if current is not None and current.is_authenticated and current.pk == user.pk:
            return user
        return None

    # ------------------------------------------------------------ storage

    def get_phone(self, user: AbstractBaseUser) -> tuple[str, bool] | None:
        """The phone allauth shows: the newest confirmed device, else the
        newest one still unconfirmed."""
        device = (
            PhoneDevice.objects.filter(user=user)
            .order_by("-confirmed", "-created_at", "-pk")
            .only("number", "confirmed")
            .first()
        )
        return (device.number, device.confirmed) if device is not None else None

    def set_phone(self, user: AbstractBaseUser, phone: str, verified: bool) -> None:
        """A verified number becomes a confirmed device (:meth:`set_phone_verified`);
        an unverified one waits as an unconfirmed device until its code is
        entered. allauth has one phone per account: this replaces any other
        unconfirmed one."""
        if verified:
            self.set_phone_verified(user, phone)
            return
        e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
        ip = self._client().ip or None
        for other in PhoneDevice.objects.filter(user=user, confirmed=False).exclude(number=e164):
            device_flows.delete_device(other, actor=user, client_ip=ip)
        device, created = PhoneDevice.objects.get_or_create(
            user=user, number=e164, defaults={"name": mask_phone(e164), "confirmed": False}
        )
        if created:
            device_flows.record_event(device, DeviceAction.ADDED, actor=user, client_ip=ip)

    def set_phone_verified(self, user: AbstractBaseUser, phone: str) -> None:
        """Confirm the number (``device_flows.bind_verified_phone``: a number
        confirmed on another account leaves it, the owners are told).

        allauth has one phone per account, so a number newly confirmed here
        (allauth's "change phone") replaces the account's other phones; a
        login with a phone already confirmed leaves them alone.
        """
        e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
        client = self._client()
        was_confirmed = PhoneDevice.objects.filter(user=user, number=e164, confirmed=True).exists()
        device = device_flows.bind_verified_phone(user, e164, client=client)
        if was_confirmed:
            return
        for other in PhoneDevice.objects.filter(user=user).exclude(pk=device.pk):
            device_flows.delete_device(other, actor=user, client_ip=client.ip or None)

    def get_user_by_phone(self, phone: str) -> AbstractBaseUser | None:
        """The account whose confirmed phone this is (a number is confirmed on
        one account at most); an unconfirmed number finds nobody."""
        try:
            e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
        except InvalidPhone:
            return None
        device = PhoneDevice.objects.filter(number=e164, confirmed=True).only("user_id").first()
        if device is None:
            return None
        return get_user_model()._default_manager.filter(pk=device.user_id).first()

    def _client(self) -> ClientInfo:
        request = self._request()
        return client_info(request) if request is not None else ClientInfo()


def _allauth_setting(name: str) -> int:
    from allauth.account import app_settings as account_settings

    return int(getattr(account_settings, name))
