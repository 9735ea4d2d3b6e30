"""The site's hooks, in one class chosen by ``SMS2FA["ADAPTER"]``.

As with django-allauth's adapters: subclass :class:`DefaultSms2faAdapter`,
override what your site does differently, and name the subclass in settings::

    SMS2FA = {"ADAPTER": "myproject.sms.Sms2faAdapter"}

Typical overrides: finding users by a phone field of your own, issuing API
tokens at login (see :meth:`login_response`), the language of a user's SMS
(:meth:`get_language`), or the notice texts.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from .conf import app_settings
from .exceptions import Sms2faConfigurationError


class DefaultSms2faAdapter:
    def get_user_by_phone(self, phone: str) -> Any:
        """The active user who owns the confirmed phone ``phone`` (E.164), or None.

        A number is confirmed on at most one account (a database constraint),
        so there is one owner or none; never one picked by row order. Should
        the database hold two (the constraint dropped by hand), nobody is
        returned rather than a guess.
        """
        from .models import PhoneDevice

        devices = list(
            PhoneDevice.objects.filter(number=phone, confirmed=True).select_related("user")[:2]
        )
        if len(devices) != 1 or not devices[0].user.is_active:
            return None
        return devices[0].user

    def get_login_device(self, user: Any) -> Any:
        """The phone a login code goes to: the most recently used confirmed one."""
        from django.db.models import F

        from .models import PhoneDevice

        return (
            PhoneDevice.objects.filter(user=user, confirmed=True)
            .order_by(F("last_used_at").desc(nulls_last=True), "pk")
            .first()
        )

    def has_second_factor(self, user: Any) -> bool:
        """Whether ``user`` must pass a second factor to log in: a confirmed
        django-otp device of any kind (a phone, an authenticator app, recovery
        codes, or a device of another plugin).

        One query, whatever the number of device kinds (django-otp's
        ``user_has_device`` makes one per kind, and this runs on every request
        of a logged-in session that is not verified).
        """
        from django.db.models import Exists, OuterRef

        if getattr(user, "pk", None) is None:
            return False
        checks = {
            f"d{n}": Exists(model._default_manager.filter(user=OuterRef("pk"), confirmed=True))
            for n, model in enumerate(_device_tables())
        }
        from django.contrib.auth import get_user_model

        found = (
            get_user_model()
            ._base_manager.filter(pk=user.pk)
            .annotate(**checks)
            .values(*checks)
            .first()
        )
        return bool(found) and any(found.values())

    def serialize_user(self, user: Any) -> dict[str, Any]:
        """The ``user`` object of login answers."""
        return {"id": user.pk, "username": user.get_username()}

    def login_response(self, request: Any, user: Any) -> dict[str, Any]:
        """The body of a successful login answer (``login/``, ``login/verify/``,
        a passwordless ``verify/``).

        Override to hand out API tokens, for example with DRF's authtoken::

            def login_response(self, request, user):
                from rest_framework.authtoken.models import Token
                token, _ = Token.objects.get_or_create(user=user)
                return {**super().login_response(request, user), "token": token.key}
        """
        return {"user": self.serialize_user(user)}

    def get_language(self, user: Any) -> str | None:
        """The language of the SMS sent to ``user`` (a language code such as
        ``"sv"`` or ``"pt-br"``), or ``None`` for the request's active language.

        Override when the site stores each user's language::

            def get_language(self, user):
                return user.profile.language or None
        """
        return None

    def phone_replaced_text(self, old_phone: str, new_phone: str) -> str:
        """SMS to the old number after a change (it is no longer a second factor)."""
        return _(
            "Your phone number was replaced as a sign-in method. If this was not you, "
            "contact support now."
        )

    def phone_added_text(self, new_phone: str) -> str:
        """SMS to the user's other phones when a new one is confirmed."""
        return _(
            "A new phone number was added to your account as a sign-in method. If this "
            "was not you, contact support now."
        )

    def phone_removed_text(self, removed_phone: str) -> str:
        """SMS to the removed number and to the user's other phones after a removal."""
        return _(
            "A phone number was removed from your account as a sign-in method. If this "
            "was not you, contact support now."
        )

    def recovery_code_used_text(self) -> str:
        """SMS to the user's phones when one of their recovery codes is used."""
        return _(
            "A recovery code was used to sign in to your account. If this was not you, "
            "contact support now."
        )

    def send_security_notice(self, user: Any, event: str, context: dict[str, Any]) -> None:
        """Tell ``user`` that a sign-in factor changed (a phone added, replaced,
        removed or unbound, a lockout): by default an email to the account's
        address, skipped when it has none.

        :param event: ``"phone_added"``, ``"phone_replaced"``,
            ``"phone_removed"``, ``"phone_unbound"``, ``"lockout"``,
            ``"method_added"`` / ``"method_removed"`` (an authenticator app;
            ``context["method"]`` is ``"totp"``), ``"recovery_codes_made"`` or
            ``"recovery_code_used"`` (``context["left"]``: codes still unused).
        :param context: ``phone`` and ``new_phone`` (masked), ``when`` (an
            aware datetime), ``ip`` (or ``""``). It never holds a code or a
            full number; keep it that way in your own channel.

        Runs in the user's language (:meth:`get_language`). Override to use
        another channel (a push message, an in-app inbox), or to change the
        templates: ``django_sms2fa/email/security_notice_subject.txt`` and
        ``django_sms2fa/email/security_notice.txt``.
        """
        from django.core.mail import send_mail
        from django.template.loader import render_to_string

        field = user.get_email_field_name() if hasattr(user, "get_email_field_name") else "email"
        address = getattr(user, field, "") or ""
        if not address:
            return
        data = {**context, "event": event, "user": user}
        subject = render_to_string("django_sms2fa/email/security_notice_subject.txt", data)
        body = render_to_string("django_sms2fa/email/security_notice.txt", data)
        # One line: a header cannot hold a newline.
        send_mail(" ".join(subject.split()), body, None, [address])

    def unknown_number_text(self) -> str:
        """SMS to a number without an account (``PASSWORDLESS_UNKNOWN_NUMBER = "notify"``)."""
        return _("Someone asked to sign in with this number, but it has no account.")


def _device_tables() -> list[Any]:
    """django-otp's device models, less those whose rows their parent's table
    already holds (a multi-table subclass, such as ``RecoveryCodeDevice`` of
    ``StaticDevice``)."""
    from django_otp import device_classes

    models = list(device_classes())
    return [m for m in models if not any(p in models for p in m._meta.get_parent_list())]


def get_adapter() -> DefaultSms2faAdapter:
    path = app_settings.ADAPTER
    try:
        cls = import_string(path)
    except ImportError as err:
        raise Sms2faConfigurationError(
            f"SMS2FA['ADAPTER'] = {path!r} could not be imported: {err}",
            check_id="sms2fa.E008",
        ) from err
    return cls()
