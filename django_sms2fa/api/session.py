"""What the API keeps in the session between two requests.

* ``sms2fa_pending_login``: between the password and the code, exactly what
  is needed to finish — user id, backend, challenge id, expiry — and never the
  password (the flaw of CVE-2020-15105). It expires with the challenge.
* ``sms2fa_challenges``: ids of the challenges this client created, so an
  anonymous client can resend, verify or cancel its own challenges and no one
  else's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from ..models import Challenge
from ..session_keys import METHOD_KEY, PASSWORD_AND_SMS, PASSWORDLESS  # noqa: F401

PENDING_KEY = "sms2fa_pending_login"

OWNED_KEY = "sms2fa_challenges"
MAX_OWNED = 20


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
