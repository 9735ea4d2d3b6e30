"""Settings: defaults, live re-reading and refusal of unsafe values (django_sms2fa.conf)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import Sms2faConfigurationError

LOCMEM = "django_sms2fa.providers.locmem.LocmemProvider"
CONSOLE = "django_sms2fa.providers.console.ConsoleProvider"
SECRET = "s3cr3t-token"


def test_defaults_when_sms2fa_is_empty(settings):
    """With ``SMS2FA = {}`` every setting has its documented default."""
    settings.SMS2FA = {}
    assert app_settings.CODE_LENGTH == 6
    assert app_settings.CODE_LIFETIME == 300
    assert app_settings.MAX_ATTEMPTS == 5
    assert app_settings.DEFAULT_REGION is None
    assert app_settings.CACHE == "default"
    assert app_settings.PROVIDERS == {"default": {"BACKEND": CONSOLE}}
    assert app_settings.ROUTES == {}
    assert app_settings.FALLBACKS == []
    assert app_settings.SMS_TEMPLATE == "django_sms2fa/sms/code.txt"
    assert app_settings.unknown_keys == []


def test_defaults_when_sms2fa_is_not_set_at_all(settings):
    """A project without any SMS2FA setting gets the same defaults."""
    del settings.SMS2FA
    assert app_settings.raw == {}
    assert app_settings.CODE_LENGTH == 6
    assert app_settings.PROVIDERS == {"default": {"BACKEND": CONSOLE}}


def test_values_are_reread_when_settings_change(settings):
    """Nothing is cached: each read reflects the current ``settings.SMS2FA``."""
    assert app_settings.DEFAULT_REGION == "SE"  # from tests/settings.py
    assert app_settings.PROVIDERS["default"]["BACKEND"] == LOCMEM

    settings.SMS2FA = {"CODE_LENGTH": 8, "DEFAULT_REGION": "no", "MAX_ATTEMPTS": 3}
    assert app_settings.CODE_LENGTH == 8
    assert app_settings.DEFAULT_REGION == "NO"  # upper-cased
    assert app_settings.MAX_ATTEMPTS == 3
    assert app_settings.PROVIDERS["default"]["BACKEND"] == CONSOLE

    settings.SMS2FA = {**settings.SMS2FA, "CODE_LENGTH": 10}
    assert app_settings.CODE_LENGTH == 10


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CODE_LENGTH", 6, 6),
        ("CODE_LENGTH", 10, 10),
        ("CODE_LIFETIME", 1, 1),
        ("CODE_LIFETIME", 600, 600),
        ("MAX_ATTEMPTS", 1, 1),
        ("MAX_ATTEMPTS", 10, 10),
        ("DEFAULT_REGION", "se", "SE"),
    ],
)
def test_boundary_values_are_accepted(settings, name, value, expected):
    """The limits themselves are allowed: 6 and 10 digits, 1 and 600 s, 1 and 10 attempts."""
    settings.SMS2FA = {name: value}
    assert getattr(app_settings, name) == expected


@pytest.mark.parametrize(
    ("lifetime", "seconds"),
    [(timedelta(minutes=5), 300), (timedelta(minutes=10), 600), (timedelta(seconds=90), 90)],
)
def test_code_lifetime_accepts_a_timedelta_of_whole_seconds(settings, lifetime, seconds):
    """A timedelta is converted to an int number of seconds."""
    settings.SMS2FA = {"CODE_LIFETIME": lifetime}
    value = app_settings.CODE_LIFETIME
    assert value == seconds
    assert type(value) is int


@pytest.mark.parametrize(
    ("sms2fa", "check_id"),
    [
        pytest.param({"CODE_LENGTH": 5}, "sms2fa.E003", id="CODE_LENGTH 5"),
        pytest.param({"CODE_LENGTH": 11}, "sms2fa.E003", id="CODE_LENGTH 11"),
        pytest.param({"CODE_LENGTH": "6"}, "sms2fa.E003", id="CODE_LENGTH str"),
        pytest.param({"CODE_LENGTH": True}, "sms2fa.E003", id="CODE_LENGTH bool"),
        pytest.param({"CODE_LENGTH": 6.0}, "sms2fa.E003", id="CODE_LENGTH float"),
        pytest.param({"CODE_LIFETIME": 601}, "sms2fa.E004", id="CODE_LIFETIME 601"),
        pytest.param({"CODE_LIFETIME": 0}, "sms2fa.E004", id="CODE_LIFETIME 0"),
        pytest.param({"CODE_LIFETIME": -1}, "sms2fa.E004", id="CODE_LIFETIME negative"),
        pytest.param({"CODE_LIFETIME": 3600}, "sms2fa.E004", id="CODE_LIFETIME 3600"),
        pytest.param({"CODE_LIFETIME": "300"}, "sms2fa.E004", id="CODE_LIFETIME str"),
        pytest.param({"CODE_LIFETIME": 300.0}, "sms2fa.E004", id="CODE_LIFETIME float"),
        pytest.param(
            {"CODE_LIFETIME": timedelta(minutes=11)}, "sms2fa.E004", id="CODE_LIFETIME 11 min"
        ),
        pytest.param(
            {"CODE_LIFETIME": timedelta(seconds=1.5)}, "sms2fa.E004", id="CODE_LIFETIME 1.5 s"
        ),
        pytest.param({"MAX_ATTEMPTS": 0}, "sms2fa.E005", id="MAX_ATTEMPTS 0"),
        pytest.param({"MAX_ATTEMPTS": 11}, "sms2fa.E005", id="MAX_ATTEMPTS 11"),
        pytest.param({"MAX_ATTEMPTS": "5"}, "sms2fa.E005", id="MAX_ATTEMPTS str"),
        pytest.param({"MAX_ATTEMPTS": True}, "sms2fa.E005", id="MAX_ATTEMPTS bool"),
        pytest.param({"CODE_LIFETIME": True}, "sms2fa.E004", id="CODE_LIFETIME bool"),
        pytest.param({"DEFAULT_REGION": "XX"}, "sms2fa.E006", id="DEFAULT_REGION XX"),
        pytest.param({"DEFAULT_REGION": 46}, "sms2fa.E006", id="DEFAULT_REGION int"),
        pytest.param({"DEFAULT_REGION": ""}, "sms2fa.E006", id="DEFAULT_REGION empty"),
        pytest.param({"CACHE": "nope"}, "sms2fa.E007", id="CACHE unknown"),
        pytest.param({"SMS_TEMPLATE": ""}, "sms2fa.E001", id="SMS_TEMPLATE empty"),
    ],
)
def test_unsafe_scalar_values_raise_at_read_time(settings, sms2fa, check_id):
    """Reading an unsafe value raises Sms2faConfigurationError carrying the check id."""
    settings.SMS2FA = sms2fa
    (name,) = sms2fa
    with pytest.raises(Sms2faConfigurationError) as excinfo:
        getattr(app_settings, name)
    assert excinfo.value.check_id == check_id
    assert check_id in str(excinfo.value)


@pytest.mark.parametrize("value", [[], "CODE_LENGTH=6", None, ("PROVIDERS",)])
def test_sms2fa_that_is_not_a_dict_raises_e001(settings, value):
    """A non-dict SMS2FA is refused by every setting, with id E001."""
    settings.SMS2FA = value
    for name in ("raw", "CODE_LENGTH", "PROVIDERS", "CACHE"):
        with pytest.raises(Sms2faConfigurationError) as excinfo:
            getattr(app_settings, name)
        assert excinfo.value.check_id == "sms2fa.E001"


# Each broken provider configuration carries the fake secret somewhere in OPTIONS (or
# as OPTIONS), so the same cases also prove the secret never reaches the message.
BROKEN_PROVIDERS = [
    pytest.param({}, id="no providers"),
    pytest.param(["default"], id="providers not a dict"),
    pytest.param({"sms": {"BACKEND": LOCMEM, "OPTIONS": {"token": SECRET}}}, id="no default alias"),
    pytest.param({"default": {"OPTIONS": {"token": SECRET}}}, id="BACKEND missing"),
    pytest.param({"default": {"BACKEND": 42, "OPTIONS": {"token": SECRET}}}, id="BACKEND int"),
    pytest.param({"default": LOCMEM}, id="config not a dict"),
    pytest.param({"default": {"BACKEND": LOCMEM, "OPTIONS": SECRET}}, id="OPTIONS a str"),
    pytest.param({"default": {"BACKEND": LOCMEM, "OPTIONS": [SECRET]}}, id="OPTIONS a list"),
    pytest.param(
        {
            "default": {"BACKEND": LOCMEM},
            "backup": {"BACKEND": LOCMEM, "OPTIONS": [("token", SECRET)]},
        },
        id="second alias broken",
    ),
]


@pytest.mark.parametrize("providers", BROKEN_PROVIDERS)
def test_broken_providers_raise_e002_without_leaking_options(settings, providers):
    """PROVIDERS shape errors raise E002, and the message holds no OPTIONS value."""
    settings.SMS2FA = {"PROVIDERS": providers}
    with pytest.raises(Sms2faConfigurationError) as excinfo:
        app_settings.PROVIDERS  # noqa: B018 - the read itself is under test
    assert excinfo.value.check_id == "sms2fa.E002"
    assert SECRET not in str(excinfo.value)
    assert SECRET not in repr(excinfo.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ROUTES", {"BR": "twilio"}),
        ("ROUTES", ["default"]),
        ("FALLBACKS", ["twilio"]),
        ("FALLBACKS", ["default", "twilio"]),
        ("FALLBACKS", "default"),
    ],
)
def test_routes_and_fallbacks_must_name_known_aliases(settings, name, value):
    """A route or fallback to an alias PROVIDERS does not define raises E002."""
    settings.SMS2FA = {
        "PROVIDERS": {"default": {"BACKEND": LOCMEM, "OPTIONS": {"mode": "text"}}},
        name: value,
    }
    with pytest.raises(Sms2faConfigurationError) as excinfo:
        getattr(app_settings, name)
    assert excinfo.value.check_id == "sms2fa.E002"


def test_valid_routes_and_fallbacks_are_returned(settings):
    """Known aliases pass; route regions are upper-cased, fallbacks keep their order."""
    settings.SMS2FA = {
        "PROVIDERS": {
            "default": {"BACKEND": LOCMEM},
            "br": {"BACKEND": LOCMEM},
            "backup": {"BACKEND": LOCMEM},
        },
        "ROUTES": {"br": "br"},
        "FALLBACKS": ("backup", "default"),
    }
    assert app_settings.ROUTES == {"BR": "br"}
    assert app_settings.FALLBACKS == ["backup", "default"]


def test_unknown_keys_are_listed(settings):
    """A typo such as CODE_LENGHT is reported by name (the W003 check uses this)."""
    settings.SMS2FA = {"CODE_LENGHT": 8, "CODE_LENGTH": 8}
    assert app_settings.unknown_keys == ["CODE_LENGHT"]


def test_configuration_errors_are_not_domain_errors():
    """Sms2faConfigurationError is ImproperlyConfigured, outside the Sms2faError root."""
    from django.core.exceptions import ImproperlyConfigured

    from django_sms2fa.exceptions import Sms2faError

    assert issubclass(Sms2faConfigurationError, ImproperlyConfigured)
    assert not issubclass(Sms2faConfigurationError, Sms2faError)


@pytest.mark.parametrize(
    ("name", "value", "check_id"),
    [
        ("ROUTES", {"SE": ["default"]}, "sms2fa.E002"),
        ("FALLBACKS", [["default"]], "sms2fa.E002"),
        ("CACHE", ["default"], "sms2fa.E007"),
    ],
)
def test_an_unhashable_alias_is_a_configuration_error(settings, name, value, check_id):
    """A list where an alias belongs should be reported like any other bad alias."""
    settings.SMS2FA = {"PROVIDERS": {"default": {"BACKEND": LOCMEM}}, name: value}
    with pytest.raises(Sms2faConfigurationError) as excinfo:
        getattr(app_settings, name)
    assert excinfo.value.check_id == check_id


@pytest.mark.parametrize("value", [5, "SE", {"SE": 1}, 3.5])
def test_allowed_regions_that_is_not_a_list_is_e010(settings, value):
    settings.SMS2FA = {"ALLOWED_REGIONS": value}
    from django_sms2fa.conf import app_settings
    from django_sms2fa.exceptions import Sms2faConfigurationError

    with pytest.raises(Sms2faConfigurationError) as caught:
        _ = app_settings.ALLOWED_REGIONS
    assert caught.value.check_id == "sms2fa.E010"
