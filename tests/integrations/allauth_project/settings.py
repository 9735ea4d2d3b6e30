"""A django-allauth site whose phone codes go through django-sms2fa's locmem
provider (django_sms2fa.contrib.allauth). The database and cache follow the
main suite's switches (SMS2FA_TEST_DB, SMS2FA_REDIS_URL)."""

from tests.settings import CACHES, DATABASES, PASSWORD_HASHERS  # noqa: F401

SECRET_KEY = "allauth-project-secret-key-for-tests-only"
DEBUG = False
USE_TZ = True
ROOT_URLCONF = "tests.integrations.allauth_project.urls"
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
    "allauth",
    "allauth.account",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
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

# allauth: sign in with a phone and a code sent to it; sign up with a phone
# that is verified by a code. Its phone storage and SMS: django-sms2fa.
ACCOUNT_ADAPTER = "django_sms2fa.contrib.allauth.adapter.Sms2faAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"phone", "username"}
ACCOUNT_SIGNUP_FIELDS = ["phone*", "username*", "password1*"]
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_PHONE_VERIFICATION_ENABLED = True
ACCOUNT_PHONE_VERIFICATION_SUPPORTS_RESEND = True
ACCOUNT_LOGIN_BY_CODE_SUPPORTS_RESEND = True
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_RATE_LIMITS = False  # this app's limits are under test here
LOGIN_REDIRECT_URL = "/"

SMS2FA = {
    "PROVIDERS": {"default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"}},
    "DEFAULT_REGION": "SE",
    "ALLOWED_REGIONS": ["SE"],
    "LIMITS": {scope: [] for scope in ("phone", "ip", "user", "country", "global")},
    "PUMPING": {"MIN_SENDS": 10**9},
}

# allauth owns the login here: the phone is its login method, not this app's
# second factor, so SecondFactorMiddleware (which would hold back an allauth
# login of a user with a confirmed phone) is left out on purpose.
SILENCED_SYSTEM_CHECKS = ["sms2fa.E020", "sms2fa.E021"]
