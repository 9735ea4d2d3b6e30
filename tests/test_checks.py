"""System checks: each id fires on its own bad setting and goes away when fixed."""

from __future__ import annotations

from typing import Any

import pytest

from django.conf import settings as dj_settings
from django.core.checks import Error, Warning, run_checks

from django_sms2fa.checks import check_settings
from django_sms2fa.providers.base import BaseProvider
from django_sms2fa.types import Capabilities

LOCMEM = "django_sms2fa.providers.locmem.LocmemProvider"
CONSOLE = "django_sms2fa.providers.console.ConsoleProvider"
SECRET = "s3cr3t-token"

LOCMEM_CACHE = "django.core.cache.backends.locmem.LocMemCache"
DUMMY_CACHE = "django.core.cache.backends.dummy.DummyCache"
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"
REDIS_LOCATION = "redis://127.0.0.1:6379/15"

# tests/settings.py runs with DEBUG = False and no ALLOWED_REGIONS (W005: codes may go
# anywhere). On SQLite its cache is LocMemCache, which is exactly what W002 warns about
# (limit counters would not be shared between processes); on PostgreSQL it is Redis.
# Everything else there is valid, so these are the only messages it produces.
BASELINE = {"sms2fa.W002"} if dj_settings.CACHES["default"]["BACKEND"] == LOCMEM_CACHE else set()


class NoModeProvider(BaseProvider):
    """A provider that can do nothing: no text, no code, no verification."""

    provider_name = "No mode"
    capabilities = Capabilities()


class FourDigitProvider(BaseProvider):
    """Delivers text, but only codes of up to four digits."""

    provider_name = "Four digits"
    capabilities = Capabilities(delivers_text=True, max_code_length=4)


class KeyedProvider(BaseProvider):
    """Takes exactly one option, ``api_key``; anything else is a TypeError."""

    provider_name = "Keyed"

    def __init__(self, *, api_key: str, alias: str = "default") -> None:
        super().__init__(alias=alias)
        self.api_key = api_key


def sms2fa_ids() -> set[str]:
    """Ids of the sms2fa messages Django's check framework reports right now.

    W005 (no region allow-list) is left out: the test settings never set one,
    and it has tests of its own below. So is W041 (passwordless login with the
    SMS sent in the request): the test settings send in the request on purpose,
    and tests/test_seams_timing.py tests it.
    """
    return {message.id for message in run_checks(tags=["sms2fa"])} - {
        "sms2fa.W005",
        "sms2fa.W041",
    }


def provider(backend: str, **options: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"BACKEND": backend}
    if options:
        config["OPTIONS"] = options
    return config


def test_the_test_settings_only_warn_about_the_local_memory_cache():
    """Unmodified tests/settings.py: nothing but W002 (see BASELINE)."""
    assert sms2fa_ids() == BASELINE


def test_the_checks_are_registered_under_the_sms2fa_tag():
    """run_checks(tags=["sms2fa"]) and a direct call to check_settings agree."""
    assert {message.id for message in check_settings()} == all_ids()


