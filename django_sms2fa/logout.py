"""Ending a session, whoever it seems to belong to.

``SecondFactorMiddleware`` shows a session that logged in with a password but
has not proved its phone as anonymous (``request.user``), while the session
still holds the login. Logging out must end that session too: otherwise the
password step stays done, and the next request that proves a code — or a
view that reads the session itself — finds a user logged in.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout
from django.http import HttpRequest


def has_session_to_end(request: HttpRequest) -> bool:
    """Whether the request carries a session with anything in it."""
    session = getattr(request, "session", None)
    return session is not None and (session.session_key is not None or not session.is_empty())


def end_session(request: HttpRequest) -> None:
    """Log out and flush the session (pending logins, owned challenges, all).

    ``user_logged_out`` names the real user, also when the middleware had
    made the request anonymous (``request.sms2fa_unverified_user``).
    """
    hidden: Any = getattr(request, "sms2fa_unverified_user", None)
    if hidden is not None and not request.user.is_authenticated:
        request.user = hidden
    logout(request)  # flushes the session and sets request.user anonymous
    if hasattr(request, "sms2fa_unverified_user"):
        del request.sms2fa_unverified_user
