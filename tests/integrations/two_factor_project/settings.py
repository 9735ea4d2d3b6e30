"""A django-two-factor-auth site whose phone tokens go through django-sms2fa's
locmem provider (django_sms2fa.contrib.two_factor). The database and cache
follow the main suite's switches (SMS2FA_TEST_DB, SMS2FA_REDIS_URL)."""

from tests.settings import CACHES, DATABASES, PASSWORD_HASHERS  # noqa: F401

SECRET_KEY = "two-factor-project-secret-key-for-tests-only"
DEBUG = False
USE_TZ = True
ROOT_URLCONF = "tests.integrations.two_factor_project.urls"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_otp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "django_sms2fa",
    "formtools",
    "phonenumber_field",
    "two_factor",
    "two_factor.plugins.phonenumber",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # The gateway reads the request here: per-IP limits, error messages.
    "two_factor.middleware.threadlocals.ThreadLocals",
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

TWO_FACTOR_SMS_GATEWAY = "django_sms2fa.contrib.two_factor.gateway.Sms2faGateway"
TWO_FACTOR_CALL_GATEWAY = "django_sms2fa.contrib.two_factor.gateway.Sms2faGateway"
LOGIN_URL = "two_factor:login"
LOGIN_REDIRECT_URL = "/"

SMS2FA = {
    # Calls too, so that two_factor's "call" method has a provider.
    "PROVIDERS": {
        "default": {
            "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
            "OPTIONS": {"channels": ["sms", "call"]},
        }
    },
    "DEFAULT_REGION": "SE",
    "ALLOWED_REGIONS": ["SE"],
    "LIMITS": {scope: [] for scope in ("phone", "ip", "user", "country", "global")},
    "PUMPING": {"MIN_SENDS": 10**9},
}

# two_factor owns the login here, with its own devices; this app only carries
# its tokens, so its SecondFactorMiddleware is left out on purpose. Both apps
# have a django-otp device named PhoneDevice; this app's reverse accessor is
# User.sms2fa_phones, so User.phonedevice_set stays two_factor's (a check below).
SILENCED_SYSTEM_CHECKS = ["sms2fa.E020", "sms2fa.E021"]
