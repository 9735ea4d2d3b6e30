"""The task that sends a queued security notice (``SEND_VIA_TASKS``).

Imported only when a notice is queued, so a site that leaves
``SEND_VIA_TASKS`` off needs no task framework. Its arguments are stored by
the backend: a user id, an event name and a context of masked numbers, a time
and an IP — never a code.
"""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task

from django.contrib.auth import get_user_model

from . import notices
from .conf import app_settings


@task(backend=app_settings.TASK_BACKEND)
def send_security_notice(user_id: str, event: str, context: dict[str, Any]) -> str:
    """Send one security notice; returns ``"sent"``, ``"failed"`` (logged) or
    ``"skipped"`` (the user is gone)."""
    user = get_user_model()._default_manager.filter(pk=user_id).first()
    if user is None:
        return "skipped"
    return "sent" if notices.deliver(user, event, notices.from_stored(context)) else "failed"
