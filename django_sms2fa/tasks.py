"""The task edge: a worker sends the SMS of a queued challenge (``SEND_VIA_TASKS``).

With ``SMS2FA["SEND_VIA_TASKS"] = True`` the request writes the challenge as
``queued`` and enqueues :func:`send_challenge_sms` on the task backend named by
``SMS2FA["TASK_BACKEND"]``; whichever worker runs it (django-tasks-db's
``db_worker``, RQ, Celery, ...) makes the code and hands the SMS to the
provider. The task's arguments are stored by the backend (a database row, a
Redis entry), so they hold identifiers only — never a code.

Django's Tasks framework is ``django.tasks`` on Django 6 and later, and the
``django-tasks`` backport (``pip install django-sms2fa[tasks]``) on Django 5.2.
This module is imported only when a send is queued, so a site that leaves
``SEND_VIA_TASKS`` off needs neither.
"""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task

from . import flows
from .conf import app_settings


# The backend named in settings when this module is first imported (the web
# process enqueues with ``.using(backend=...)`` read at that moment, so a later
# settings change still applies there).
@task(backend=app_settings.TASK_BACKEND)
def send_challenge_sms(challenge_id: str, queued_at: str, language: str = "") -> str:
    """Send the code of one queued challenge; safe to run any number of times.

    :param challenge_id: the challenge's UUID, as a string.
    :param queued_at: when the request queued this send (ISO 8601): a run
        claims only the send it was queued for, so a retried or duplicated
        task never sends a second SMS.
    :param language: the SMS language, chosen in the request ("" = default).
    :returns: what this run did (see :func:`flows.send_queued`).
    """
    return flows.send_queued(challenge_id, queued_at=queued_at, language=language or None)
