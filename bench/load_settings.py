"""The example site as the load test runs it: several gunicorn workers on
PostgreSQL and Redis, GoSMS pointed at a fake on loopback.

Environment (set by bench/load.py):

* ``LOAD_PG_NAME`` (and ``SMS2FA_PG_HOST``/``PORT``/``USER``/``PASSWORD``);
* ``LOAD_REDIS_URL``: the cache every worker shares (send limits, lockout);
* ``LOAD_GOSMS_URL``: the fake GoSMS (bench/fakes.py);
* ``LOAD_PHONE_LIMIT``: codes per phone per hour (default 5). Every other send
  limit is off: all clients come from 127.0.0.1, and the limit under test is
  the per-phone one.
"""

import os

from example.settings import *  # noqa: F403

from bench.fakes import gosms_settings

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("LOAD_PG_NAME", "sms2fa_bench_steps"),
        "USER": os.environ.get("SMS2FA_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("SMS2FA_PG_PASSWORD", ""),
        "HOST": os.environ.get("SMS2FA_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("SMS2FA_PG_PORT", "5432"),
        # One connection per worker, kept: as a production site runs.
        "CONN_MAX_AGE": 60,
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("LOAD_REDIS_URL", "redis://127.0.0.1:6379/14"),
    }
}
PHONE_LIMIT = int(os.environ.get("LOAD_PHONE_LIMIT", "5"))
SMS2FA = {
    **SMS2FA,  # noqa: F405
    "PROVIDERS": {
        "default": gosms_settings(os.environ.get("LOAD_GOSMS_URL", "http://127.0.0.1:9"))
    },
    "RESEND_INTERVAL": 0,
    # The load test times the request with its SMS sent inline and reads each
    # code from the fake as the request returns; it runs no task worker.
    "SEND_VIA_TASKS": False,
    "ALLOWED_REGIONS": ["SE"],
    "LIMITS": {
        "phone": [f"{PHONE_LIMIT}/1h"],
        "ip": [],
        "user": [],
        "country": [],
        "global": [],
    },
    "PUMPING": {"MIN_SENDS": 10**9},
}
# The example's passwordless login stays on, with the SMS sent inline (above):
# the timing warning is about a production setup, not this load test.
SILENCED_SYSTEM_CHECKS = ["sms2fa.W041"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_sms2fa": {"level": "WARNING"}},
}
