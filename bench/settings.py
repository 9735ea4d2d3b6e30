"""Settings for the benchmarks: the test settings on a real PostgreSQL database.

The database is ``SMS2FA_BENCH_DB`` (default ``sms2fa_bench``) on the server the
tests use (``SMS2FA_PG_HOST``/``PORT``/``USER``/``PASSWORD``). The benchmarks
use it directly, not a throw-away test database, so a seeded million rows
survive between runs.
"""

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("SMS2FA_BENCH_DB", "sms2fa_bench"),
        "USER": os.environ.get("SMS2FA_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("SMS2FA_PG_PASSWORD", ""),
        "HOST": os.environ.get("SMS2FA_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("SMS2FA_PG_PORT", "5432"),
    }
}
# Lock states and limits are not what is measured here.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
ROOT_URLCONF = "bench.urls"
SMS2FA = {
    **SMS2FA,  # noqa: F405
    "PROVIDERS": {
        alias: {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"}
        for alias in ("default", "gosms", "smstoken", "ip1")
    },
}
