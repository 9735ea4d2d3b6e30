"""A site switches providers by editing SMS2FA['PROVIDERS'] alone.

Every provider class shipped in django_sms2fa/providers is configured as
"default" through settings only (HTTP ones pointed at a loopback server that
answers like the vendor, with the answers tests/test_conformance.py already
scripts), and a user with a confirmed phone logs in through the REST API:
password (``login/``), then a wrong code, refused, then the code the provider
received (or, for providers that check codes themselves, the one the fake
vendor approves). Then routing and fallbacks across old and new providers.
"""

from __future__ import annotations

import re
import unittest
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import pytest

from django_sms2fa.api.session import PENDING_KEY
from django_sms2fa.models import Challenge, CheckedBy, Message, PhoneDevice
from django_sms2fa.providers import locmem
from django_sms2fa.providers.ip1 import VALIDATE_PATH
from django_sms2fa.providers.smstoken import CHECK_PATH
from django_sms2fa.testing import Answer, LoopbackServer, Recorded, Script

from . import test_conformance as kit
from .api_support import api_post, assert_error

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse"  # the `user` fixture's
#: The code the fake provider-checked vendors approve; any other is refused.
VENDOR_CODE = "135790"


@dataclass(frozen=True)
class Vendor:
    """One provider as a site configures it, and its fake vendor.

    ``case`` is the provider's conformance test case: its answers (accepted
    send, login prelude, code confirmed/refused) and its request matchers are
    reused. ``options`` are the settings OPTIONS for the server's URL.
    """

    backend: str
    options: Callable[[str], dict[str, Any]] = field(default=lambda url: {})
    case: type[unittest.TestCase] | None = None
    phone: str = "+46701234567"


def _http(**options: Any) -> Callable[[str], dict[str, Any]]:
    return lambda url: {**options, "base_url": url}


VENDORS: dict[str, Vendor] = {
    "gosms": Vendor(
        "django_sms2fa.providers.gosms.GoSMSProvider",
        _http(token=kit.GoSMSConformance.token),
        kit.GoSMSConformance,
        kit.GoSMSConformance.phone,
    ),
    "telefonip": Vendor(
        "django_sms2fa.providers.telefonip.TelefonIPProvider",
        _http(token=kit.TelefonIPConformance.token),
        kit.TelefonIPConformance,
        kit.TelefonIPConformance.phone,
    ),
    "ip1": Vendor(
        "django_sms2fa.providers.ip1.IP1Provider",
        _http(account_id=kit.IP1Conformance.account_id, api_key=kit.IP1Conformance.api_key),
        kit.IP1Conformance,
    ),
    "smstoken": Vendor(
        "django_sms2fa.providers.smstoken.SMSTokenProvider",
        _http(key=kit.SMSTokenConformance.key),
        kit.SMSTokenConformance,
        kit.SMSTokenConformance.phone,
    ),
    "smstoken_checks": Vendor(
        "django_sms2fa.providers.smstoken.SMSTokenProvider",
        _http(key=kit.SMSTokenConformance.key, check_remotely=True),
        kit.SMSTokenCheckedRemotelyConformance,
        kit.SMSTokenConformance.phone,
    ),
    "axelnac": Vendor(
        "django_sms2fa.providers.axelnac.AxelNACProvider",
        _http(username="sms2fa-api", password=kit.AxelNACConformance.password, source_id="guests"),
        kit.AxelNACConformance,
    ),
    "twilio": Vendor(
        "django_sms2fa.providers.twilio.TwilioProvider",
        _http(account_sid=kit.TWILIO_ACCOUNT, auth_token=kit.TWILIO_TOKEN, sender="+15005550006"),
        kit.TwilioConformance,
    ),
    "twilio_verify": Vendor(
        "django_sms2fa.providers.twilio_verify.TwilioVerifyProvider",
        _http(
            account_sid=kit.TWILIO_ACCOUNT,
            auth_token=kit.TWILIO_TOKEN,
            service_sid=kit.TwilioVerifyConformance.service,
        ),
        kit.TwilioVerifyConformance,
    ),
    "vonage_verify": Vendor(
        "django_sms2fa.providers.vonage.VonageVerifyProvider",
        _http(brand="Acme", api_key=kit.VONAGE_KEY, api_secret=kit.VONAGE_SECRET),
        kit.VonageVerifyConformance,
    ),
    "sns": Vendor(
        "django_sms2fa.providers.sns.AmazonSNSProvider",
        lambda url: {
            "region_name": "eu-west-1",
            "access_key_id": "AKIAKITEXAMPLE0000001",
            "secret_access_key": kit.SNS_SECRET_KEY,
            "endpoint_url": url,
        },
        kit.AmazonSNSConformance,
    ),
    "console": Vendor("django_sms2fa.providers.console.ConsoleProvider"),
    "locmem": Vendor("django_sms2fa.providers.locmem.LocmemProvider"),
}
#: Providers that make and check the code themselves (mode d).
PROVIDER_CHECKED = {"ip1", "smstoken_checks", "twilio_verify", "vonage_verify"}


