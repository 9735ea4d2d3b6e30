"""Settings for the test suite.

``SMS2FA_TEST_DB`` picks the database: ``sqlite`` (default) or ``postgres``
(``SMS2FA_PG_HOST``/``PORT``/``USER``/``PASSWORD``/``NAME``, default a local
server with the ``postgres`` user and trust auth).
"""

import os

import django

SECRET_KEY = "tests-only-secret-key-not-for-production"
DEBUG = False
USE_TZ = True
ROOT_URLCONF = "tests.urls"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_otp",
    # recovery codes and authenticator apps (TOTP) are these django-otp devices
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "django_sms2fa",
    # SEND_VIA_TASKS: a database task backend (tests/test_tasks_worker.py runs
    # its db_worker); on Django 5.2 it runs on the django-tasks backport.
    "django_tasks_db",
    *(["django_tasks"] if django.VERSION < (6, 0) else []),
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django_sms2fa.backends.PhoneCodeBackend",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django_sms2fa.middleware.SecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

TEST_DB = os.environ.get("SMS2FA_TEST_DB", "sqlite")
if TEST_DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("SMS2FA_PG_NAME", "sms2fa"),
            "USER": os.environ.get("SMS2FA_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("SMS2FA_PG_PASSWORD", ""),
            "HOST": os.environ.get("SMS2FA_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("SMS2FA_PG_PORT", "5432"),
        }
    }
elif TEST_DB == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
else:
    raise RuntimeError(f"SMS2FA_TEST_DB must be 'sqlite' or 'postgres', not {TEST_DB!r}")

# The cache holds the send limits and lockouts. With PostgreSQL the suite uses
# a real Redis (database 15 of SMS2FA_REDIS_URL), as production would; on
# SQLite, the local-memory cache. SMS2FA_TEST_CACHE=redis|locmem overrides.
TEST_CACHE = os.environ.get("SMS2FA_TEST_CACHE", "redis" if TEST_DB == "postgres" else "locmem")
if TEST_CACHE == "redis":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("SMS2FA_REDIS_URL", "redis://127.0.0.1:6379/15"),
        }
    }
elif TEST_CACHE == "locmem":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise RuntimeError(f"SMS2FA_TEST_CACHE must be 'redis' or 'locmem', not {TEST_CACHE!r}")

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only

SMS2FA = {
    "PROVIDERS": {"default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"}},
    "DEFAULT_REGION": "SE",
    # Passwordless login is opt-in (off by default); most tests use it.
    "PASSWORDLESS_LOGIN": True,
    # Most tests resend at once and send many codes to one phone; the cooldown
    # and the send limits have tests of their own (the `send_limits` fixture).
    "RESEND_INTERVAL": 0,
    "LIMITS": {scope: [] for scope in ("phone", "ip", "user", "country", "global")},
    # Likewise the SMS-pumping breaker (many tests send codes nobody verifies).
    "PUMPING": {"MIN_SENDS": 10**9},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_sms2fa": {"level": "DEBUG"}},
}
