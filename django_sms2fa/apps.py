from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Sms2faConfig(AppConfig):
    name = "django_sms2fa"
    verbose_name = _("SMS two-factor")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks and the setting_changed receiver.
        from . import checks, providers  # noqa: F401