# (bad SMS2FA changes, fixed SMS2FA changes, ids expected with the bad value)
CASES = [
    pytest.param(
        {"SMS_TEMPLATE": "django_sms2fa/sms/missing.txt"},
        {"SMS_TEMPLATE": "django_sms2fa/sms/code.txt"},
        BASELINE | {"sms2fa.E001"},
        id="E001 missing SMS_TEMPLATE",
    ),
    pytest.param(
        {"SMS_TEMPLATE": ""},
        {"SMS_TEMPLATE": "django_sms2fa/sms/code.txt"},
        BASELINE | {"sms2fa.E001"},
        id="E001 empty SMS_TEMPLATE",
    ),
    pytest.param(
        {"PROVIDERS": {"default": provider("no.such.Module")}},
        {"PROVIDERS": {"default": provider(LOCMEM)}},
        BASELINE | {"sms2fa.E002"},
        id="E002 BACKEND does not import",
    ),
    pytest.param(
        {"PROVIDERS": {"default": provider("django_sms2fa.providers.locmem.NoSuchClass")}},
        {"PROVIDERS": {"default": provider(LOCMEM)}},
        BASELINE | {"sms2fa.E002"},
        id="E002 BACKEND class missing",
    ),
    pytest.param(
        {"PROVIDERS": {"default": provider("django_sms2fa.types.SendResult")}},
        {"PROVIDERS": {"default": provider(LOCMEM)}},
        BASELINE | {"sms2fa.E002"},
        id="E002 BACKEND not a provider",
    ),
    pytest.param(
        {"PROVIDERS": {"default": provider(LOCMEM, bogus=1)}},
        {"PROVIDERS": {"default": provider(LOCMEM, mode="code")}},
        BASELINE | {"sms2fa.E002"},
        id="E002 unknown OPTIONS key",
    ),
    pytest.param(
        {"PROVIDERS": {"default": provider("tests.test_checks.KeyedProvider")}},
        {"PROVIDERS": {"default": provider("tests.test_checks.KeyedProvider", api_key="k")}},
        BASELINE | {"sms2fa.E002"},
        id="E002 required option missing",
    ),
    pytest.param(
        {"PROVIDERS": {"default": provider(LOCMEM, mode="carrier-pigeon")}},
        {"PROVIDERS": {"default": provider(LOCMEM, mode="returns_code")}},
        BASELINE | {"sms2fa.E002"},
        id="E002 locmem mode unknown",
    ),
    pytest.param(
        {"ROUTES": {"BR": "twilio"}},
        {"ROUTES": {"BR": "default"}},
        BASELINE | {"sms2fa.E002"},
        id="E002 route to unknown alias",
    ),
    pytest.param(
        {"FALLBACKS": ["twilio"]},
        {"FALLBACKS": ["default"]},
        BASELINE | {"sms2fa.E002"},
        id="E002 fallback to unknown alias",
    ),
    pytest.param(
        {"PROVIDERS": {"sms": provider(LOCMEM)}},
        {"PROVIDERS": {"default": provider(LOCMEM)}},
        BASELINE | {"sms2fa.E002"},
        id="E002 no default provider",
    ),
    pytest.param(
        {"PROVIDERS": {"default": provider("tests.test_checks.NoModeProvider")}},
        {"PROVIDERS": {"default": provider(LOCMEM, mode="verifies_code")}},
        BASELINE | {"sms2fa.E002"},
        id="E002 provider with no usable mode",
    ),
    pytest.param(
        {"PROVIDERS": {"default": provider("tests.test_checks.FourDigitProvider")}},
        {"PROVIDERS": {"default": provider(LOCMEM, mode="text")}},
        BASELINE | {"sms2fa.E002"},
        id="E002 provider cannot take a 6-digit code",
    ),
    pytest.param(
        {
            "PROVIDERS": {
                "default": provider(LOCMEM),
                "backup": provider("tests.test_checks.NoModeProvider"),
            }
        },
        {"PROVIDERS": {"default": provider(LOCMEM), "backup": provider(LOCMEM)}},
        BASELINE | {"sms2fa.E002"},
        id="E002 every alias is checked, not only default",
    ),
    pytest.param({"CODE_LENGTH": 5}, {"CODE_LENGTH": 6}, BASELINE | {"sms2fa.E003"}, id="E003"),
    pytest.param(
        {"CODE_LIFETIME": 601}, {"CODE_LIFETIME": 600}, BASELINE | {"sms2fa.E004"}, id="E004"
    ),
    pytest.param({"MAX_ATTEMPTS": 11}, {"MAX_ATTEMPTS": 10}, BASELINE | {"sms2fa.E005"}, id="E005"),
    pytest.param(
        {"DEFAULT_REGION": "XX"}, {"DEFAULT_REGION": "SE"}, BASELINE | {"sms2fa.E006"}, id="E006"
    ),
    # With an unknown cache alias there is no cache to judge, so W002 goes quiet.
    pytest.param({"CACHE": "nope"}, {"CACHE": "default"}, {"sms2fa.E007"}, id="E007"),
    pytest.param(
        {"CODE_LENGHT": 8}, {"CODE_LENGTH": 8}, BASELINE | {"sms2fa.W003"}, id="W003 typo"
    ),
]


