"""What the app keeps in a Django session, and how its edges log a user in.

Shared by the REST edge (``api/``) and the HTML pages (``views.py``) so that
both follow the same rules:

* ``sms2fa_pending_login``: between the password and the code, exactly what
  is needed to finish — user id, backend, challenge id, expiry — and never the
  password (the flaw of CVE-2020-15105). It expires with the challenge.
* ``sms2fa_challenges``: ids of the challenges this client created, so an
  anonymous client can resend, verify or cancel its own challenges and no one
  else's.
* Logging in always goes through :func:`complete_login` or
  :func:`complete_passwordless_login`: ``login()`` gives the session a new key
  (and a new CSRF token), ``django_otp.login`` marks a password-and-code
  session verified, and the login method is recorded for
  ``SecondFactorMiddleware``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django_otp import login as otp_login

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.utils import timezone

from .exceptions import LoginExpired
from .models import Challenge
from .session_keys import METHOD_KEY, PASSWORD_AND_SMS, PASSWORDLESS

PENDING_KEY = "sms2fa_pending_login"

OWNED_KEY = "sms2fa_challenges"
MAX_OWNED = 20

PHONE_BACKEND = "django_sms2fa.backends.PhoneCodeBackend"


def set_pending_login(request: Any, user: Any, backend: str, challenge: Challenge) -> None:
    request.session[PENDING_KEY] = {
        "user_id": str(user.pk),
        "backend": backend,
        "challenge_id": str(challenge.pk),
        "expires_at": challenge.expires_at.isoformat(),
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

    :raises LoginExpired: no pending login, it expired, or the user is gone.
    """
    pending = get_pending_login(request)
    if pending is None:
        raise LoginExpired()
    user = get_user_model()._default_manager.filter(pk=pending["user_id"]).first()
    if user is None or not user.is_active:
        clear_pending_login(request)
        raise LoginExpired()
    return pending, user


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
    """The backend a passwordless login is recorded with."""
    backends = list(settings.AUTHENTICATION_BACKENDS)
    return PHONE_BACKEND if PHONE_BACKEND in backends else backends[0]


def complete_login(request: Any, user: Any, *, backend: str, device: Any) -> None:
    """Password and code are both proved: log in with a new session key and
    mark the session verified with ``device``.

    ``request`` is Django's ``HttpRequest`` (for DRF, ``request._request``).
    """
    clear_pending_login(request)
    login(request, user, backend=backend)  # cycles the session key and CSRF token
    otp_login(request, device)
    request.session[METHOD_KEY] = PASSWORD_AND_SMS


def complete_passwordless_login(request: Any, user: Any) -> None:
    """The phone's code alone is proved: log in with a new session key.

    One factor, so the session is logged in but NOT verified:
    ``@otp_required``, ``OTPAdminSite`` and phone management still ask for a
    second factor. ``SecondFactorMiddleware`` reads the method key.
    """
    clear_pending_login(request)
    login(request, user, backend=phone_login_backend())
    request.session[METHOD_KEY] = PASSWORDLESS
