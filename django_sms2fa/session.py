"""What the app keeps in a Django session, and how its edges log a user in.

Shared by the REST edge (``api/``) and the HTML pages (``views.py``) so that
both follow the same rules:

* ``sms2fa_pending_login``: between the password and the code, exactly what
  is needed to finish — user id, backend, challenge id, the phone, expiry, and
  the user's session auth hash — and never the password (the flaw of
  CVE-2020-15105). It expires with the challenge, and dies when the password
  changes (the auth hash), the user is deactivated or the phone is removed.
* ``sms2fa_challenges``: ids of the challenges this client created, so an
  anonymous client can resend, verify or cancel its own challenges and no one
  else's.
* Logging in always goes through :func:`complete_login` or
  :func:`complete_passwordless_login`: ``login()`` gives the session a new key
  (and a new CSRF token), ``django_otp.login`` marks a password-and-code
  session verified, and the login method is recorded for
  ``SecondFactorMiddleware``.
* ``sms2fa_login_phone``: the phone a passwordless session logged in with;
  the session ends when that phone is removed, replaced or renumbered.
* ``sms2fa_verified_at``: when the session last proved a second factor. Adding,
  replacing or removing a sign-in method, or making new recovery codes, needs
  it within ``STEP_UP_WINDOW`` (:func:`require_fresh_second_factor`); a login
  through a remembered browser proves no factor and does not set it.
* The remembered-browser cookie (``sms2fa_browser``, signed, HttpOnly, Secure
  on HTTPS) holds a row id only; ``methods.recognised_browser`` decides.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django_otp import login as otp_login

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from .conf import app_settings
from .exceptions import (
    ChallengeNotFound,
    LoginExpired,
    SecondFactorRequired,
    Sms2faConfigurationError,
    StepUpRequired,
)
from .methods import BROWSER_COOKIE, PHONE, RECOVERY, TOTP, method_of
from .models import Challenge, PhoneDevice
from .session_keys import (
    METHOD_KEY,
    PASSWORD_AND_RECOVERY,
    PASSWORD_AND_REMEMBERED,
    PASSWORD_AND_SMS,
    PASSWORD_AND_TOTP,
    PASSWORDLESS,
    PHONE_BACKEND,
    PHONE_BINDING_KEY,
    VERIFIED_AT_KEY,
    is_phone_backend,
)

PENDING_KEY = "sms2fa_pending_login"

OWNED_KEY = "sms2fa_challenges"
MAX_OWNED = 20


def set_pending_login(
    request: Any,
    user: Any,
    backend: str,
    challenge: Challenge | None,
    *,
    method: str = PHONE,
    methods: list[str] | None = None,
) -> None:
    """Between the password and the second factor. ``challenge`` is the
    phone's (``method="phone"``); with an authenticator app or a recovery
    code there is none, and the pending login lives ``CODE_LIFETIME``."""
    expires_at = (
        challenge.expires_at
        if challenge is not None
        else timezone.now() + timedelta(seconds=app_settings.CODE_LIFETIME)
    )
    request.session[PENDING_KEY] = {
        "user_id": str(user.pk),
        "backend": backend,
        "method": method,
        "methods": list(methods or [method]),
        "challenge_id": str(challenge.pk) if challenge is not None else "",
        "device_id": challenge.device_id if challenge is not None else None,
        "expires_at": expires_at.isoformat(),
        # The password the user just typed, as Django's session sees it: a
        # password change (or anything else that changes the hash) between
        # the password and the code ends the pending login.
        "auth_hash": user.get_session_auth_hash(),
    }


def get_pending_login(request: Any) -> dict[str, str] | None:
    pending = request.session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None
    try:
        expires_at = datetime.fromisoformat(pending["expires_at"])
    except (KeyError, TypeError, ValueError):
        clear_pending_login(request)
        return None
    if expires_at <= timezone.now():
        clear_pending_login(request)
        return None
    return pending


def pending_login_user(request: Any) -> tuple[dict[str, str], Any]:
    """The pending login and its user, who must still exist and be active.

    :raises LoginExpired: no pending login, it expired, the user is gone or
        inactive, or the session auth hash changed (a new password).
    """
    pending = get_pending_login(request)
    if pending is None:
        raise LoginExpired()
    user = get_user_model()._default_manager.filter(pk=pending["user_id"]).first()
    if user is None or not user.is_active or not _same_auth_hash(pending, user):
        clear_pending_login(request)
        raise LoginExpired()
    return pending, user


def _same_auth_hash(pending: dict[str, Any], user: Any) -> bool:
    stored = pending.get("auth_hash")
    return isinstance(stored, str) and constant_time_compare(stored, user.get_session_auth_hash())


def extend_pending_login(request: Any, challenge: Challenge) -> None:
    """After a resend of the pending login's challenge, its new expiry applies."""
    pending = request.session.get(PENDING_KEY)
    if isinstance(pending, dict) and pending.get("challenge_id") == str(challenge.pk):
        request.session[PENDING_KEY] = {**pending, "expires_at": challenge.expires_at.isoformat()}