@pytest.mark.parametrize(("bad", "fixed", "expected"), CASES)
def test_each_check_fires_on_its_bad_setting_and_clears_when_fixed(settings, bad, fixed, expected):
    """The bad value yields exactly its own id; the corrected value yields none."""
    base = dict(settings.SMS2FA)
    settings.SMS2FA = {**base, **bad}
    assert sms2fa_ids() == expected

    settings.SMS2FA = {**base, **fixed}
    assert sms2fa_ids() == BASELINE


def test_check_levels_match_their_ids(settings):
    """E ids are Errors (they stop ``manage.py check``); W ids are Warnings."""
    settings.SMS2FA = {**settings.SMS2FA, "CODE_LENGTH": 5, "CODE_LENGHT": 5}
    by_id = {message.id: message for message in run_checks(tags=["sms2fa"])}
    assert isinstance(by_id["sms2fa.E003"], Error)
    assert isinstance(by_id["sms2fa.W005"], Warning)
    assert isinstance(by_id["sms2fa.W003"], Warning)
    assert not isinstance(by_id["sms2fa.W003"], Error)


@pytest.mark.parametrize("value", [["PROVIDERS"], "oops", None])
def test_e001_when_sms2fa_is_not_a_dict(settings, value):
    """A non-dict SMS2FA is E001 and nothing else is judged; a dict clears it."""
    good = dict(settings.SMS2FA)
    settings.SMS2FA = value
    assert sms2fa_ids() == {"sms2fa.E001"}

    settings.SMS2FA = good
    assert sms2fa_ids() == BASELINE


def test_w001_console_provider_with_debug_false(settings):
    """The console provider prints codes: W001 when DEBUG is False."""
    settings.DEBUG = False
    settings.SMS2FA = {**settings.SMS2FA, "PROVIDERS": {"default": provider(CONSOLE)}}
    assert sms2fa_ids() == BASELINE | {"sms2fa.W001"}

    settings.SMS2FA = {**settings.SMS2FA, "PROVIDERS": {"default": provider(LOCMEM)}}
    assert sms2fa_ids() == BASELINE


def test_w001_names_each_console_alias(settings):
    """A console provider hiding behind a fallback alias is still reported."""
    settings.SMS2FA = {
        **settings.SMS2FA,
        "PROVIDERS": {"default": provider(LOCMEM), "backup": provider(CONSOLE)},
    }
    w001 = [m for m in run_checks(tags=["sms2fa"]) if m.id == "sms2fa.W001"]
    assert len(w001) == 1
    assert "'backup'" in w001[0].msg


def test_no_w001_for_the_console_provider_with_debug_true(settings):
    """In development (DEBUG True) printing codes is the point: no W001 (and no W002)."""
    settings.DEBUG = True
    settings.SMS2FA = {**settings.SMS2FA, "PROVIDERS": {"default": provider(CONSOLE)}}
    assert sms2fa_ids() == set()


@pytest.mark.parametrize("backend", [LOCMEM_CACHE])
def test_w002_per_process_cache_with_debug_false(settings, backend):
    """LocMemCache cannot hold limits across processes: W002. (DummyCache holds
    none at all: E040, tests/test_seams_limits.py.)"""
    settings.DEBUG = False
    settings.CACHES = {"default": {"BACKEND": backend}}
    assert sms2fa_ids() == {"sms2fa.W002"}


@pytest.mark.parametrize("backend", [LOCMEM_CACHE])
def test_no_w002_with_debug_true(settings, backend):
    """In development a per-process cache is fine: no W002."""
    settings.DEBUG = True
    settings.CACHES = {"default": {"BACKEND": backend}}
    assert sms2fa_ids() == set()


