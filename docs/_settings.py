"""Django settings for building the documentation (autodoc and the generated
reference pages import the app, so Django must be set up).

Only what the app itself needs, plus drf-spectacular's schema class for the
REST API page: the docs extra installs nothing else.
"""

SECRET_KEY = "docs-build-only-not-a-secret"
DEBUG = False
USE_TZ = True
ROOT_URLCONF = "_urls"
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
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Set before the API's views are imported: DRF reads the schema class then.
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}

# The reference pages show the app's own defaults: no SMS2FA dict here.
