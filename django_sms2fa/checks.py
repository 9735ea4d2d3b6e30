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
E009       ``RESEND_INTERVAL``, ``PHONE_TOKEN_MAX_AGE``, ``REQUIRE_SECOND_FACTOR``,
           ``PASSWORDLESS_UNKNOWN_NUMBER`` or ``PASSWORDLESS_LOGIN`` is invalid
W001       the ``console`` provider (prints codes) with ``DEBUG = False``
W002       limit counters in a per-process cache (local memory) with
           ``DEBUG = False``: limits would not hold across processes
W003       an ``SMS2FA`` key that no setting reads (a typo?)
W004       a provider that can only carry codes shorter than ``CODE_LENGTH``
           (telefon-ip: 4 digits), so its codes are shorter
W005       ``ALLOWED_REGIONS`` is not set: codes may go to any country
W006       ``TEST_NUMBERS`` is set: fixed codes log their owners in
W007       ``WEBHOOK_SECRETS`` names an alias that is not a provider, a
           provider that sends no delivery reports, or one that signs its
           webhooks (Twilio, Vonage, SNS: the secret is never read)
E010       ``LIMITS``, ``LIMITS_WAIT_*``, ``LOCKOUT_*``, ``PASSWORD_LOCKOUT``,
           ``PUMPING``, ``ALLOWED_*``, ``TEST_NUMBERS`` or
           ``TRUSTED_PROXY_COUNT`` is invalid
           (durations are bounded: rate periods to 366 days, ``SUSPEND_FOR``
           to 30 days, ``WINDOW`` to 7 days, ``LOCKOUT_MEMORY`` to 366 days)
E020       ``SecondFactorMiddleware`` is not in ``MIDDLEWARE``: a password alone
           logs in users who have a phone
E021       django-otp's ``OTPMiddleware`` is not in ``MIDDLEWARE``
E022       ``MIDDLEWARE`` out of order (or without sessions/authentication): it
           must run Session → Authentication → OTPMiddleware →
           SecondFactorMiddleware
E023       ``PASSWORDLESS_LOGIN`` is on but ``PhoneCodeBackend`` is not in
           ``AUTHENTICATION_BACKENDS`` (the passwordless doors stay closed)
W020       ``PhoneCodeBackend`` is in ``AUTHENTICATION_BACKENDS`` but
           ``PASSWORDLESS_LOGIN`` is off (the backend logs nobody in)
E011       ``RETENTION_DAYS``, ``WEBOTP_DOMAIN``, ``WEBHOOK_SECRETS``,
           ``SEND_VIA_TASKS`` or ``TASK_BACKEND`` is invalid
E012       ``RECOVERY_CODE_COUNT``, ``TOTP_ISSUER``, ``REMEMBER_BROWSER_DAYS`` or
           ``STEP_UP_WINDOW`` is invalid
E040       limit counters in a cache whose ``add``/``incr`` are not atomic
           (database, file-based, dummy): limits would not hold at all
E041       limit counters in Memcached with several servers in ``LOCATION``: the
           client hashes keys over them, and when one drops out its keys move to
           another and their counts restart (limits let requests through)
W042       limit counters in django-redis's ``ShardClient`` with several
           servers: the limit scripts cannot run, and a change to ``LOCATION``
           moves keys to another server, where their counts restart
W043       limit counters in django-redis with several servers in ``LOCATION``
           and a ``CLIENT_CLASS`` it does not know: it may shard the keys
W044       limit counters on replicated Redis (Sentinel, or a ``LOCATION`` list
           of primary and replicas) with ``LIMITS_WAIT_REPLICAS`` = 0: a failover
           can forget the last counts, so a limit can let requests through
W041       ``PASSWORDLESS_LOGIN`` on, with ``DEBUG = False``, while the SMS is sent
           inside the request (``SEND_VIA_TASKS`` off, or an immediate task
           backend): the answer's timing tells which numbers have an account
W010       an admin site mounted in the URLconf is not an ``OTPAdminSite`` and
           keeps Django's login: that password-only login loops for users with
           a phone (use ``django_sms2fa.admin.site.Sms2faAdminSite``)