class FakeVendor:
    """A loopback server answering like one vendor: sends accepted (or all
    calls failing with ``fail``), and code checks approving VENDOR_CODE only."""

    def __init__(self, name: str, *, fail: int | None = None) -> None:
        self.name, self.vendor = name, VENDORS[name]
        self.case = self.vendor.case("test_repr_shows_no_secret") if self.vendor.case else None
        self.server = LoopbackServer().start() if self.case else None
        if self.server is not None:
            self.server.handler = self.answer
        self.fail = fail

    def answer(self, request: Recorded) -> Answer:
        case = self.case
        if self.fail:
            return Answer(self.fail, "<html><body>Service Unavailable</body></html>")
        if self.is_check(request):
            right = VENDOR_CODE in request.path + request.body.decode("utf-8", "replace")
            return case.code_confirmed_answer() if right else case.code_refused_answer()
        if case.is_send_request(request):
            accepted = case.accepted_answer()
            return accepted.send[0] if isinstance(accepted, Script) else accepted
        return case.prelude_answers()[0]

    def is_check(self, request: Recorded) -> bool:
        if self.name not in PROVIDER_CHECKED:
            return False
        if self.name == "ip1":  # its check path extends its send path
            return request.path.startswith(VALIDATE_PATH)
        if self.name == "smstoken_checks":
            return request.path.startswith(CHECK_PATH)
        return self.case.is_check_request(request) and not self.case.is_send_request(request)

    def settings(self, alias: str) -> dict[str, Any]:
        url = self.server.url if self.server else ""
        return {"BACKEND": self.vendor.backend, "OPTIONS": self.vendor.options(url)}

    def sends(self) -> list[Recorded]:
        if self.server is None:
            return []
        return [
            r for r in self.server.requests if self.case.is_send_request(r) and not self.is_check(r)
        ]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def vendors():
    started: list[FakeVendor] = []

    def start(name: str, *, fail: int | None = None) -> FakeVendor:
        started.append(FakeVendor(name, fail=fail))
        return started[-1]

    yield start
    for vendor in started:
        vendor.stop()


def configure(sms2fa_settings, chain: dict[str, FakeVendor], **extra: Any) -> None:
    """SMS2FA['PROVIDERS'] (and FALLBACKS/ROUTES) only: nothing else changes."""
    sms2fa_settings(
        PROVIDERS={alias: vendor.settings(alias) for alias, vendor in chain.items()},
        FALLBACKS=extra.get("FALLBACKS", []),
        ROUTES=extra.get("ROUTES", {}),
    )


def received_code(vendor: FakeVendor, capsys) -> str:
    """The code as the provider got it (in its send request), or as it made it."""
    if vendor.name == "locmem":
        return locmem.outbox[-1].code
    if vendor.name == "console":
        texts = capsys.readouterr().out
    elif vendor.name in PROVIDER_CHECKED:
        return VENDOR_CODE
    else:
        (send,) = vendor.sends()
        if vendor.name == "smstoken":  # its template holds a "{999999}" slot
            return send.json()["code"]
        texts = unquote_plus(send.path + " " + send.body.decode("utf-8", "replace"))
    # The challenge's UUID (a reference some providers carry) is not a code.
    texts = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", " ", texts)
    codes = set(re.findall(r"(?<![0-9A-Za-z])[0-9]{6}(?![0-9A-Za-z])", texts))
    if not codes and vendor.name == "telefonip":
        # The code is too long for telefon-ip: it made one and answered it.
        return vendor.case.accepted_answer().body["data"]["code"]
    assert len(codes) == 1, f"{vendor.name}: no single code in what the provider received"
    return codes.pop()


def wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


