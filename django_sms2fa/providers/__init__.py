"""Build providers from ``SMS2FA["PROVIDERS"]``.

This is the only module of ``providers`` that reads settings. Instances are
cached per alias (a provider may hold a pooled HTTP session) and dropped when
settings change, so ``override_settings`` takes effect at once.
"""

from __future__ import annotations

import threading

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from ..conf import app_settings
from ..exceptions import Sms2faConfigurationError
from .base import BaseProvider

__all__ = ["BaseProvider", "get_provider", "build_provider", "reset_providers"]

_cache: dict[str, BaseProvider] = {}
_cache_lock = threading.Lock()


def build_provider(alias: str) -> BaseProvider:
    """A new provider instance for ``alias``, or a configuration error naming it."""
    providers = app_settings.PROVIDERS
    if alias not in providers:
        raise Sms2faConfigurationError(
            f"No SMS provider {alias!r} in SMS2FA['PROVIDERS'].", check_id="sms2fa.E002"
        )
    config = providers[alias]
    path = config["BACKEND"]
    try:
        cls = import_string(path)
    except ImportError as err:
        raise Sms2faConfigurationError(
            f"SMS2FA['PROVIDERS'][{alias!r}]['BACKEND'] = {path!r} could not be imported: {err}",
            check_id="sms2fa.E002",
        ) from err
    if not (isinstance(cls, type) and issubclass(cls, BaseProvider)):
        raise Sms2faConfigurationError(
            f"SMS2FA['PROVIDERS'][{alias!r}]['BACKEND'] = {path!r} is not a "
            f"subclass of django_sms2fa.providers.base.BaseProvider.",
            check_id="sms2fa.E002",
        )
    try:
        return cls(alias=alias, **config.get("OPTIONS", {}))
    except TypeError as err:
        # Missing or unexpected keyword arguments. The message names argument
        # names only, never their values.
        raise Sms2faConfigurationError(
            f"SMS2FA['PROVIDERS'][{alias!r}]['OPTIONS'] do not fit {cls.__name__}: {err}",
            check_id="sms2fa.E002",
        ) from err


def get_provider(alias: str = "default") -> BaseProvider:
    """The shared provider instance for ``alias``."""
    provider = _cache.get(alias)
    if provider is None:
        with _cache_lock:
            provider = _cache.get(alias)
            if provider is None:
                provider = _cache[alias] = build_provider(alias)
    return provider


def reset_providers() -> None:
    with _cache_lock:
        _cache.clear()


@receiver(setting_changed)
def _drop_cached_providers(*, setting: str, **kwargs: object) -> None:
    if setting == "SMS2FA":
        reset_providers()