========== ==================================================================

Each check reads the setting through :mod:`django_sms2fa.conf`, the same code
that rejects the value at run time, so the two can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import checks
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template

from .conf import app_settings
from .exceptions import Sms2faConfigurationError

#: Atomic within one process only: fine for one process (development, one
#: worker), a warning in production.
_PER_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache",)
#: ``add``/``incr`` that are not atomic even between two requests: the database
#: cache reads and writes in two statements (20 of 20 concurrent sends passed a
#: 5-per-10-minutes limit), the file cache writes whole files, and the dummy
#: cache keeps nothing. Limits and lockouts on them do not hold at all.
_NON_ATOMIC_CACHES = (
    "django.core.cache.backends.db.DatabaseCache",
    "django.core.cache.backends.filebased.FileBasedCache",
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
                hint="See the settings reference: "
                "https://django-sms2fa.readthedocs.io/en/latest/reference/settings.html",
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
        "PASSWORDLESS_LOGIN",
        "LIMITS_WAIT_REPLICAS",
        "LIMITS_WAIT_TIMEOUT",
        "LOCKOUT_THRESHOLD",
        "LOCKOUT_MEMORY",
        "PASSWORD_LOCKOUT",
        "PUMPING",
        "ALLOWED_NUMBER_TYPES",
        "TRUSTED_PROXY_COUNT",
        "RETENTION_DAYS",
        "WEBOTP_DOMAIN",
        "WEBHOOK_SECRETS",
        "SEND_VIA_TASKS",
        "TASK_BACKEND",
        "RECOVERY_CODE_COUNT",
        "TOTP_ISSUER",
        "REMEMBER_BROWSER_DAYS",
        "STEP_UP_WINDOW",
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
    errors.extend(_check_passwordless_timing())
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
    if alias is None:
        return []
    backend = settings.CACHES[alias].get("BACKEND", "")
    if backend in _NON_ATOMIC_CACHES:
        # Also with DEBUG: a limit that silently counts nothing would pass
        # every test of the site and fail in production.
        return [
            checks.Error(
                f"SMS2FA limit counters use the cache {alias!r} ({backend.rsplit('.', 1)[-1]}), "
                "whose add() and incr() are not atomic: concurrent requests all pass the "
                "send limits, the lockouts and the SMS-pumping breaker.",
                hint="Point SMS2FA['CACHE'] at Redis or Memcached (or, for one process in "
                "development, a LocMemCache alias).",
                id="sms2fa.E040",
            )
        ]
    if settings.DEBUG:
        return []
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


# ------------------------------------------------- where the limits cache lives
#
# Every count is one atomic operation on the one server that holds its key (on
# Redis, a Lua script sent to the cache's write client). So the question for
# SMS2FA["CACHE"] is: does every key have exactly one home that stays put? The
# backends are told apart by their settings alone (BACKEND strings, LOCATION,
# CLIENT_CLASS): a check connects to nothing. Django's RedisCache pointed at a
# Redis Cluster node cannot be told from one Redis by its settings: not judged.

_REDIS = "django.core.cache.backends.redis.RedisCache"
_DJANGO_REDIS = "django_redis.cache.RedisCache"
#: Matched by name: the module is imported only by a site that uses it.
_REDIS_CLUSTER = "django_sms2fa.redis_cluster.RedisClusterCache"
_MEMCACHED = (
    "django.core.cache.backends.memcached.PyMemcacheCache",
    "django.core.cache.backends.memcached.PyLibMCCache",
)


@dataclass(frozen=True)
class LimitsTopology:
    """Where the limit counters of a cache live, as its settings describe it.

    ``kind`` is one of:

    - ``"redis"``: one Redis server (Django's ``RedisCache`` with one
      ``LOCATION``, django-redis with one server);
    - ``"redis-replicas"``: a primary and read replicas, the first server of a
      ``LOCATION`` list (Django's ``RedisCache``, django-redis's
      ``DefaultClient`` or ``HerdClient``). The scripts go to the primary;
      plain reads (the admin's lock state, a breaker's end) go to a replica
      and may be a replication lag behind;
    - ``"redis-sentinel"``: django-redis's ``SentinelClient``, the primary
      the sentinels name;
    - ``"redis-cluster"``: ``django_sms2fa.redis_cluster.RedisClusterCache``;
    - ``"memcached"``: one Memcached server;
    - ``"memcached-hashed"``: Memcached with several servers (E041);
    - ``"redis-sharded"``: django-redis's ``ShardClient`` with several
      servers (W042);
    - ``"redis-unknown-client"``: django-redis with several servers and a
      ``CLIENT_CLASS`` that is none of the above (W043);
    - ``"other"``: any other backend (E040 and W002 judge the local ones).

    ``servers`` is how many servers ``LOCATION`` lists (0 where it does not
    say: Sentinel, Cluster, other backends).
    """

    kind: str
    servers: int = 0


def _servers(location: Any, separators: str) -> int:
    """How many servers ``LOCATION`` lists, split the way the backend splits it."""
    if isinstance(location, str):
        parts = re.split(f"[{separators}]", location)
    elif isinstance(location, (list, tuple, set)):
        parts = list(location)
    else:
        return 0
    # A trailing separator is a typo, not a server.
    return sum(1 for part in parts if str(part).strip())


def _client_class(config: dict[str, Any]) -> Any:
    options = config.get("OPTIONS")
    options = options if isinstance(options, dict) else {}
    return options.get("CLIENT_CLASS", "django_redis.client.DefaultClient")


def _django_redis_client(path: Any) -> str:
    """``"default"``, ``"sentinel"``, ``"shard"`` or ``"unknown"`` for a
    django-redis ``CLIENT_CLASS``. Importing the class connects to nothing."""
    from django.utils.module_loading import import_string

    try:
        from django_redis.client import DefaultClient, HerdClient, SentinelClient, ShardClient

        client = import_string(path) if isinstance(path, str) else path
        if not isinstance(client, type):
            return "unknown"
        if issubclass(client, ShardClient):
            return "shard"
        if issubclass(client, SentinelClient):
            return "sentinel"
        # Subclasses may route keys their own way: only these two are known.
        if client in (DefaultClient, HerdClient):
            return "default"
    except ImportError:
        pass
    return "unknown"


def limits_topology(config: dict[str, Any]) -> LimitsTopology:
    """The :class:`LimitsTopology` of one ``CACHES`` entry (no connection is made)."""
    backend = config.get("BACKEND", "")
    location = config.get("LOCATION", "")
    if backend == _REDIS_CLUSTER:
        return LimitsTopology("redis-cluster")
    if backend == _REDIS:
        servers = _servers(location, ";,")
        return LimitsTopology("redis-replicas" if servers > 1 else "redis", servers)
    if backend == _DJANGO_REDIS:
        servers = _servers(location, ",")
        client = _django_redis_client(_client_class(config))
        if client == "sentinel":
            return LimitsTopology("redis-sentinel")
        if servers <= 1:  # one server holds every key, whatever the client
            return LimitsTopology("redis", servers)
        kinds = {"shard": "redis-sharded", "default": "redis-replicas"}
        return LimitsTopology(kinds.get(client, "redis-unknown-client"), servers)
    if backend in _MEMCACHED:
        servers = _servers(location, ";,")
        return LimitsTopology("memcached-hashed" if servers > 1 else "memcached", servers)
    return LimitsTopology("other")


def _wait_replicas() -> int | None:
    """``LIMITS_WAIT_REPLICAS``; ``None`` when invalid (E010 reports it)."""
    try:
        return int(getattr(app_settings, "LIMITS_WAIT_REPLICAS", 0))
    except (Sms2faConfigurationError, TypeError, ValueError):
        return None


@checks.register(checks.Tags.caches, checks.Tags.security, "sms2fa")
def check_limits_topology(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E041, W042, W043, W044: a limits cache where a key has no single home
    that stays put, or a replicated one whose failover can forget counts.

    Silent for the supported topologies (see :class:`LimitsTopology`). The
    messages name the alias and the server count, never ``LOCATION`` (a
    Redis URL may hold a password).
    """
    alias = _read(lambda: app_settings.CACHE, [])
    if alias is None:
        return []  # E001 or E007 says why
    config = settings.CACHES[alias]
    if not isinstance(config, dict):
        return []  # Django's cache handler refuses it
    topology = limits_topology(config)
    where = f"SMS2FA limit counters use the cache {alias!r}"
    own_cache = (
        "Give the limits a cache alias of their own on one Redis server, Redis Sentinel "
        "or django_sms2fa.redis_cluster.RedisClusterCache, and name it in SMS2FA['CACHE']."
    )
    if topology.kind == "memcached-hashed":
        backend = config["BACKEND"].rsplit(".", 1)[-1]
        return [
            checks.Error(
                f"{where} ({backend}), which lists {topology.servers} servers in LOCATION: "
                "the client hashes each key to one of them, and when a server drops out "
                "(or the list changes) its keys move to another, where their counts start "
                "again from zero: the send limits, the lockouts and the SMS-pumping "
                "breaker let requests through.",
                hint="Give the limits a cache alias with one Memcached server, or Redis, "
                "and name it in SMS2FA['CACHE'].",
                id="sms2fa.E041",
            )
        ]
    if topology.kind == "redis-sharded":
        return [
            checks.Warning(
                f"{where} (django-redis ShardClient), which spreads keys over "
                f"{topology.servers} servers by a hash of their names: the limit scripts "
                "cannot run there (each count is a call of its own), and a change to "
                "LOCATION moves keys to another server, where their counts start again "
                "from zero.",
                hint=own_cache,
                id="sms2fa.W042",
            )
        ]
    if topology.kind == "redis-unknown-client":
        client = _client_class(config)
        name = client if isinstance(client, str) else getattr(client, "__name__", "?")
        return [
            checks.Warning(
                f"{where} (django-redis with {topology.servers} servers and CLIENT_CLASS "
                f"{name!r}), a client django-sms2fa does not know: if it spreads keys "
                "over the servers, each count may land on another server and the limits "
                "do not hold.",
                hint="Use django_redis.client.DefaultClient (a primary and its replicas) "
                "or SentinelClient for the limits cache, or silence sms2fa.W043 if your "
                "client writes every key to one primary.",
                id="sms2fa.W043",
            )
        ]
    if topology.kind in ("redis-sentinel", "redis-replicas") and _wait_replicas() == 0:
        if topology.kind == "redis-sentinel":
            what = "Redis Sentinel (django-redis SentinelClient)"
            when = "after a failover, the new primary lacks"
        else:
            what = f"a Redis primary with {topology.servers - 1} replica(s) in LOCATION"
            when = "if a replica is ever promoted, it lacks"
        return [
            checks.Warning(
                f"{where}, {what}, and SMS2FA['LIMITS_WAIT_REPLICAS'] is 0: replication "
                f"is asynchronous, so {when} the last counts the old primary had not "
                "passed on, and for a moment a limit or a lockout lets requests through.",
                hint="Set SMS2FA['LIMITS_WAIT_REPLICAS'] to the number of replicas: each "
                "limit script then waits until every replica has its writes, and a step "
                "they did not all confirm is refused (503), never let through. Fewer than "
                "all is not enough: the replica promoted may be one that had not caught up.",
                id="sms2fa.W044",
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
        elif provider is not None and provider.signs_webhooks():
            warnings.append(
                checks.Warning(
                    f"SMS provider {alias!r} signs its webhooks; its signature is checked "
                    "instead, so the webhook secret is never read.",
                    hint="Remove it from SMS2FA['WEBHOOK_SECRETS'] and call the webhook URL "
                    "without ?secret=.",
                    id="sms2fa.W007",
                )
            )
    return warnings


# ------------------------------------------------ middleware and backends

#: The order the second factor needs, each entry after the one before it.
_MIDDLEWARE_CHAIN = (
    ("django.contrib.sessions.middleware.SessionMiddleware", "sms2fa.E022"),
    ("django.contrib.auth.middleware.AuthenticationMiddleware", "sms2fa.E022"),
    ("django_otp.middleware.OTPMiddleware", "sms2fa.E021"),
    ("django_sms2fa.middleware.SecondFactorMiddleware", "sms2fa.E020"),
)


def _middleware_index(path: str) -> int | None:
    """Position in ``MIDDLEWARE`` of ``path`` or a subclass of it."""
    from django.utils.module_loading import import_string

    wanted = import_string(path)
    for index, entry in enumerate(settings.MIDDLEWARE):
        if entry == path:
            return index
        try:
            found = import_string(entry)
        except ImportError:
            continue  # Django's own check reports it
        if isinstance(found, type) and issubclass(found, wanted):
            return index
    return None


@checks.register(checks.Tags.security, "sms2fa")
def check_middleware_and_backends(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Without ``SecondFactorMiddleware`` (or with it before django-otp's), a
    password alone reaches every view; a half-done passwordless setup."""
    errors: list[checks.CheckMessage] = []
    order = " → ".join(path.rsplit(".", 1)[1] for path, _id in _MIDDLEWARE_CHAIN)
    positions = []
    for path, check_id in _MIDDLEWARE_CHAIN:
        index = _middleware_index(path)
        if index is None:
            errors.append(
                checks.Error(
                    f"{path} is not in MIDDLEWARE: a password alone would log in users "
                    "who have a phone.",
                    hint=f"MIDDLEWARE must contain, in this order: {order}.",
                    id=check_id,
                )
            )
        positions.append(index)
    present = [index for index in positions if index is not None]
    if present != sorted(present):
        errors.append(
            checks.Error(
                "MIDDLEWARE is out of order for django-sms2fa: each of these needs the "
                "one before it.",
                hint=f"Order them: {order}.",
                id="sms2fa.E022",
            )
        )
    from .session_keys import is_phone_backend

    setting = _read(lambda: app_settings.PASSWORDLESS_LOGIN, [])
    listed = any(is_phone_backend(path) for path in settings.AUTHENTICATION_BACKENDS)
    if setting and not listed:
        errors.append(
            checks.Error(
                "SMS2FA['PASSWORDLESS_LOGIN'] is on but PhoneCodeBackend is not in "
                "AUTHENTICATION_BACKENDS: passwordless login stays off.",
                hint="Add 'django_sms2fa.backends.PhoneCodeBackend' to "
                "AUTHENTICATION_BACKENDS, or set PASSWORDLESS_LOGIN to False.",
                id="sms2fa.E023",
            )
        )
    elif listed and setting is False:
        errors.append(
            checks.Warning(
                "PhoneCodeBackend is in AUTHENTICATION_BACKENDS but "
                "SMS2FA['PASSWORDLESS_LOGIN'] is off: it logs nobody in.",
                hint="Set SMS2FA['PASSWORDLESS_LOGIN'] = True to offer passwordless login, "
                "or remove the backend.",
                id="sms2fa.W020",
            )
        )
    return errors


# Task backends that run the task inside enqueue(), in the request: Django's
# default when TASKS is not set.
_IN_REQUEST_TASK_BACKENDS = (
    "django.tasks.backends.immediate.ImmediateBackend",
    "django_tasks.backends.immediate.ImmediateBackend",
)


def _check_passwordless_timing() -> list[checks.CheckMessage]:
    """Passwordless login must answer before the SMS is sent (W041).

    A passwordless request for a number with an account hands an SMS to the
    provider; one for a number without an account does not. Sent inside the
    request, the provider's latency (often 100 ms and more) shows in the
    answer's timing and tells who has an account, whatever the answer says.
    Through a task queue with a worker, both answers wait for nothing.
    """
    if settings.DEBUG or not _read(lambda: app_settings.PASSWORDLESS_LOGIN, []):
        return []
    hint = (
        "Set SMS2FA['SEND_VIA_TASKS'] = True with a task backend that runs in a worker "
        "process (e.g. django-tasks-db's DatabaseBackend and its db_worker); see "
        "https://django-sms2fa.readthedocs.io/en/latest/howto/passwordless.html"
    )
    if not _read(lambda: app_settings.SEND_VIA_TASKS, []):
        return [
            checks.Warning(
                "SMS2FA['PASSWORDLESS_LOGIN'] is on while SMS2FA['SEND_VIA_TASKS'] is off: "
                "a passwordless request waits for the SMS provider only when the number has "
                "an account, so the time of the answer tells which numbers have one.",
                hint=hint,
                id="sms2fa.W041",
            )
        ]
    alias = _read(lambda: app_settings.TASK_BACKEND, [])
    configured = getattr(settings, "TASKS", None) or {}
    if configured and alias not in configured:
        return []  # E011 says so
    backend = (configured.get(alias) or {}).get("BACKEND", _IN_REQUEST_TASK_BACKENDS[0])
    if backend in _IN_REQUEST_TASK_BACKENDS:
        return [
            checks.Warning(
                f"SMS2FA['PASSWORDLESS_LOGIN'] is on and SMS2FA['TASK_BACKEND'] = {alias!r} "
                f"is {backend.rsplit('.', 1)[-1]}, which runs each task inside the request: a "
                "passwordless request waits for the SMS provider only when the number has an "
                "account, so the time of the answer tells which numbers have one.",
                hint=hint,
                id="sms2fa.W041",
            )
        ]
    return []


# ------------------------------------------------------------------ the admin


@checks.register(checks.Tags.security, "sms2fa")
def check_admin_site(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W010: an admin whose login can never let a user with a phone in.

    Django's plain ``AdminSite`` logs in with a password alone; for a user
    with a confirmed phone ``SecondFactorMiddleware`` keeps that session
    anonymous until a code is checked, so the admin's login page comes back
    after every correct password, without a word. Only sites mounted in the
    URLconf count (an unmounted ``admin.site`` logs nobody in); each is found
    by the ``admin_site`` Django puts on its views; a site with a login of
    its own (a subclass, or ``site.login = ...``) is left alone. Loading the
    URLconf is what Django's own URL checks do: no database query.
    """
    from django.apps import apps

    if not apps.is_installed("django.contrib.admin"):
        return []
    from django_otp.admin import OTPAdminSite

    return [
        checks.Warning(
            f"The admin site {site.name!r} ({type(site).__name__}) logs in with a password "
            "alone: users with a phone cannot log in through its login page (it comes back "
            "after every correct password).",
            hint="Use django_sms2fa.admin.site.Sms2faAdminSite: in urls.py, "
            "use_sms2fa_login(admin.site) (from django_sms2fa.admin.site), which sends the "
            "admin's login to this app's login pages.",
            obj=site,
            id="sms2fa.W010",
        )
        for site in _mounted_admin_sites()
        if not isinstance(site, OTPAdminSite) and not _has_own_login(site)
    ]


def _has_own_login(site: Any) -> bool:
    """Whether ``site`` replaced Django's password-only login (in its class or
    on the instance): a site that sends its login elsewhere is its author's
    design, not the loop this check is about."""
    from django.contrib.admin import AdminSite

    return "login" in vars(site) or type(site).login is not AdminSite.login


def _mounted_admin_sites() -> list[Any]:
    """The admin sites the root URLconf serves (none when it does not load:
    Django's URL checks report that)."""
    from django.urls import URLResolver, get_resolver

    try:
        stack = list(get_resolver().url_patterns)
    except Exception:
        return []
    sites: dict[int, Any] = {}
    while stack:
        pattern = stack.pop()
        if isinstance(pattern, URLResolver):
            try:
                stack.extend(pattern.url_patterns)
            except Exception:
                continue
            continue
        site = getattr(getattr(pattern, "callback", None), "admin_site", None)
        if site is not None:
            sites.setdefault(id(site), site)
    return list(sites.values())