def clear_pending_login(request: Any) -> None:
    request.session.pop(PENDING_KEY, None)


def remember_challenge(request: Any, challenge: Challenge) -> None:
    owned = [cid for cid in request.session.get(OWNED_KEY, []) if cid != str(challenge.pk)]
    request.session[OWNED_KEY] = [*owned, str(challenge.pk)][-MAX_OWNED:]


def owns_challenge(request: Any, challenge_id: Any) -> bool:
    return str(challenge_id) in request.session.get(OWNED_KEY, [])


def phone_login_backend() -> str:
    """The backend a passwordless login is recorded with: ``PhoneCodeBackend``
    (or a subclass) from ``AUTHENTICATION_BACKENDS``, never another one — a
    passwordless session recorded as a password backend would pass for a
    password login.

    :raises Sms2faConfigurationError: no such backend (check ``sms2fa.E023``).
    """
    for path in settings.AUTHENTICATION_BACKENDS:
        if is_phone_backend(path):
            return path
    raise Sms2faConfigurationError(
        f"Passwordless login needs {PHONE_BACKEND!r} in AUTHENTICATION_BACKENDS.",
        check_id="sms2fa.E023",
    )


def passwordless_enabled() -> bool:
    """Whether passwordless login is on: ``PASSWORDLESS_LOGIN`` and
    ``PhoneCodeBackend`` in ``AUTHENTICATION_BACKENDS``, both."""
    return app_settings.PASSWORDLESS_LOGIN and any(
        is_phone_backend(path) for path in settings.AUTHENTICATION_BACKENDS
    )


def bind_to_phone(request: Any, device: PhoneDevice) -> None:
    """Tie a passwordless session to the phone it logged in with."""
    request.session[PHONE_BINDING_KEY] = {"device_id": device.pk, "number": device.number}


#: What ``METHOD_KEY`` records for a login with a password and each method.
LOGIN_METHOD_MARKS = {
    PHONE: PASSWORD_AND_SMS,
    TOTP: PASSWORD_AND_TOTP,
    RECOVERY: PASSWORD_AND_RECOVERY,
}


def complete_login(request: Any, user: Any, *, backend: str, device: Any) -> None:
    """Password and second factor are both proved: log in with a new session
    key and mark the session verified with ``device``.

    ``request`` is Django's ``HttpRequest`` (for DRF, ``request._request``).

    :raises ChallengeNotFound: ``device`` is not what the pending login asked
        for, still confirmed: for a phone, the phone its code went to (it was
        removed or replaced meanwhile, and the code must not log in through
        another phone); otherwise a device of the pending method, the user's.
    """
    pending = request.session.get(PENDING_KEY)
    pending = pending if isinstance(pending, dict) else {}
    method = pending.get("method", PHONE)
    if method == PHONE:
        right_device = device is not None and device.pk == pending.get("device_id")
    else:
        right_device = device is not None and method_of(device) == method
    if not right_device or not device.confirmed or device.user_id != user.pk:
        clear_pending_login(request)
        raise ChallengeNotFound()
    clear_pending_login(request)
    login(request, user, backend=backend)  # cycles the session key and CSRF token
    otp_login(request, device)
    request.session[METHOD_KEY] = LOGIN_METHOD_MARKS[method]
    mark_second_factor(request)