def test_no_w002_with_a_shared_redis_cache(settings):
    """A Redis cache is shared by all processes: no W002 (no connection is made)."""
    settings.DEBUG = False
    settings.CACHES = {"default": {"BACKEND": REDIS_CACHE, "LOCATION": REDIS_LOCATION}}
    assert sms2fa_ids() == set()


def test_w002_judges_the_cache_named_by_sms2fa_cache(settings):
    """Only the alias in SMS2FA['CACHE'] matters, not CACHES['default']."""
    settings.DEBUG = False
    settings.CACHES = {
        "default": {"BACKEND": LOCMEM_CACHE},
        "limits": {"BACKEND": REDIS_CACHE, "LOCATION": REDIS_LOCATION},
    }
    settings.SMS2FA = {**settings.SMS2FA, "CACHE": "limits"}
    assert sms2fa_ids() == set()

    settings.SMS2FA = {**settings.SMS2FA, "CACHE": "default"}
    assert sms2fa_ids() == {"sms2fa.W002"}


# Broken provider configurations with a secret among (or as) their OPTIONS.
LEAKY_PROVIDERS = [
    pytest.param({"default": provider(LOCMEM, api_token=SECRET)}, id="unknown option"),
    pytest.param(
        {"default": provider("tests.test_checks.KeyedProvider", api_key=SECRET, secret=SECRET)},
        id="unexpected keyword argument",
    ),
    pytest.param(
        {"default": {"BACKEND": "no.such.Module", "OPTIONS": {"api_key": SECRET}}},
        id="BACKEND does not import",
    ),
    pytest.param(
        {"default": {"BACKEND": "django_sms2fa.types.SendResult", "OPTIONS": {"k": SECRET}}},
        id="BACKEND not a provider",
    ),
    pytest.param({"default": {"OPTIONS": {"api_key": SECRET}}}, id="BACKEND missing"),
    pytest.param({"default": {"BACKEND": LOCMEM, "OPTIONS": SECRET}}, id="OPTIONS a str"),
    pytest.param(
        {"sms": {"BACKEND": LOCMEM, "OPTIONS": {"api_key": SECRET}}}, id="no default alias"
    ),
    pytest.param(
        {"default": provider("tests.test_checks.NoModeProvider", api_key=SECRET)},
        id="no usable mode plus unknown option",
    ),
    pytest.param(
        {
            "default": provider(LOCMEM),
            "backup": provider("tests.test_checks.KeyedProvider", api_key=SECRET),
        },
        id="valid provider holding a secret",
    ),
]


@pytest.mark.parametrize("providers", LEAKY_PROVIDERS)
def test_check_messages_never_contain_option_values(settings, providers):
    """Security: no message, hint or rendering of a check shows a provider secret."""
    settings.SMS2FA = {**settings.SMS2FA, "PROVIDERS": providers, "CODE_LENGTH": 5}
    messages = run_checks(tags=["sms2fa"])
    assert messages  # at least the E003 and W002 above
    for message in messages:
        assert SECRET not in str(message)
        assert SECRET not in (message.hint or "")
        assert SECRET not in repr(message)


@pytest.mark.parametrize(
    ("bad", "check_id"),
    [
        ({"ROUTES": {"BR": ["default"]}}, "sms2fa.E002"),
        ({"FALLBACKS": [["default"]]}, "sms2fa.E002"),
        ({"CACHE": ["default"]}, "sms2fa.E007"),
    ],
)
def test_an_unhashable_alias_is_reported_not_raised(settings, bad, check_id):
    """A list where an alias belongs should be an Error message, not a crash."""
    settings.SMS2FA = {**settings.SMS2FA, **bad}
    assert check_id in sms2fa_ids()


class ExplodingProvider(BaseProvider):
    """A provider whose constructor fails in its own way, quoting its option."""

    def __init__(self, *, token: str, **options):
        raise ValueError(f"token {token} is malformed")


