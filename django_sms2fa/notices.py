"""Telling the owner of an account that a sign-in factor changed.

``signals.security_event`` is answered here by default: the adapter's
``send_security_notice`` (an email to the account's address unless a site
overrides it) in the user's language. With ``SEND_VIA_TASKS`` the notice
leaves the request through the task backend, like the SMS: a request whose
answer could tell an account from none (a lockout on a passwordless number)
must not wait for a mail server. The task carries the user id, the event and
the context (masked numbers, a time, an IP) — never a code.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import translation

from .conf import app_settings

logger = logging.getLogger("django_sms2fa")


def notify(user: Any, event: str, context: dict[str, Any]) -> None:
    """Deliver one security notice to ``user`` now, or queue it (``SEND_VIA_TASKS``)."""
    if user is None or getattr(user, "pk", None) is None:
        return  # a lockout of a number without an account: nobody to tell
    if not app_settings.SEND_VIA_TASKS:
        deliver(user, event, context)
        return
    stored = {**context, "when": _iso(context.get("when"))}

    def enqueue() -> None:
        from . import notice_tasks  # needs a task framework: imported only here

        try:
            notice_tasks.send_security_notice.using(backend=app_settings.TASK_BACKEND).enqueue(
                str(user.pk), event, stored
            )
        except Exception as err:
            logger.error(
                "sms2fa: the %s notice to user %s could not be queued (%s)",
                event,
                user.pk,
                type(err).__name__,
            )

    if _in_real_transaction():
        # A rolled-back change must not be announced.
        transaction.on_commit(enqueue, robust=True)
    else:
        enqueue()


def deliver(user: Any, event: str, context: dict[str, Any]) -> bool:
    """Hand one notice to the adapter, in the user's language.

    A notice that cannot be sent (a mail server down) is logged, never
    raised: it must not undo or block the change it reports.

    :returns: whether the adapter took it without an error.
    """
    from .adapter import get_adapter

    adapter = get_adapter()
    try:
        with translation.override(adapter.get_language(user) or translation.get_language()):
            adapter.send_security_notice(user, event, dict(context))
    except Exception as err:
        logger.error(
            "sms2fa: the %s notice to user %s could not be sent (%s)",
            event,
            user.pk,
            type(err).__name__,
        )
        return False
    return True


def from_stored(context: dict[str, Any]) -> dict[str, Any]:
    """The context as a task stored it, with ``when`` a datetime again."""
    when = context.get("when")
    try:
        parsed = datetime.fromisoformat(when) if isinstance(when, str) and when else None
    except ValueError:
        parsed = None
    return {**context, "when": parsed}


def _iso(when: Any) -> str:
    return when.isoformat() if isinstance(when, datetime) else ""


def _in_real_transaction() -> bool:
    # The atomic blocks Django's TestCase opens around each test do not count.
    conn = transaction.get_connection()
    return any(not getattr(block, "_from_testcase", False) for block in conn.atomic_blocks)
