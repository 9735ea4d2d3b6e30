"""The app's settings: one ``SMS2FA`` dict, read through typed properties.

Every setting is read from ``settings.SMS2FA`` at the moment it is used, so
``override_settings`` works without any reload, and every value is checked when
it is read: an unsafe value raises :class:`Sms2faConfigurationError` instead of
quietly weakening the app. ``checks.py`` reads the same properties at start-up,
so the same problem is also reported by ``manage.py check`` under the same id.

Defaults sit beside their setting; docs/reference/settings.md lists them all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

from .exceptions import Sms2faConfigurationError

#: Security bounds (docs/security.md, items 2 and 3).
MIN_CODE_LENGTH = 6
MAX_CODE_LENGTH = 10
MAX_CODE_LIFETIME = 600  # seconds: NIST SP 800-63B-4 §3.1.3.2, OWASP ASVS 6.5.5
MAX_ATTEMPTS_CEILING = 10
#: Upper bounds on durations, so that no ``retry_after`` derived from them can
#: overflow a 32-bit column (``Refusal.retry_after``) or a cache's TTL.
MAX_RATE_PERIOD = 366 * 86400  # the longest period a rate may have ("10/366d")
MAX_PUMPING_WINDOW = 7 * 86400
MAX_SUSPEND_FOR = 30 * 86400
MAX_LOCKOUT_MEMORY = 366 * 86400
MAX_RETRY_AFTER = 2**31 - 1  # stored values are clamped to this

KNOWN_KEYS = frozenset(
    {
        "PROVIDERS",
        "ROUTES",
        "FALLBACKS",
        "DEFAULT_REGION",
        "CODE_LENGTH",
        "CODE_LIFETIME",
        "MAX_ATTEMPTS",
        "SMS_TEMPLATE",
        "CACHE",
        "ADAPTER",
        "RESEND_INTERVAL",
        "PHONE_TOKEN_MAX_AGE",
        "REQUIRE_SECOND_FACTOR",
        "PASSWORDLESS_UNKNOWN_NUMBER",
        "PASSWORDLESS_LOGIN",
        "LIMITS",
        "LIMITS_WAIT_REPLICAS",
        "LIMITS_WAIT_TIMEOUT",
        "LOCKOUT_THRESHOLD",
        "LOCKOUT_MEMORY",
        "PASSWORD_LOCKOUT",
        "PUMPING",
        "ALLOWED_REGIONS",
        "ALLOWED_NUMBER_TYPES",
        "TEST_NUMBERS",
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
    }
)

#: Send limits (docs/security.md items 17-19): per phone, per client IP, per
#: user, per destination region and for the whole site.
DEFAULT_LIMITS: dict[str, list[str]] = {
    "phone": ["1/30s", "5/10m", "10/d"],
    "ip": ["20/h"],
    "user": ["10/d"],
    "country": ["500/h"],
    "global": ["1000/h"],
}
DEFAULT_PUMPING: dict[str, float] = {
    "WINDOW": 3600,  # seconds over which sends and verifications are compared
    "MIN_SENDS": 50,  # no judgement on fewer sends than this in a window
    "MIN_VERIFIED_RATIO": 0.2,  # below this share of verified challenges: trip
    "SUSPEND_FOR": 3600,  # seconds sending there stays suspended
    "PREFIX_DIGITS": 6,  # digits of the E.164 number (country code included) per prefix
}
#: Wrong passwords at the app's login (API and page): per username and per
#: client IP, the code lockout's shape (512 s at the threshold, doubling to
#: an hour), counts kept MEMORY seconds after the last failure.
DEFAULT_PASSWORD_LOCKOUT: dict[str, int] = {
    "USERNAME_THRESHOLD": 10,  # wrong passwords for one username (known or not)
    "IP_THRESHOLD": 100,  # wrong passwords from one client IP (any usernames)
    "MEMORY": 86400,
}
DEFAULT_NUMBER_TYPES = ("MOBILE", "FIXED_LINE_OR_MOBILE")

DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django_sms2fa.providers.console.ConsoleProvider"}
}

#: For the settings reference (docs/reference/settings.md, generated): each
#: setting's type, its default (a Python expression over this module's names,
#: checked against the property by tests/test_docs_reference.py) and the id of
#: the system check that reports a bad value. The text is the property's
#: docstring.
SETTINGS_DOC: dict[str, tuple[str, str, str]] = {
    "PROVIDERS": ("dict[str, dict]", "DEFAULT_PROVIDERS", "sms2fa.E002"),
    "ROUTES": ("dict[str, str]", "{}", "sms2fa.E002"),
    "FALLBACKS": ("list[str]", "[]", "sms2fa.E002"),
    "DEFAULT_REGION": ("str | None", "None", "sms2fa.E006"),
    "CODE_LENGTH": ("int", "6", "sms2fa.E003"),
    "CODE_LIFETIME": ("int | timedelta", "300", "sms2fa.E004"),
    "MAX_ATTEMPTS": ("int", "5", "sms2fa.E005"),
    "SMS_TEMPLATE": ("str", "'django_sms2fa/sms/code.txt'", "sms2fa.E001"),
    "CACHE": ("str", "'default'", "sms2fa.E007"),
    "ADAPTER": ("str", "'django_sms2fa.adapter.DefaultSms2faAdapter'", "sms2fa.E008"),
    "RESEND_INTERVAL": ("int", "30", "sms2fa.E009"),
    "PHONE_TOKEN_MAX_AGE": ("int", "900", "sms2fa.E009"),
    "REQUIRE_SECOND_FACTOR": ("bool", "False", "sms2fa.E009"),
    "PASSWORDLESS_UNKNOWN_NUMBER": ("str", "'silent'", "sms2fa.E009"),
    "PASSWORDLESS_LOGIN": ("bool", "False", "sms2fa.E009"),
    "LIMITS": ("dict[str, list[str]]", "DEFAULT_LIMITS", "sms2fa.E010"),
    "LIMITS_WAIT_REPLICAS": ("int", "0", "sms2fa.E010"),
    "LIMITS_WAIT_TIMEOUT": ("float", "0.25", "sms2fa.E010"),
    "LOCKOUT_THRESHOLD": ("int", "10", "sms2fa.E010"),
    "LOCKOUT_MEMORY": ("int", "30 * 86400", "sms2fa.E010"),
    "PASSWORD_LOCKOUT": ("dict[str, int]", "DEFAULT_PASSWORD_LOCKOUT", "sms2fa.E010"),
    "PUMPING": ("dict[str, float]", "DEFAULT_PUMPING", "sms2fa.E010"),
    "ALLOWED_REGIONS": ("list[str] | None", "None", "sms2fa.E010"),
    "ALLOWED_NUMBER_TYPES": ("list[str]", "DEFAULT_NUMBER_TYPES", "sms2fa.E010"),
    "TEST_NUMBERS": ("dict[str, str]", "{}", "sms2fa.E010"),
    "TRUSTED_PROXY_COUNT": ("int", "0", "sms2fa.E010"),
    "RETENTION_DAYS": ("int", "90", "sms2fa.E011"),
    "WEBOTP_DOMAIN": ("str | None", "None", "sms2fa.E011"),
    "WEBHOOK_SECRETS": ("dict[str, str]", "{}", "sms2fa.E011"),
    "SEND_VIA_TASKS": ("bool", "False", "sms2fa.E011"),
    "TASK_BACKEND": ("str", "'default'", "sms2fa.E011"),
    "RECOVERY_CODE_COUNT": ("int", "10", "sms2fa.E012"),
    "TOTP_ISSUER": ("str | None", "None", "sms2fa.E012"),
    "REMEMBER_BROWSER_DAYS": ("int", "0", "sms2fa.E012"),
    "STEP_UP_WINDOW": ("int", "300", "sms2fa.E012"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Sms2faSettings:
    """Typed access to ``settings.SMS2FA``. Use the module-level ``app_settings``."""

    @property
    def raw(self) -> dict[str, Any]:
        value = getattr(settings, "SMS2FA", {})
        if not isinstance(value, dict):
            raise Sms2faConfigurationError(
                f"settings.SMS2FA must be a dict, not {type(value).__name__}.",
                check_id="sms2fa.E001",
            )
        return value

    def _get(self, name: str, default: Any) -> Any:
        return self.raw.get(name, default)

    @property
    def unknown_keys(self) -> list[str]:
        """Keys of SMS2FA that no setting reads (usually a typo)."""
        return sorted(str(key) for key in self.raw if key not in KNOWN_KEYS)

    @property
    def PROVIDERS(self) -> dict[str, dict[str, Any]]:
        """Provider aliases, each ``{"BACKEND": dotted path, "OPTIONS": {...}}``.

        Default: the ``console`` provider as ``"default"`` (development only).
        """
        providers = self._get("PROVIDERS", DEFAULT_PROVIDERS)
        if not isinstance(providers, dict) or not providers:
            raise Sms2faConfigurationError(
                "SMS2FA['PROVIDERS'] must be a non-empty dict of aliases.",
                check_id="sms2fa.E002",
            )
        if "default" not in providers:
            raise Sms2faConfigurationError(
                "SMS2FA['PROVIDERS'] must define a 'default' provider.",
                check_id="sms2fa.E002",
            )
        for alias, config in providers.items():
            if not isinstance(config, dict) or not isinstance(config.get("BACKEND"), str):
                raise Sms2faConfigurationError(
                    f"SMS2FA['PROVIDERS'][{alias!r}] needs a 'BACKEND' dotted path.",
                    check_id="sms2fa.E002",
                )
            if not isinstance(config.get("OPTIONS", {}), dict):
                raise Sms2faConfigurationError(
                    f"SMS2FA['PROVIDERS'][{alias!r}]['OPTIONS'] must be a dict.",
                    check_id="sms2fa.E002",
                )
        return providers

    @property
    def ROUTES(self) -> dict[str, str]:
        """Region code (``"BR"``) → provider alias. Default: ``{}`` (all go to default)."""
        routes = self._get("ROUTES", {})
        providers = self.PROVIDERS
        if not isinstance(routes, dict):
            raise Sms2faConfigurationError(
                "SMS2FA['ROUTES'] must be a dict.", check_id="sms2fa.E002"
            )
        for region, alias in routes.items():
            if not isinstance(alias, str) or alias not in providers:
                raise Sms2faConfigurationError(
                    f"SMS2FA['ROUTES'][{region!r}] names an unknown provider {alias!r}.",
                    check_id="sms2fa.E002",
                )
        return {str(region).upper(): alias for region, alias in routes.items()}

    @property
    def FALLBACKS(self) -> list[str]:
        """Aliases tried in order when the chosen provider could not take the SMS.

        Default: ``[]`` (no failover).
        """
        fallbacks = self._get("FALLBACKS", [])
        providers = self.PROVIDERS
        if not isinstance(fallbacks, (list, tuple)):
            raise Sms2faConfigurationError(
                "SMS2FA['FALLBACKS'] must be a list of provider aliases.",
                check_id="sms2fa.E002",
            )
        for alias in fallbacks:
            if not isinstance(alias, str) or alias not in providers:
                raise Sms2faConfigurationError(
                    f"SMS2FA['FALLBACKS'] names an unknown provider {alias!r}.",
                    check_id="sms2fa.E002",
                )
        return list(fallbacks)

    @property
    def DEFAULT_REGION(self) -> str | None:
        """Region assumed for numbers typed without ``+`` (``"SE"``). Default: ``None``.

        When ``SMS2FA`` has no ``DEFAULT_REGION`` key, django-phonenumber-field's
        ``settings.PHONENUMBER_DEFAULT_REGION`` is used, so one setting serves
        both apps; it is checked the same way (``sms2fa.E006``). A key in
        ``SMS2FA`` always wins, ``None`` included (no default region at all).
        """
        if "DEFAULT_REGION" in self.raw:
            region, name = self.raw["DEFAULT_REGION"], "SMS2FA['DEFAULT_REGION']"
        else:
            region = getattr(settings, "PHONENUMBER_DEFAULT_REGION", None)
            name = "PHONENUMBER_DEFAULT_REGION"
        if region is None:
            return None
        import phonenumbers  # local: keeps conf cheap to import

        if not isinstance(region, str) or region.upper() not in (phonenumbers.SUPPORTED_REGIONS):
            raise Sms2faConfigurationError(
                f"{name} must be an ISO 3166 region code, not {region!r}.",
                check_id="sms2fa.E006",
            )
        return region.upper()

    @property
    def CODE_LENGTH(self) -> int:
        """Digits in a code we generate. Default 6; allowed 6–10."""
        length = self._get("CODE_LENGTH", 6)
        if not _is_int(length) or not MIN_CODE_LENGTH <= length <= MAX_CODE_LENGTH:
            raise Sms2faConfigurationError(
                f"SMS2FA['CODE_LENGTH'] must be an integer from {MIN_CODE_LENGTH} to "
                f"{MAX_CODE_LENGTH}; {length!r} is unsafe or invalid.",
                check_id="sms2fa.E003",
            )
        return length

    @property
    def CODE_LIFETIME(self) -> int:
        """Seconds a code stays valid. Default 300; at most 600 (int or timedelta)."""
        lifetime = self._get("CODE_LIFETIME", 300)
        if isinstance(lifetime, timedelta):
            lifetime = lifetime.total_seconds()
            lifetime = int(lifetime) if lifetime == int(lifetime) else lifetime
        if not _is_int(lifetime) or not 1 <= lifetime <= MAX_CODE_LIFETIME:
            raise Sms2faConfigurationError(
                f"SMS2FA['CODE_LIFETIME'] must be a whole number of seconds from 1 to "
                f"{MAX_CODE_LIFETIME}; {lifetime!r} is unsafe or invalid.",
                check_id="sms2fa.E004",
            )
        return lifetime

    @property
    def MAX_ATTEMPTS(self) -> int:
        """Wrong codes allowed per challenge before it is dead. Default 5; 1–10."""
        attempts = self._get("MAX_ATTEMPTS", 5)
        if not _is_int(attempts) or not 1 <= attempts <= MAX_ATTEMPTS_CEILING:
            raise Sms2faConfigurationError(
                f"SMS2FA['MAX_ATTEMPTS'] must be an integer from 1 to "
                f"{MAX_ATTEMPTS_CEILING}; {attempts!r} is unsafe or invalid.",
                check_id="sms2fa.E005",
            )
        return attempts

    @property
    def SMS_TEMPLATE(self) -> str:
        """Template rendering the SMS text. Default ``"django_sms2fa/sms/code.txt"``.

        Context: ``code``, ``purpose``, ``minutes``.
        """
        template = self._get("SMS_TEMPLATE", "django_sms2fa/sms/code.txt")
        if not isinstance(template, str) or not template:
            raise Sms2faConfigurationError(
                "SMS2FA['SMS_TEMPLATE'] must be a template name.", check_id="sms2fa.E001"
            )
        return template

    @property
    def CACHE(self) -> str:
        """Cache alias holding limit counters. Default ``"default"``.

        Its ``add``/``incr`` must be atomic across processes: Redis or
        Memcached in production. The database, file and dummy caches are not
        (check E040); the local-memory cache is atomic within one process only
        (W002 in production).
        """
        alias = self._get("CACHE", "default")
        if not isinstance(alias, str) or alias not in settings.CACHES:
            raise Sms2faConfigurationError(
                f"SMS2FA['CACHE'] names {alias!r}, which is not in settings.CACHES.",
                check_id="sms2fa.E007",
            )
        return alias

    @property
    def ADAPTER(self) -> str:
        """Dotted path of the adapter class holding the site's hooks.

        Default ``"django_sms2fa.adapter.DefaultSms2faAdapter"``.
        """
        adapter = self._get("ADAPTER", "django_sms2fa.adapter.DefaultSms2faAdapter")
        if not isinstance(adapter, str) or not adapter:
            raise Sms2faConfigurationError(
                "SMS2FA['ADAPTER'] must be a dotted path.", check_id="sms2fa.E008"
            )
        return adapter

    @property
    def RESEND_INTERVAL(self) -> int:
        """Seconds between two sends for one challenge. Default 30; 0–600."""
        interval = self._get("RESEND_INTERVAL", 30)
        if not _is_int(interval) or not 0 <= interval <= MAX_CODE_LIFETIME:
            raise Sms2faConfigurationError(
                "SMS2FA['RESEND_INTERVAL'] must be a whole number of seconds from 0 to 600.",
                check_id="sms2fa.E009",
            )
        return interval

    @property
    def PHONE_TOKEN_MAX_AGE(self) -> int:
        """Seconds a ``phone_token`` from a verified ``verify_phone`` challenge
        can be redeemed. Default 900; 1–3600."""
        age = self._get("PHONE_TOKEN_MAX_AGE", 900)
        if not _is_int(age) or not 1 <= age <= 3600:
            raise Sms2faConfigurationError(
                "SMS2FA['PHONE_TOKEN_MAX_AGE'] must be a whole number of seconds from 1 to 3600.",
                check_id="sms2fa.E009",
            )
        return age

    @property
    def REQUIRE_SECOND_FACTOR(self) -> bool:
        """Whether every user must enrol a phone before using the site. Default
        False. Enforced by ``SecondFactorMiddleware``: until a phone is
        confirmed, a logged-in user reaches only this app's pages and API and
        logout views."""
        value = self._get("REQUIRE_SECOND_FACTOR", False)
        if not isinstance(value, bool):
            raise Sms2faConfigurationError(
                "SMS2FA['REQUIRE_SECOND_FACTOR'] must be True or False.",
                check_id="sms2fa.E009",
            )
        return value

    @property
    def PASSWORDLESS_LOGIN(self) -> bool:
        """Whether a user may log in with a phone's code alone (no password).
        Default False: opt in with True *and* ``PhoneCodeBackend`` in
        ``AUTHENTICATION_BACKENDS``. Off, the passwordless pages and API
        answer 404 and send nothing."""
        value = self._get("PASSWORDLESS_LOGIN", False)
        if not isinstance(value, bool):
            raise Sms2faConfigurationError(
                "SMS2FA['PASSWORDLESS_LOGIN'] must be True or False.",
                check_id="sms2fa.E009",
            )
        return value

    @property
    def PASSWORDLESS_UNKNOWN_NUMBER(self) -> str:
        """What a passwordless request for a number without an account does:
        ``"silent"`` (default: no SMS) or ``"notify"`` (an SMS saying so).
        The HTTP answer is the same either way."""
        value = self._get("PASSWORDLESS_UNKNOWN_NUMBER", "silent")
        if value not in ("silent", "notify"):
            raise Sms2faConfigurationError(
                "SMS2FA['PASSWORDLESS_UNKNOWN_NUMBER'] must be 'silent' or 'notify'.",
                check_id="sms2fa.E009",
            )
        return value

    @property
    def LIMITS(self) -> dict[str, list[str]]:
        """Send limits per scope (``phone``, ``ip``, ``user``, ``country``,
        ``global``), each a list of rates like ``"5/10m"``. Keys given replace
        the defaults of that scope; ``[]`` turns a scope off."""
        limits = self._get("LIMITS", {})
        if not isinstance(limits, dict) or any(
            scope not in DEFAULT_LIMITS or not isinstance(rates, (list, tuple))
            for scope, rates in limits.items()
        ):
            raise Sms2faConfigurationError(
                "SMS2FA['LIMITS'] must map phone/ip/user/country/global to lists of rates.",
                check_id="sms2fa.E010",
            )
        return {**DEFAULT_LIMITS, **{k: list(v) for k, v in limits.items()}}

    @property
    def LIMITS_WAIT_REPLICAS(self) -> int:
        """Replicas that must have received a limit script's writes before its
        answer counts (Redis ``WAIT``, sent in the script's round trip).
        Default 0: don't wait. On Redis Sentinel (or a primary with replicas),
        set it to the number of replicas: then no failover can lose a count
        that let a request through (replication is asynchronous), and a step
        whose writes fewer replicas acknowledged within
        ``LIMITS_WAIT_TIMEOUT`` is refused with 503, never let through — also
        while a replica is down. Only the Redis limit scripts wait; 0–10."""
        value = self._get("LIMITS_WAIT_REPLICAS", 0)
        if not _is_int(value) or not 0 <= value <= 10:
            raise Sms2faConfigurationError(
                "SMS2FA['LIMITS_WAIT_REPLICAS'] must be an integer from 0 to 10.",
                check_id="sms2fa.E010",
            )
        return value

    @property
    def LIMITS_WAIT_TIMEOUT(self) -> float:
        """Seconds a limit script waits for ``LIMITS_WAIT_REPLICAS`` replicas to
        acknowledge its writes (``WAIT``'s timeout). Default 0.25; 0.001–10.
        Keep the cache's socket timeout above it."""
        value = self._get("LIMITS_WAIT_TIMEOUT", 0.25)
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not (0.001 <= value <= 10)
        ):
            raise Sms2faConfigurationError(
                "SMS2FA['LIMITS_WAIT_TIMEOUT'] must be a number of seconds from 0.001 to 10.",
                check_id="sms2fa.E010",
            )
        return float(value)

    @property
    def LOCKOUT_THRESHOLD(self) -> int:
        """Consecutive wrong codes (per account, or per phone without one) that
        lock SMS verification. Default 10; 3–100 (NIST SP 800-63B-4 §3.2.2)."""
        value = self._get("LOCKOUT_THRESHOLD", 10)
        if not _is_int(value) or not 3 <= value <= 100:
            raise Sms2faConfigurationError(
                "SMS2FA['LOCKOUT_THRESHOLD'] must be an integer from 3 to 100.",
                check_id="sms2fa.E010",
            )
        return value

    @property
    def LOCKOUT_MEMORY(self) -> int:
        """Seconds a failure count is kept after the last failure. Default 30
        days; 3600 s to 366 days."""
        value = self._get("LOCKOUT_MEMORY", 30 * 86400)
        if not _is_int(value) or not 3600 <= value <= MAX_LOCKOUT_MEMORY:
            raise Sms2faConfigurationError(
                f"SMS2FA['LOCKOUT_MEMORY'] must be a whole number of seconds from 3600 to "
                f"{MAX_LOCKOUT_MEMORY} (366 days).",
                check_id="sms2fa.E010",
            )
        return value

    @property
    def PASSWORD_LOCKOUT(self) -> dict[str, int]:
        """Limits on wrong passwords at ``login/``; keys as in
        ``DEFAULT_PASSWORD_LOCKOUT`` (``USERNAME_THRESHOLD`` 3–100,
        ``IP_THRESHOLD`` 3–100000, ``MEMORY`` 60 s to 366 days)."""
        value = self._get("PASSWORD_LOCKOUT", {})
        if not isinstance(value, dict) or set(value) - set(DEFAULT_PASSWORD_LOCKOUT):
            raise Sms2faConfigurationError(
                f"SMS2FA['PASSWORD_LOCKOUT'] takes the keys {sorted(DEFAULT_PASSWORD_LOCKOUT)}.",
                check_id="sms2fa.E010",
            )
        merged = {**DEFAULT_PASSWORD_LOCKOUT, **value}
        if not (
            all(_is_int(v) for v in merged.values())
            and 3 <= merged["USERNAME_THRESHOLD"] <= 100
            and 3 <= merged["IP_THRESHOLD"] <= 100_000
            and 60 <= merged["MEMORY"] <= MAX_LOCKOUT_MEMORY
        ):
            raise Sms2faConfigurationError(
                "SMS2FA['PASSWORD_LOCKOUT'] has a value out of range: USERNAME_THRESHOLD "
                "3 to 100, IP_THRESHOLD 3 to 100000, MEMORY 60 s to 366 days (integers).",
                check_id="sms2fa.E010",
            )
        return merged

    @property
    def PUMPING(self) -> dict[str, float]:
        """The SMS-pumping breaker; keys as in ``DEFAULT_PUMPING``."""
        value = self._get("PUMPING", {})
        if not isinstance(value, dict) or set(value) - set(DEFAULT_PUMPING):
            raise Sms2faConfigurationError(
                f"SMS2FA['PUMPING'] takes the keys {sorted(DEFAULT_PUMPING)}.",
                check_id="sms2fa.E010",
            )
        merged = {**DEFAULT_PUMPING, **value}
        numbers = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in merged.values()
        )
        whole = all(_is_int(merged[k]) for k in ("WINDOW", "SUSPEND_FOR", "PREFIX_DIGITS"))
        if not (
            numbers
            and whole
            and 0 <= merged["MIN_VERIFIED_RATIO"] <= 1
            and 60 <= merged["WINDOW"] <= MAX_PUMPING_WINDOW
            and merged["MIN_SENDS"] >= 1
            and 1 <= merged["SUSPEND_FOR"] <= MAX_SUSPEND_FOR
            and 2 <= merged["PREFIX_DIGITS"] <= 15
        ):
            raise Sms2faConfigurationError(
                "SMS2FA['PUMPING'] has a value out of range: WINDOW 60 s to 7 days and "
                "SUSPEND_FOR 1 s to 30 days (whole seconds), MIN_SENDS at least 1, "
                "MIN_VERIFIED_RATIO 0 to 1, PREFIX_DIGITS 2 to 15.",
                check_id="sms2fa.E010",
            )
        return merged

    @property
    def ALLOWED_REGIONS(self) -> frozenset[str] | None:
        """Regions SMS may go to (``{"SE", "NO"}``). Default ``None``: all —
        which system check W005 warns about."""
        value = self._get("ALLOWED_REGIONS", None)
        if value is None:
            return None
        import phonenumbers

        if not isinstance(value, (list, tuple, set, frozenset)) or not all(
            isinstance(r, str) and r.upper() in phonenumbers.SUPPORTED_REGIONS for r in value
        ):
            raise Sms2faConfigurationError(
                "SMS2FA['ALLOWED_REGIONS'] must be a list of region codes.",
                check_id="sms2fa.E010",
            )
        return frozenset(r.upper() for r in value)

    @property
    def ALLOWED_NUMBER_TYPES(self) -> frozenset[str]:
        """``phonenumbers.PhoneNumberType`` names SMS may go to. Default mobile
        and fixed-line-or-mobile; premium-rate, shared-cost, toll-free and
        unknown numbers are refused (docs/security.md item 20)."""
        value = self._get("ALLOWED_NUMBER_TYPES", DEFAULT_NUMBER_TYPES)
        import phonenumbers

        names = set(vars(phonenumbers.PhoneNumberType)) - {"values", "to_string"}
        if isinstance(value, str) or not value or not all(v in names for v in value):
            raise Sms2faConfigurationError(
                "SMS2FA['ALLOWED_NUMBER_TYPES'] must list phonenumbers.PhoneNumberType names.",
                check_id="sms2fa.E010",
            )
        return frozenset(value)

    @property
    def TEST_NUMBERS(self) -> dict[str, str]:
        """E.164 number → fixed code, for app-store reviewers. Never sends an SMS.
        Default ``{}``; system check W006 warns while any are set."""
        value = self._get("TEST_NUMBERS", {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.isascii() and v.isdigit()
            for k, v in value.items()
        ):
            raise Sms2faConfigurationError(
                "SMS2FA['TEST_NUMBERS'] must map E.164 numbers to digit codes.",
                check_id="sms2fa.E010",
            )
        return dict(value)

    @property
    def TRUSTED_PROXY_COUNT(self) -> int:
        """Reverse proxies in front of the site. Default 0: the client IP is
        ``REMOTE_ADDR`` and ``X-Forwarded-For`` is ignored (it is spoofable)."""
        value = self._get("TRUSTED_PROXY_COUNT", 0)
        if not _is_int(value) or not 0 <= value <= 5:
            raise Sms2faConfigurationError(
                "SMS2FA['TRUSTED_PROXY_COUNT'] must be an integer from 0 to 5.",
                check_id="sms2fa.E010",
            )
        return value

    @property
    def RETENTION_DAYS(self) -> int:
        """Days challenges and messages are kept; ``sms2fa_purge`` deletes older
        ones by default. Default 90; 1–3650."""
        value = self._get("RETENTION_DAYS", 90)
        if not _is_int(value) or not 1 <= value <= 3650:
            raise Sms2faConfigurationError(
                "SMS2FA['RETENTION_DAYS'] must be a whole number of days from 1 to 3650.",
                check_id="sms2fa.E011",
            )
        return value

    @property
    def WEBOTP_DOMAIN(self) -> str | None:
        """The site's host name (``"example.com"``) for a WebOTP line
        (``@example.com #123456``) at the end of each SMS, so browsers fill the
        code in by themselves. Default ``None``: no such line."""
        value = self._get("WEBOTP_DOMAIN", None)
        if value is None:
            return None
        if (
            not isinstance(value, str)
            or not value
            or not value.isascii()
            or any(ch.isspace() or ch in "@#/:" for ch in value)
        ):
            raise Sms2faConfigurationError(
                "SMS2FA['WEBOTP_DOMAIN'] must be a bare host name such as 'example.com'.",
                check_id="sms2fa.E011",
            )
        return value.lower()

    @property
    def WEBHOOK_SECRETS(self) -> dict[str, str]:
        """Provider alias → the shared secret its delivery webhook must carry.
        A provider without one has no webhook. Default ``{}``; each secret at
        least 16 characters."""
        value = self._get("WEBHOOK_SECRETS", {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) >= 16 for k, v in value.items()
        ):
            raise Sms2faConfigurationError(
                "SMS2FA['WEBHOOK_SECRETS'] must map provider aliases to secrets "
                "of at least 16 characters.",
                check_id="sms2fa.E011",
            )
        return dict(value)

    @property
    def SEND_VIA_TASKS(self) -> bool:
        """Hand each SMS to Django's Tasks framework instead of sending it inside
        the request. Default False."""
        value = self._get("SEND_VIA_TASKS", False)
        if not isinstance(value, bool):
            raise Sms2faConfigurationError(
                "SMS2FA['SEND_VIA_TASKS'] must be True or False.", check_id="sms2fa.E011"
            )
        return value

    @property
    def TASK_BACKEND(self) -> str:
        """Alias in ``TASKS`` of the task backend that carries the SMS. Default ``"default"``."""
        value = self._get("TASK_BACKEND", "default")
        if not isinstance(value, str) or not value:
            raise Sms2faConfigurationError(
                "SMS2FA['TASK_BACKEND'] must be the alias of a backend in TASKS.",
                check_id="sms2fa.E011",
            )
        return value

    @property
    def RECOVERY_CODE_COUNT(self) -> int:
        """Single-use recovery codes made at a time. Default 10; 5–20."""
        value = self._get("RECOVERY_CODE_COUNT", 10)
        if not _is_int(value) or not 5 <= value <= 20:
            raise Sms2faConfigurationError(
                "SMS2FA['RECOVERY_CODE_COUNT'] must be an integer from 5 to 20.",
                check_id="sms2fa.E012",
            )
        return value

    @property
    def TOTP_ISSUER(self) -> str | None:
        """The name an authenticator app shows beside the account ("Example
        Inc"). Default ``None``: the site's host name, taken from the request."""
        value = self._get("TOTP_ISSUER", None)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or ":" in value:
            raise Sms2faConfigurationError(
                "SMS2FA['TOTP_ISSUER'] must be a non-empty name without ':'.",
                check_id="sms2fa.E012",
            )
        return value.strip()

    @property
    def REMEMBER_BROWSER_DAYS(self) -> int:
        """Days a browser the user chose to remember skips the second factor
        after the password. Default 0: off (no "remember this browser" box);
        1–365 turns it on."""
        value = self._get("REMEMBER_BROWSER_DAYS", 0)
        if not _is_int(value) or not 0 <= value <= 365:
            raise Sms2faConfigurationError(
                "SMS2FA['REMEMBER_BROWSER_DAYS'] must be a whole number of days from 0 to 365.",
                check_id="sms2fa.E012",
            )
        return value

    @property
    def STEP_UP_WINDOW(self) -> int:
        """Seconds after a second factor was proved during which the session may
        add, replace or remove a sign-in method or make new recovery codes.
        Later, the user proves a factor again first. Default 300; 30–86400."""
        value = self._get("STEP_UP_WINDOW", 300)
        if not _is_int(value) or not 30 <= value <= 86400:
            raise Sms2faConfigurationError(
                "SMS2FA['STEP_UP_WINDOW'] must be a whole number of seconds from 30 to 86400.",
                check_id="sms2fa.E012",
            )
        return value


app_settings = Sms2faSettings()
