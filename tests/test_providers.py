"""The provider base, the loader, and the console and locmem providers."""

from __future__ import annotations

import io

import pytest

from django_sms2fa.exceptions import ProviderUnavailable, Sms2faConfigurationError
from django_sms2fa.providers import build_provider, get_provider, locmem
from django_sms2fa.providers.base import BaseProvider
from django_sms2fa.providers.console import ConsoleProvider
from django_sms2fa.types import Capabilities, OutgoingSms, SendResult

SMS = OutgoingSms(to="+46701234567", text="Your code is 123456", code="123456", purpose="login")


def test_loader_builds_by_dotted_path_with_options(sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "returns_code", "code_length": 4},
            }
        }
    )
    provider = get_provider()
    assert isinstance(provider, locmem.LocmemProvider)
    assert provider.alias == "default"
    assert provider.capabilities.returns_code and not provider.capabilities.delivers_text
    assert get_provider() is provider  # one shared instance per alias
    assert len(provider.send(SMS).returned_code) == 4


def test_the_cache_is_dropped_when_settings_change(sms2fa_settings):
    first = get_provider()
    sms2fa_settings(
        PROVIDERS={"default": {"BACKEND": "django_sms2fa.providers.console.ConsoleProvider"}}
    )
    assert isinstance(get_provider(), ConsoleProvider)
    assert get_provider() is not first


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"BACKEND": "no.such.Provider"}, "could not be imported"),
        ({"BACKEND": "django_sms2fa.types.SendResult"}, "not a subclass"),
        (
            {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider", "OPTIONS": {"tokn": "x"}},
            "tokn",
        ),
        (
            {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider", "OPTIONS": {"mode": "x"}},
            "mode",
        ),
    ],
)
def test_broken_provider_configuration_names_the_setting(sms2fa_settings, config, fragment):
    sms2fa_settings(PROVIDERS={"default": config})
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert err.value.check_id == "sms2fa.E002"
    assert fragment in str(err.value)
    assert "PROVIDERS" in str(err.value) or "LocmemProvider" in str(err.value)


def test_unknown_alias_is_a_configuration_error():
    with pytest.raises(Sms2faConfigurationError):
        get_provider("nope")


def test_base_send_times_the_call_and_checks_the_result():
    class Good(BaseProvider):
        def _send(self, sms):
            return SendResult(message_id="m-1")

    class Bad(BaseProvider):
        def _send(self, sms):
            return {"id": "m-1"}

    result = Good().send(SMS)
    assert result.message_id == "m-1" and result.status == "sent"
    assert isinstance(result.latency_ms, int)
    with pytest.raises(TypeError):
        Bad().send(SMS)
    with pytest.raises(NotImplementedError, match="BaseProvider must implement _send"):
        BaseProvider().send(SMS)
    with pytest.raises(NotImplementedError):
        BaseProvider().check_code(phone="+46701234567", code="1")


def test_provider_errors_are_tagged_with_the_alias():
    class Failing(BaseProvider):
        def _send(self, sms):
            raise ProviderUnavailable(provider_text="busy")

    with pytest.raises(ProviderUnavailable) as err:
        Failing(alias="eu").send(SMS)
    assert err.value.provider == "eu"
    assert "provider=eu" in str(err.value)


def test_send_result_status_is_a_closed_list():
    with pytest.raises(ValueError):
        SendResult(status="ok")


def test_capabilities_pick_our_code_only_when_it_fits():
    short = Capabilities(accepts_code=True, max_code_length=4)
    assert short.takes_our_code(4) and not short.takes_our_code(6)
    assert not Capabilities(returns_code=True).takes_our_code(6)


def test_console_prints_the_sms():
    stream = io.StringIO()
    result = ConsoleProvider(alias="dev", stream=stream).send(SMS)
    printed = stream.getvalue()
    assert "+46701234567" in printed and "Your code is 123456" in printed
    assert result.message_id in printed


def test_locmem_outbox_and_outage():
    provider = locmem.LocmemProvider()
    provider.send(SMS)
    assert [(sms.to, sms.code) for sms in locmem.outbox] == [("+46701234567", "123456")]
    locmem.fail_next(ProviderUnavailable(provider_text="down"), times=2)
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            provider.send(SMS)
    provider.send(SMS)
    assert len(locmem.outbox) == 2
    locmem.reset()
    assert locmem.outbox == []


def test_locmem_verifies_codes_once():
    provider = locmem.LocmemProvider(mode="verifies_code")
    provider.send(OutgoingSms(to="+46701234567"))
    code = locmem.outbox[-1].code
    assert provider.check_code(phone="+46701234567", code="x") is False
    assert provider.check_code(phone="+46701234567", code=code) is True
    assert provider.check_code(phone="+46701234567", code=code) is False
