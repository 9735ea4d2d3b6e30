"""Settings of the task worker process that tests/test_tasks_worker.py starts.

The test suite's settings, plus what the worker must share with the test
process that enqueues: the database (``SMS2FA_PG_NAME`` names the test
database), the django-tasks-db backend, and the providers (JSON in
``SMS2FA_WORKER_PROVIDERS``: a fake provider on the test's loopback server).
"""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import SMS2FA

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

SMS2FA = {
    **SMS2FA,
    "SEND_VIA_TASKS": True,
    "PROVIDERS": json.loads(os.environ.get("SMS2FA_WORKER_PROVIDERS", "null"))
    or SMS2FA["PROVIDERS"],
}

# Everything the worker logs goes to its stderr, which the test reads back to
# prove no code ever reaches a log line.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        name: {"level": "DEBUG", "handlers": ["stderr"]}
        for name in ("django_sms2fa", "django_tasks_db", "django.tasks", "django_tasks", "urllib3")
    },
}
