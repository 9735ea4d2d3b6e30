"""One project with this app and its peers installed together (bench/peers/run.py).

PostgreSQL ``PEERS_PG_NAME`` (default ``sms2fa_peers``) on ``SMS2FA_PG_HOST``/
``PORT``/``USER``/``PASSWORD`` (default 127.0.0.1, postgres, trust auth);
this app's limits in Redis ``PEERS_REDIS_URL`` (default db 10).
"""

import os

SECRET_KEY = "bench-peers-only-secret-key-not-for-production"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.peers.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "rest_framework.authtoken",
    "phonenumber_field",
    "django_otp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_email",
    "two_factor",
    "two_factor.plugins.phonenumber",
    "phone_verify",
    "trench",
    "django_sms2fa",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django_sms2fa.middleware.SecondFactorMiddleware",
]
# Both this app and django-two-factor-auth have a PhoneDevice with a user
# foreign key and no related_name: their reverse accessors clash. No code
# measured here uses ``user.phonedevice_set``.
SILENCED_SYSTEM_CHECKS = ["fields.E304"]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PEERS_PG_NAME", "sms2fa_peers"),
        "USER": os.environ.get("SMS2FA_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("SMS2FA_PG_PASSWORD", ""),
        "HOST": os.environ.get("SMS2FA_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("SMS2FA_PG_PORT", "5432"),
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/10"),
    }
}
# Trench's first step and this app's REST login/ check a password: a cheap
# hasher keeps the hash out of the figures (the other apps check no password).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# django-otp's EmailDevice waits OTP_EMAIL_COOLDOWN_DURATION (60 s) between
# two codes to one device: off, like this app's per-phone cooldown.
OTP_EMAIL_COOLDOWN_DURATION = 0

# This app: every security default on, except the per-phone cooldown and the
# country/global ceilings, widened so that thousands of codes can be sent; and
# the per-IP limits, widened too because every django.test.Client request of
# the REST rows comes from 127.0.0.1 (the flows row passes no client address,
# which no per-IP limit applies to).
SMS2FA = {
    "PROVIDERS": {"default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"}},
    "DEFAULT_REGION": "SE",
    "LIMITS": {
        "phone": ["1000000/h"],
        "ip": ["1000000/h"],
        "country": ["1000000/h"],
        "global": ["1000000/h"],
    },
}

# django-two-factor-auth: the fake gateway only logs.
TWO_FACTOR_SMS_GATEWAY = "two_factor.gateways.fake.Fake"

# django-phone-verify.
PHONE_VERIFICATION = {
    "BACKEND": "bench.peers.peer_backends.PhoneVerifyOutbox",
    "OPTIONS": {},
    "TOKEN_LENGTH": 6,
    "MESSAGE": "{security_code}",
    "APP_NAME": "bench",
    "SECURITY_CODE_EXPIRATION_TIME": 600,
    "VERIFY_SECURITY_CODE_ONLY_ONCE": True,
}

# django-trench: its "sms_api" SMS method (trench only accepts the method
# names it knows), with a handler that keeps the code instead of calling SMSAPI.
TRENCH_AUTH = {
    "MFA_METHODS": {
        "sms_api": {
            "VERBOSE_NAME": "sms_api",
            "VALIDITY_PERIOD": 30,
            "HANDLER": "bench.peers.peer_backends.TrenchOutbox",
            "SOURCE_FIELD": "username",
        },
    },
}
REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": []}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        "django_sms2fa": {"level": "WARNING"},
        "two_factor": {"level": "WARNING"},
    },
}
