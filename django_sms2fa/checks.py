"""System checks (``manage.py check``), with stable ids.

========== ==================================================================
id         problem
========== ==================================================================
E001       ``SMS2FA`` is not a dict, or ``SMS_TEMPLATE`` cannot be loaded
E002       provider configuration missing or broken (no ``default``, a
           ``BACKEND`` that does not import, ``OPTIONS`` it rejects, a route
           or fallback naming an unknown alias, a provider with no usable mode)
E003       ``CODE_LENGTH`` outside 6–10
E004       ``CODE_LIFETIME`` outside 1–600 seconds
E005       ``MAX_ATTEMPTS`` outside 1–10
E006       ``DEFAULT_REGION`` is not a region code
E007       ``CACHE`` names a cache that ``CACHES`` does not define
E008       ``ADAPTER`` is not a dotted path or does not import
E009       ``RESEND_INTERVAL``, ``PHONE_TOKEN_MAX_AGE``, ``REQUIRE_SECOND_FACTOR``
           or ``PASSWORDLESS_UNKNOWN_NUMBER`` is invalid
W001       the ``console`` provider (prints codes) with ``DEBUG = False``
W002       limit counters in a per-process cache (local memory, dummy) with
           ``DEBUG = False``: limits would not hold across processes
W003       an ``SMS2FA`` key that no setting reads (a typo?)
W004       a provider that can only carry codes shorter than ``CODE_LENGTH``
           (telefon-ip: 4 digits), so its codes are shorter
W005       ``ALLOWED_REGIONS`` is not set: codes may go to any country
W006       ``TEST_NUMBERS`` is set: fixed codes log their owners in
W007       ``WEBHOOK_SECRETS`` names an alias that is not a provider, or a
           provider that sends no delivery reports
E010       ``LIMITS``, ``LOCKOUT_*``, ``PUMPING``, ``ALLOWED_*``, ``TEST_NUMBERS``
           or ``TRUSTED_PROXY_COUNT`` is invalid
E011       ``RETENTION_DAYS``, ``WEBOTP_DOMAIN``, ``WEBHOOK_SECRETS``,
           ``SEND_VIA_TASKS`` or ``TASK_BACKEND`` is invalid
========== ==================================================================

Each check reads the setting through :mod:`django_sms2fa.conf`, the same code
that rejects the value at run time, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import checks
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template

from .conf import app_settings
from .exceptions import Sms2faConfigurationError

_PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def _read(getter: Callable[[], Any], errors: list[checks.CheckMessage], *, what: str = "") -> Any:
    try:
        return getter()
    except Sms2faConfigurationError as err:
        errors.append(checks.Error(err.bare_message, id=err.check_id))
    except Exception as err:
        # A provider constructor or backend module failing in its own way. Its
        # text may quote option values (secrets), so only the type is shown.
        errors.append(
            checks.Error(
                f"{what or 'SMS2FA'} failed with {type(err).__name__}.",
                hint="Build it in a shell to see the full error.",
                id="sms2fa.E002",
            )
        )
    return None


@checks.register(checks.Tags.security, "sms2fa")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    if _read(lambda: app_settings.raw, errors) is None:
        return errors
    for key in app_settings.unknown_keys:
        errors.append(
            checks.Warning(
                f"SMS2FA[{key!r}] is not a setting of django-sms2fa and is ignored.",
                hint="See the list of settings in django-sms2fa's README.",
                id="sms2fa.W003",
            )
        )
    for name in (
        "CODE_LENGTH",
        "CODE_LIFETIME",
        "MAX_ATTEMPTS",
        "DEFAULT_REGION",
        "CACHE",
        "RESEND_INTERVAL",
        "PHONE_TOKEN_MAX_AGE",
        "REQUIRE_SECOND_FACTOR",
        "PASSWORDLESS_UNKNOWN_NUMBER",
        "LOCKOUT_THRESHOLD",
        "LOCKOUT_MEMORY",
        "PUMPING",
        "ALLOWED_NUMBER_TYPES",
        "TRUSTED_PROXY_COUNT",
        "RETENTION_DAYS",
        "WEBOTP_DOMAIN",
        "WEBHOOK_SECRETS",
        "SEND_VIA_TASKS",
        "TASK_BACKEND",
    ):
        _read(lambda name=name: getattr(app_settings, name), errors)
    errors.extend(_check_destinations())
    from .adapter import get_adapter

    _read(get_adapter, errors, what="Building SMS2FA['ADAPTER']")
    template = _read(lambda: app_settings.SMS_TEMPLATE, errors)
    if template:
        try:
            get_template(template)
        except TemplateDoesNotExist:
            errors.append(
                checks.Error(
                    f"SMS2FA['SMS_TEMPLATE'] = {template!r} does not exist.", id="sms2fa.E001"
                )
            )
        except TemplateSyntaxError as err:
            errors.append(
                checks.Error(
                    f"SMS2FA['SMS_TEMPLATE'] = {template!r} does not compile: {err}",
                    id="sms2fa.E001",
                )
            )
    errors.extend(_check_providers())
    errors.extend(_check_limits_cache())
    errors.extend(_check_tasks())
    errors.extend(_check_webhooks())
    return errors


def _check_providers() -> list[checks.CheckMessage]:
    from .providers import build_provider  # imports provider modules: keep lazy

    errors: list[checks.CheckMessage] = []
    providers = _read(lambda: app_settings.PROVIDERS, errors)
    if providers is None:
        return errors
    _read(lambda: app_settings.ROUTES, errors)
    _read(lambda: app_settings.FALLBACKS, errors)
    length = _read(lambda: app_settings.CODE_LENGTH, []) or 6
    for alias in providers:
        provider = _read(
            lambda alias=alias: build_provider(alias),
            errors,
            what=f"Building SMS provider {alias!r}",
        )
        if provider is None:
            continue
        caps = provider.capabilities
        if not (caps.takes_our_code(length) or caps.returns_code or caps.verifies_code):
            errors.append(
                checks.Error(
                    f"SMS provider {alias!r} can neither take a {length}-digit code nor make one.",
                    id="sms2fa.E002",
                )
            )
        if (
            caps.max_code_length is not None
            and caps.max_code_length < length
            and caps.returns_code
            and not caps.delivers_text
        ):
            errors.append(
                checks.Warning(
                    f"SMS provider {alias!r} takes codes of at most {caps.max_code_length} "
                    f"characters, so it makes its own {caps.max_code_length}-digit codes "
                    f"instead of {length}-digit ones.",
                    hint="Shorter codes are easier to guess; prefer another provider where "
                    "you can.",
                    id="sms2fa.W004",
                )
            )
        if provider.provider_name == "Console" and not settings.DEBUG:
            errors.append(
                checks.Warning(
                    f"SMS provider {alias!r} is the console provider, which prints every "
                    "code, while DEBUG is False.",
                    hint="Configure a real SMS provider for production.",
                    id="sms2fa.W001",
                )
            )
    return errors


def _check_destinations() -> list[checks.CheckMessage]:
    from . import ratelimit

    errors: list[checks.CheckMessage] = []
    if _read(lambda: app_settings.LIMITS, errors) is not None:
        for scope in app_settings.LIMITS:
            _read(lambda scope=scope: ratelimit.rates_for(scope), errors)
    regions = _read(lambda: app_settings.ALLOWED_REGIONS, errors)
    if regions is None and not errors:
        errors.append(
            checks.Warning(
                "SMS2FA['ALLOWED_REGIONS'] is not set: codes may be sent to any country.",
                hint="List the regions your users are in (e.g. ['SE', 'NO']); SMS pumping "
                "targets expensive destinations you never serve.",
                id="sms2fa.W005",
            )
        )
    numbers = _read(lambda: app_settings.TEST_NUMBERS, errors)
    if numbers:
        errors.append(
            checks.Warning(
                f"SMS2FA['TEST_NUMBERS'] sets {len(numbers)} number(s) with fixed codes: "
                "anyone who knows them can log in as their owner.",
                hint="Keep them only while an app-store review needs them.",
                id="sms2fa.W006",
            )
        )
    return errors


def _check_limits_cache() -> list[checks.CheckMessage]:
    alias = _read(lambda: app_settings.CACHE, [])
    if alias is None or settings.DEBUG:
        return []
    backend = settings.CACHES[alias].get("BACKEND", "")
    if backend in _PER_PROCESS_CACHES:
        return [
            checks.Warning(
                f"SMS2FA limit counters use the cache {alias!r} ({backend.rsplit('.', 1)[-1]}), "
                "which each process keeps for itself: send limits and lockouts will not "
                "hold across processes.",
                hint="Point SMS2FA['CACHE'] at a shared cache such as Redis.",
                id="sms2fa.W002",
            )
        ]
    return []


def _check_tasks() -> list[checks.CheckMessage]:
    """With SEND_VIA_TASKS, a Tasks framework and the named backend must exist."""
    if not _read(lambda: app_settings.SEND_VIA_TASKS, []):
        return []
    alias = _read(lambda: app_settings.TASK_BACKEND, [])
    if alias is None:
        return []  # reported above
    try:
        import django.tasks  # noqa: F401
    except ImportError:  # Django 5.2
        try:
            import django_tasks  # noqa: F401
        except ImportError:
            return [
                checks.Error(
                    "SMS2FA['SEND_VIA_TASKS'] needs Django's Tasks framework: Django 6, or "
                    "the django-tasks backport on Django 5.2.",
                    hint="pip install 'django-sms2fa[tasks]' and add 'django_tasks' to "
                    "INSTALLED_APPS.",
                    id="sms2fa.E011",
                )
            ]
    # Without a TASKS setting, Django's default has only "default" (immediate).
    configured = getattr(settings, "TASKS", None) or {"default": {}}
    if alias not in configured:
        return [
            checks.Error(
                f"SMS2FA['TASK_BACKEND'] = {alias!r} is not a backend in TASKS.",
                hint=f"Add {alias!r} to TASKS, or set TASK_BACKEND to one of {sorted(configured)}.",
                id="sms2fa.E011",
            )
        ]
    return []


def _check_webhooks() -> list[checks.CheckMessage]:
    """A webhook secret for an alias no webhook can serve is a typo or dead config."""
    from .providers import build_provider  # imports provider modules: keep lazy

    secrets = _read(lambda: app_settings.WEBHOOK_SECRETS, [])
    providers = _read(lambda: app_settings.PROVIDERS, [])
    if not secrets or providers is None:
        return []
    warnings: list[checks.CheckMessage] = []
    for alias in sorted(secrets):
        if alias not in providers:
            warnings.append(
                checks.Warning(
                    f"SMS2FA['WEBHOOK_SECRETS'] names {alias!r}, which is not in PROVIDERS.",
                    hint=f"Use one of {sorted(providers)}.",
                    id="sms2fa.W007",
                )
            )
            continue
        provider = _read(lambda alias=alias: build_provider(alias), [])  # E002 reports errors
        if provider is not None and not provider.receives_delivery_reports():
            warnings.append(
                checks.Warning(
                    f"SMS provider {alias!r} sends no delivery reports, so its webhook "
                    "secret is never used.",
                    hint="Remove it from SMS2FA['WEBHOOK_SECRETS'], or use "
                    "sms2fa_refresh_status for providers with a status API.",
                    id="sms2fa.W007",
                )
            )
    return warnings