def complete_remembered_login(request: Any, user: Any, *, backend: str, device: Any) -> None:
    """The password is right and this browser is remembered for ``user``
    (``methods.recognised_browser`` gave ``device``): log in verified with the
    device that proved the login when it was remembered.

    No factor was proved now, so the step-up window stays shut: changing a
    sign-in method still asks for one.
    """
    clear_pending_login(request)
    login(request, user, backend=backend)
    otp_login(request, device)
    request.session[METHOD_KEY] = PASSWORD_AND_REMEMBERED


def mark_second_factor(request: Any) -> None:
    """The session proved a second factor now (a login, a step-up)."""
    request.session[VERIFIED_AT_KEY] = time.time()


def second_factor_fresh(request: Any) -> bool:
    """Whether the session is verified and proved a factor within ``STEP_UP_WINDOW``."""
    user = getattr(request, "user", None)
    check = getattr(user, "is_verified", None)
    if not (check and check()):
        return False
    proved = request.session.get(VERIFIED_AT_KEY)
    if not isinstance(proved, (int, float)) or isinstance(proved, bool):
        return False
    return 0 <= time.time() - proved <= app_settings.STEP_UP_WINDOW


def require_fresh_second_factor(request: Any, user: Any) -> None:
    """Before a sign-in method is added, replaced or removed, or recovery codes
    are made anew: a user who has any second factor must have proved one in
    this session within ``STEP_UP_WINDOW`` (NIST SP 800-63B-4 §4.1.2.1).

    A user with none yet (a first enrolment) passes.

    :raises SecondFactorRequired: the session is not verified at all (a
        password alone, a passwordless login).
    :raises StepUpRequired: verified, but not recently enough.
    """
    from .adapter import get_adapter

    if not get_adapter().has_second_factor(user):
        return
    if second_factor_fresh(request):
        return
    check = getattr(getattr(request, "user", None), "is_verified", None)
    if check and check():
        raise StepUpRequired()
    raise SecondFactorRequired()


def browser_cookie(request: Any) -> str | None:
    """The remembered-browser cookie, as sent."""
    return request.COOKIES.get(BROWSER_COOKIE)


def set_browser_cookie(response: Any, request: Any, value: str) -> None:
    """Set the remembered-browser cookie: HttpOnly, Secure when the request
    is (and always where ``SESSION_COOKIE_SECURE`` is on), SameSite Lax, for
    ``REMEMBER_BROWSER_DAYS``."""
    response.set_cookie(
        BROWSER_COOKIE,
        value,
        max_age=app_settings.REMEMBER_BROWSER_DAYS * 86400,
        httponly=True,
        secure=request.is_secure() or bool(getattr(settings, "SESSION_COOKIE_SECURE", False)),
        samesite="Lax",
        path=getattr(settings, "SESSION_COOKIE_PATH", "/"),
    )


def delete_browser_cookie(response: Any) -> None:
    response.delete_cookie(BROWSER_COOKIE, path=getattr(settings, "SESSION_COOKIE_PATH", "/"))


def complete_passwordless_login(request: Any, user: Any, device: PhoneDevice | None) -> None:
    """The phone's code alone is proved: log in with a new session key.

    One factor, so the session is logged in but NOT verified:
    ``@otp_required``, ``OTPAdminSite`` and phone management still ask for a
    second factor. ``SecondFactorMiddleware`` reads the method key, and ends
    the session when ``device`` (the phone that proved the code) is gone.

    :raises ChallengeNotFound: no confirmed phone of the user proved the code
        (it was removed meanwhile): nothing to bind the session to.
    """
    if device is None or not device.confirmed or device.user_id != user.pk:
        raise ChallengeNotFound()
    backend = phone_login_backend()
    clear_pending_login(request)
    user.sms2fa_login_device = device  # read by the user_logged_in receiver
    login(request, user, backend=backend)
    request.session[METHOD_KEY] = PASSWORDLESS
    bind_to_phone(request, device)
