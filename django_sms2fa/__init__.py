"""django-sms2fa: phone-based two-factor login for Django."""

__version__ = "0.1.0"