def test_a_provider_constructor_crash_is_reported_without_its_text(settings):
    settings.SMS2FA = {
        **settings.SMS2FA,
        "PROVIDERS": {
            "default": {
                "BACKEND": "tests.test_checks.ExplodingProvider",
                "OPTIONS": {"token": SECRET},
            }
        },
    }
    messages = [m for m in run_checks(tags=["sms2fa"]) if m.id == "sms2fa.E002"]
    assert len(messages) == 1
    assert "ValueError" in messages[0].msg
    assert SECRET not in str(messages[0])


def test_an_sms_template_that_does_not_compile_is_reported(settings, tmp_path):
    (tmp_path / "broken_sms.txt").write_text("{% if %}{{ code }}")
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]},
    ]
    settings.SMS2FA = {**settings.SMS2FA, "SMS_TEMPLATE": "broken_sms.txt"}
    assert "sms2fa.E001" in sms2fa_ids()


def test_check_messages_name_their_id_once(settings):
    settings.SMS2FA = {**settings.SMS2FA, "CODE_LENGTH": 5}
    (message,) = [m for m in run_checks(tags=["sms2fa"]) if m.id == "sms2fa.E003"]
    assert str(message).count("sms2fa.E003") == 1


@pytest.mark.parametrize(
    ("bad", "check_id"),
    [
        ({"ADAPTER": "no.such.Adapter"}, "sms2fa.E008"),
        ({"ADAPTER": ""}, "sms2fa.E008"),
        ({"RESEND_INTERVAL": -1}, "sms2fa.E009"),
        ({"RESEND_INTERVAL": 601}, "sms2fa.E009"),
        ({"PHONE_TOKEN_MAX_AGE": 0}, "sms2fa.E009"),
        ({"REQUIRE_SECOND_FACTOR": "yes"}, "sms2fa.E009"),
        ({"PASSWORDLESS_UNKNOWN_NUMBER": "tell"}, "sms2fa.E009"),
    ],
)
def test_account_settings_are_checked(settings, bad, check_id):
    settings.SMS2FA = {**settings.SMS2FA, **bad}
    assert check_id in sms2fa_ids()
    settings.SMS2FA = {key: value for key, value in settings.SMS2FA.items() if key not in bad}
    assert check_id not in sms2fa_ids()


def all_ids() -> set[str]:
    return {message.id for message in run_checks(tags=["sms2fa"])}


def test_w005_warns_while_codes_may_go_anywhere(settings):
    assert "sms2fa.W005" in all_ids()
    settings.SMS2FA = {**settings.SMS2FA, "ALLOWED_REGIONS": ["SE", "NO"]}
    assert "sms2fa.W005" not in all_ids()


def test_w006_warns_while_test_numbers_are_set(settings):
    assert "sms2fa.W006" not in all_ids()
    settings.SMS2FA = {**settings.SMS2FA, "TEST_NUMBERS": {"+46701234599": "123456"}}
    messages = [m for m in run_checks(tags=["sms2fa"]) if m.id == "sms2fa.W006"]
    assert len(messages) == 1
    assert "123456" not in str(messages[0])


@pytest.mark.parametrize(
    "bad",
    [
        {"LIMITS": {"phone": ["5 per minute"]}},
        {"LIMITS": {"planet": ["1/d"]}},
        {"LIMITS": ["1/d"]},
        {"LOCKOUT_THRESHOLD": 2},
        {"LOCKOUT_THRESHOLD": 101},
        {"LOCKOUT_MEMORY": 60},
        {"PUMPING": {"MIN_VERIFIED_RATIO": 2}},
        {"PUMPING": {"WINDOWS": 60}},
        {"ALLOWED_REGIONS": ["XX"]},
        {"ALLOWED_REGIONS": "SE"},
        {"ALLOWED_NUMBER_TYPES": ["CHEAP"]},
        {"ALLOWED_NUMBER_TYPES": []},
        {"TEST_NUMBERS": {"+46701234599": "１２３４５６"}},
        {"TRUSTED_PROXY_COUNT": -1},
    ],
)
def test_abuse_settings_are_checked(settings, bad):
    settings.SMS2FA = {**settings.SMS2FA, **bad}
    assert "sms2fa.E010" in all_ids()


