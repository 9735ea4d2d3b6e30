"""Settings for the step benchmarks (bench/steps.py, scale.py, provider_http.py).

The test settings (locmem provider, send limits off, no resend cooldown), on a
database that survives the run:

* ``BENCH_DB=sqlite`` (default): a file, ``BENCH_SQLITE`` (default
  ``/dev/shm/sms2fa-bench-steps.sqlite3``: on tmpfs, see below), with the
  local-memory cache;
* ``BENCH_DB=postgres``: ``BENCH_PG_NAME`` (default ``sms2fa_bench_steps``) on the
  server of ``SMS2FA_PG_HOST``/``PORT``/``USER``/``PASSWORD``, with Redis at
  ``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/14``) as in production.
"""

import os
from pathlib import Path

from tests.settings import *  # noqa: F403

BENCH_DB = os.environ.get("BENCH_DB", "sqlite")
if BENCH_DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_PG_NAME", "sms2fa_bench_steps"),
            "USER": os.environ.get("SMS2FA_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("SMS2FA_PG_PASSWORD", ""),
            "HOST": os.environ.get("SMS2FA_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("SMS2FA_PG_PORT", "5432"),
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        }
    }
elif BENCH_DB == "sqlite":
    # On tmpfs where there is one: on a disk every autocommit is an fsync, and
    # the disk's latency (tens of ms on a busy machine) would hide the app's.
    _shm = Path("/dev/shm")
    _default = (_shm if _shm.is_dir() else Path(__file__).resolve().parent / ".data") / (
        "sms2fa-bench-steps.sqlite3"
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_SQLITE") or str(_default),
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise RuntimeError(f"BENCH_DB must be 'sqlite' or 'postgres', not {BENCH_DB!r}")

DEBUG = False
ROOT_URLCONF = "tests.urls"
# The app logs each challenge at INFO; a benchmark measures, it does not log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_sms2fa": {"level": "WARNING"}},
}
