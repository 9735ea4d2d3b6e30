from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Sms2faConfig(AppConfig):
    name = "django_sms2fa"
    verbose_name = _("SMS two-factor")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks, the setting_changed receiver, and the
        # signal receivers (security notices; a deleted phone closes its codes).
        from . import checks, providers, receivers, signals  # noqa: F401

        # After django-otp's own user_logged_in receiver (connected when
        # django_otp was imported), so that a passwordless login has the last word.
        receivers.connect()