@pytest.mark.parametrize(
    "bad",
    [
        {"RETENTION_DAYS": 0},
        {"RETENTION_DAYS": "90d"},
        {"RETENTION_DAYS": True},
        {"WEBOTP_DOMAIN": ""},
        {"WEBOTP_DOMAIN": "https://example.com"},
        {"WEBOTP_DOMAIN": "example.com #1"},
        {"WEBOTP_DOMAIN": "exämple.com"},
        {"WEBHOOK_SECRETS": {"default": "short"}},
        {"WEBHOOK_SECRETS": ["default"]},
        {"SEND_VIA_TASKS": "yes"},
        {"TASK_BACKEND": ""},
    ],
)
def test_operations_settings_are_checked(settings, bad):
    """Settings of the audit, delivery, WebOTP and task features refuse bad values (E011)."""
    settings.SMS2FA = {**settings.SMS2FA, **bad}
    assert "sms2fa.E011" in all_ids()


def test_operations_settings_defaults_and_good_values(settings):
    from django_sms2fa.conf import app_settings

    assert (app_settings.RETENTION_DAYS, app_settings.WEBOTP_DOMAIN) == (90, None)
    assert (app_settings.WEBHOOK_SECRETS, app_settings.SEND_VIA_TASKS) == ({}, False)
    assert app_settings.TASK_BACKEND == "default"
    settings.SMS2FA = {
        **settings.SMS2FA,
        "RETENTION_DAYS": 30,
        "WEBOTP_DOMAIN": "Example.COM",
        "WEBHOOK_SECRETS": {"default": "x" * 16},
    }
    assert app_settings.RETENTION_DAYS == 30
    assert app_settings.WEBOTP_DOMAIN == "example.com"
    assert app_settings.WEBHOOK_SECRETS == {"default": "x" * 16}
    assert "sms2fa.E011" not in all_ids()
    settings.SMS2FA = {**settings.SMS2FA, "SEND_VIA_TASKS": True}
    assert app_settings.SEND_VIA_TASKS is True


def test_a_webhook_secret_for_no_webhook_is_reported(settings):
    """W007: a secret for an unknown alias, or for a provider without delivery reports."""
    secret = "s" * 16
    settings.SMS2FA = {
        **settings.SMS2FA,
        "PROVIDERS": {
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "ip1": {
                "BACKEND": "django_sms2fa.providers.ip1.IP1Provider",
                "OPTIONS": {"account_id": "ip1-account", "api_key": "k" * 20},
            },
        },
        "WEBHOOK_SECRETS": {"ip1": secret},
    }
    ids = all_ids()
    assert "sms2fa.W007" not in ids and "sms2fa.E002" not in ids
    settings.SMS2FA = {**settings.SMS2FA, "WEBHOOK_SECRETS": {"ip1": secret, "ipl": secret}}
    assert "sms2fa.W007" in all_ids()
    settings.SMS2FA = {**settings.SMS2FA, "WEBHOOK_SECRETS": {"default": secret}}
    assert "sms2fa.W007" in all_ids()


def test_a_webhook_secret_for_a_signing_provider_is_reported(settings):
    """W007: Vonage signs its webhooks; a shared secret for it is never read."""
    settings.SMS2FA = {
        **settings.SMS2FA,
        "PROVIDERS": {
            "default": {
                "BACKEND": "django_sms2fa.providers.vonage.VonageVerifyProvider",
                "OPTIONS": {
                    "brand": "Acme",
                    # Distinct values: every provider's secrets join one
                    # process-wide redaction list for the rest of the run.
                    "api_key": "w007key1",
                    "api_secret": "w007-api-secret-4f1c9",
                    "signature_secret": "w007-signature-secret-8d2e0b7a5c3f",
                },
            },
        },
        "WEBHOOK_SECRETS": {},
    }
    assert "sms2fa.W007" not in all_ids()
    settings.SMS2FA = {**settings.SMS2FA, "WEBHOOK_SECRETS": {"default": "w" * 16}}
    assert "sms2fa.W007" in all_ids()
