"""Make every way of logging in enforce the second factor.

Put it after ``django_otp.middleware.OTPMiddleware`` (system checks
``sms2fa.E020``–``E022`` say so at start-up)::

    MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django_otp.middleware.OTPMiddleware",
        "django_sms2fa.middleware.SecondFactorMiddleware",
    ]

A passwordless session (logged in with the phone's code alone) stays
authenticated but is never *verified*: it has one factor. Whatever marked it
verified — django-otp's ``LoginView``, ``OTPAdminSite``, a third-party view
calling ``django_otp.login`` — is undone on every request, and while the
request runs ``PhoneDevice.verify_token`` refuses. The session lives only as
long as the phone it logged in with: removed, replaced, unconfirmed or
renumbered, and the session is logged out. The way to two factors from there
is a login with the password and a code.

A session that logged in with a password alone — through any view: the admin,
``LoginView``, a third-party login, DRF's session login — belongs to a user
with a confirmed phone but has not proved it. For such a request
``request.user`` is anonymous: the session is not logged in until a code is
checked (``django_otp.login`` marks it verified). The login edges of this app
keep their own pending state and never rely on a half-logged-in session.

With ``SMS2FA["REQUIRE_SECOND_FACTOR"] = True``, a logged-in user without a
confirmed phone reaches only this app's pages and API (to enrol one) and
logout views; anything else redirects to the phone-add page (HTML) or answers
403 ``second_factor_required`` (JSON). A site's own view can be let through
with :func:`allowed_without_phone`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django_otp import DEVICE_ID_SESSION_KEY

from django.contrib.auth import logout
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import LogoutView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from .adapter import get_adapter
from .conf import app_settings
from .session_keys import PHONE_BINDING_KEY, is_passwordless, one_factor_request

#: Modules whose views a user without a phone may reach when the site
#: requires a second factor: the app's own pages and API (log in, enrol).
ENROLMENT_MODULES = frozenset({"django_sms2fa.views", "django_sms2fa.api.views"})

logger = logging.getLogger("django_sms2fa")


def allowed_without_phone(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let users without a phone reach ``view`` under ``REQUIRE_SECOND_FACTOR``
    (a help page, a site's own logout)."""
    view.sms2fa_allowed_without_phone = True  # type: ignore[attr-defined]
    return view


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
        session = getattr(request, "session", None)
        one_factor = user.is_authenticated and is_passwordless(session)
        if one_factor:
            if not _login_phone_is_alive(session, user):
                # The phone this session logged in with is gone: so is the session.
                logger.info(
                    "sms2fa: passwordless session of user %s ended: its phone is gone", user.pk
                )
                logout(request)
                _make_anonymous(request, None)
                return self.get_response(request)
            _drop_verification(request, user)
            verified = False
        elif user.is_authenticated and not verified:
            if get_adapter().has_second_factor(user):
                _make_anonymous(request, user)
        token = one_factor_request.set(one_factor)
        try:
            response = self.get_response(request)
        finally:
            one_factor_request.reset(token)
        if one_factor and is_passwordless(session) and DEVICE_ID_SESSION_KEY in session:
            # Marked verified during this request (a third-party django_otp.login):
            # not stored either.
            del session[DEVICE_ID_SESSION_KEY]
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponse | None:
        if not app_settings.REQUIRE_SECOND_FACTOR:
            return None
        user: Any = request.user
        if not user.is_authenticated or user.is_verified() or _may_pass(view_func):
            return None
        if get_adapter().has_second_factor(user):
            return None  # a passwordless session: it has a phone
        return _enrol_first(request, view_func)


def _may_pass(view_func: Callable[..., Any]) -> bool:
    if getattr(view_func, "sms2fa_allowed_without_phone", False):
        return True
    if getattr(view_func, "__module__", "") in ENROLMENT_MODULES:
        return True
    view_class = getattr(view_func, "view_class", None)
    return isinstance(view_class, type) and issubclass(view_class, LogoutView)


def _enrol_first(request: HttpRequest, view_func: Callable[..., Any]) -> HttpResponse:
    message = _("Add a phone to your account first: this site requires a second factor.")
    accept = request.headers.get("Accept", "")
    wants_json = (
        hasattr(view_func, "cls")  # a DRF view
        or request.content_type == "application/json"
        or ("application/json" in accept and "text/html" not in accept)
    )
    if not wants_json:
        try:
            target = reverse("sms2fa:phone_add")
        except NoReverseMatch:
            target = None
        if target is not None:
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
    return JsonResponse(
        {"error": {"code": "second_factor_required", "message": message}}, status=403
    )


def _login_phone_is_alive(session: Any, user: Any) -> bool:
    """The phone a passwordless session logged in with is still the user's,
    confirmed, with the same number. No record (a session from before the
    binding existed, or forged) counts as gone."""
    from .models import PhoneDevice

    binding = session.get(PHONE_BINDING_KEY)
    if not isinstance(binding, dict):
        return False
    device_id, number = binding.get("device_id"), binding.get("number")
    if not isinstance(device_id, int) or not isinstance(number, str):
        return False
    return PhoneDevice.objects.filter(
        pk=device_id, user_id=user.pk, confirmed=True, number=number
    ).exists()


def _drop_verification(request: HttpRequest, user: Any) -> None:
    # Any device django-otp would count: the session proved one factor only.
    if DEVICE_ID_SESSION_KEY in request.session:
        del request.session[DEVICE_ID_SESSION_KEY]
    user.otp_device = None


def _make_anonymous(request: HttpRequest, unverified_user: Any) -> None:
    anonymous = AnonymousUser()
    # What OTPMiddleware gives every user, so otp_required and
    # friends work on the substitute too.
    anonymous.otp_device = None
    anonymous.is_verified = lambda: False
    request.user = anonymous

    async def auser() -> Any:
        return anonymous

    request.auser = auser  # async views read the user through this
    if unverified_user is not None:
        request.sms2fa_unverified_user = unverified_user  # for logout views and the audit


def _is_verified(user: Any) -> bool:
    is_verified = getattr(user, "is_verified", None)
    if is_verified is None:
        raise RuntimeError(
            "SecondFactorMiddleware needs django_otp.middleware.OTPMiddleware before it."
        )
    return bool(is_verified())