def log_in(client, user, phone: str, vendor: FakeVendor, capsys) -> Challenge:
    """Password, then a wrong code (refused), then the right one: logged in."""
    PhoneDevice.objects.create(user=user, number=phone, name="Mobile", confirmed=True)
    response = api_post(client, "login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.content
    assert response.json()["mfa_required"] is True
    challenge_id = response.json()["challenge"]["id"]
    code = received_code(vendor, capsys)
    verify = {"challenge": challenge_id}
    refused = api_post(client, "login/verify/", {**verify, "code": wrong(code)})
    assert_error(refused, 400, "incorrect_code")
    assert client.session.get("_auth_user_id") is None
    response = api_post(client, "login/verify/", {**verify, "code": code})
    assert response.status_code == 200, response.content
    assert client.session.get("_auth_user_id") == str(user.pk)
    assert PENDING_KEY not in client.session
    return Challenge.objects.get(pk=challenge_id)


# ----------------------------------------------------- every provider alone


@pytest.mark.parametrize("name", list(VENDORS))
def test_each_provider_is_a_settings_change_away(
    name, vendors, sms2fa_settings, client, user, capsys
):
    vendor = vendors(name)
    configure(sms2fa_settings, {"default": vendor})
    challenge = log_in(client, user, vendor.vendor.phone, vendor, capsys)
    assert challenge.provider == "default"
    expected = CheckedBy.PROVIDER if name in PROVIDER_CHECKED else CheckedBy.LOCAL
    assert challenge.checked_by == expected
    assert len(vendor.sends()) == (1 if vendor.server else 0)


def test_every_shipped_provider_class_is_switched_to():
    """A provider class added to the package without a VENDORS entry fails here."""
    import pkgutil

    import django_sms2fa.providers as package
    from django_sms2fa.providers.base import BaseProvider

    found = set()
    for module in pkgutil.iter_modules(package.__path__):
        imported = __import__(f"{package.__name__}.{module.name}", fromlist=["_"])
        for value in vars(imported).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseProvider)
                and value.__module__ == imported.__name__
            ):
                found.add(value)
    # Shared bases (BaseProvider, HttpProvider, TwilioBase) are never configured.
    concrete = {
        f"{cls.__module__}.{cls.__name__}"
        for cls in found
        if not any(other is not cls and issubclass(other, cls) for other in found)
    }
    assert concrete == {vendor.backend for vendor in VENDORS.values()}


# ------------------------------------------------ routing and fallbacks mixed

CHAINS = [
    # (default, fails with, fallback, who sends) — old and new both ways.
    ("gosms", 503, "twilio", "twilio"),
    ("twilio", 503, "smstoken", "smstoken"),
    ("axelnac", 503, "sns", "sns"),
    ("sns", 503, "gosms", "gosms"),
    ("ip1", 503, "twilio_verify", "twilio_verify"),
    ("twilio_verify", 503, "ip1", "ip1"),
    ("vonage_verify", 503, "twilio_verify", "twilio_verify"),
    ("twilio_verify", 503, "vonage_verify", "vonage_verify"),
    ("smstoken_checks", 503, "vonage_verify", "vonage_verify"),
    # An uncertain outcome: the same code follows to the next provider.
    ("gosms", 500, "twilio", "twilio"),
    ("twilio", 500, "axelnac", "axelnac"),
    ("twilio", None, "gosms", "twilio"),  # no failure, no fallback call
]


@pytest.mark.parametrize(("first", "status", "fallback", "sender"), CHAINS)
def test_fallbacks_work_across_old_and_new_providers(
    first, status, fallback, sender, vendors, sms2fa_settings, client, user, capsys
):
    chain = {"default": vendors(first, fail=status), "backup": vendors(fallback)}
    configure(sms2fa_settings, chain, FALLBACKS=["backup"])
    # A number both serve: a provider's own country (GoSMS: Russia), else any.
    phone = next(
        (VENDORS[n].phone for n in (first, fallback) if VENDORS[n].phone != "+46701234567"),
        "+46701234567",
    )
    by_name = {v.name: (alias, v) for alias, v in chain.items()}
    alias, sending = by_name[sender]
    challenge = log_in(client, user, phone, sending, capsys)
    # After an uncertain outcome the challenge stays armed for the first
    # provider (same code); the Message rows tell who sent.
    assert challenge.provider == ("default" if status == 500 else alias)
    assert len(sending.sends()) == 1
    assert Message.objects.get(provider=alias).status != "failed"
    if status:
        # The failing provider was tried once, its failure recorded.
        assert len(chain["default"].server.requests) >= 1
        statuses = dict(Message.objects.values_list("provider", "status"))
        assert statuses["default"] == ("unknown" if status == 500 else "failed")
    if status == 500:
        # A double delivery carries one code.
        assert received_code(chain["default"], capsys) == received_code(sending, capsys)


ROUTED = [
    # (default, routed provider for Brazil's numbers)
    ("gosms", "twilio"),
    ("twilio", "smstoken"),
    ("ip1", "vonage_verify"),
    ("locmem", "twilio_verify"),
]


@pytest.mark.parametrize(("default", "routed"), ROUTED)
def test_routes_send_a_region_to_old_or_new_providers(
    default, routed, vendors, sms2fa_settings, client, user, capsys
):
    chain = {"default": vendors(default), "brazil": vendors(routed)}
    configure(sms2fa_settings, chain, ROUTES={"BR": "brazil"})
    challenge = log_in(client, user, "+5511987654321", chain["brazil"], capsys)
    assert challenge.provider == "brazil"
    assert chain["default"].sends() == [] and len(chain["brazil"].sends()) == 1
    assert locmem.outbox == []
