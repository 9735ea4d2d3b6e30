"""Twilio Verify v2 (mode d): exact requests, Verify's own limits (60203,
60202), every failure kind classified, checks bound to one verification,
real HTTP on loopback, and ``sms2fa_send_test`` against a faked Verify."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
import unittest
from urllib.parse import parse_qs

import pytest
import responses

from django.core.management import call_command

from django_sms2fa import flows
from django_sms2fa.exceptions import (
    IncorrectCode,
    ProviderLimited,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
    TooManyAttempts,
)
from django_sms2fa.models import Challenge, ChallengeStatus, CheckedBy, Message
from django_sms2fa.providers.twilio_verify import TwilioVerifyProvider, twilio_locale
from django_sms2fa.testing import Answer as KitAnswer
from django_sms2fa.testing import ProviderConformanceTests
from django_sms2fa.types import SENT, Capabilities, OutgoingSms

from .http_support import Answer, free_port

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-verify-token-SECRET-0123456789"
KEY_SID = "SK" + "fedcba9876543210" * 2
KEY_SECRET = "twilio-verify-key-secret-SECRET-98"
SERVICE = "VA" + "00112233445566778899aabbccddeeff"
VSID = "VE" + "ab" * 16
OTHER_VSID = "VE" + "cd" * 16
BASE = "https://verify.twilio.com"
START = f"{BASE}/v2/Services/{SERVICE}/Verifications"
CHECK = f"{BASE}/v2/Services/{SERVICE}/VerificationCheck"
PHONE = "+46701234567"
SMS = OutgoingSms(to=PHONE, purpose="login", code_length=6, ttl=300)
CODE = "739104"

VERIFICATION = {
    "sid": VSID,
    "service_sid": SERVICE,
    "account_sid": ACCOUNT,
    "to": PHONE,
    "channel": "sms",
    "status": "pending",
    "valid": False,
    "lookup": {},
    "amount": None,
    "payee": None,
    "send_code_attempts": [{"time": "2015-07-30T20:00:00Z", "channel": "SMS"}],
    "date_created": "2015-07-30T20:00:00Z",
    "date_updated": "2015-07-30T20:00:00Z",
    "url": f"{START}/{VSID}",
}
APPROVED = {**VERIFICATION, "status": "approved", "valid": True}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make(**options) -> TwilioVerifyProvider:
    options.setdefault("auth_token", TOKEN)
    return TwilioVerifyProvider(account_sid=ACCOUNT, service_sid=SERVICE, **options)


def form(request) -> dict[str, list[str]]:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return parse_qs(body, keep_blank_values=True)


def twilio_error(code: int, message: str, status: int) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


# ------------------------------------------------------------------ shape


def test_capabilities_are_provider_side_checking_on_three_channels():
    provider = make()
    assert provider.capabilities == Capabilities(
        verifies_code=True, channels=frozenset({"sms", "call", "whatsapp"})
    )
    assert not provider.capabilities.takes_our_code(6)
    assert provider.base_url == BASE
    assert not provider.signs_webhooks() and not provider.receives_delivery_reports()


@pytest.mark.parametrize("channel", ["sms", "call", "whatsapp"])
@responses.activate
def test_the_start_request_is_exactly_what_twilio_documents(channel):
    responses.add(responses.POST, START, json={**VERIFICATION, "channel": channel}, status=201)
    result = make().send(OutgoingSms(to=PHONE, channel=channel))
    request = responses.calls[0].request
    assert (request.method, request.url) == ("POST", START)
    assert request.headers["Authorization"] == basic(ACCOUNT, TOKEN)
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(request) == {"To": [PHONE], "Channel": [channel]}
    assert (result.message_id, result.status, result.provider_status) == (VSID, SENT, "pending")
    assert "to" not in result.raw and "url" not in result.raw


@pytest.mark.parametrize(
    "language, locale",
    [
        ("sv", "sv"),
        ("pt-br", "pt-BR"),
        ("en-gb", "en-GB"),
        ("en-us", "en"),
        ("zh-hans", "zh-CN"),
        ("zh-hant", "zh-HK"),
        ("nb", "nb"),
        ("de-at", "de"),
        ("xx", ""),  # no such translation: Twilio would answer 404
        ("", ""),
    ],
)
@responses.activate
def test_the_language_becomes_a_supported_locale_or_nothing(language, locale):
    assert twilio_locale(language) == locale
    responses.add(responses.POST, START, json=VERIFICATION, status=201)
    make().send(OutgoingSms(to=PHONE, language=language))
    sent = form(responses.calls[0].request)
    assert sent.get("Locale") == ([locale] if locale else None)


@responses.activate
def test_send_locale_false_leaves_the_language_to_twilio():
    responses.add(responses.POST, START, json=VERIFICATION, status=201)
    make(send_locale=False).send(OutgoingSms(to=PHONE, language="sv"))
    assert "Locale" not in form(responses.calls[0].request)


@responses.activate
def test_an_api_key_authenticates_instead_of_the_token():
    responses.add(responses.POST, START, json=VERIFICATION, status=201)
    make(auth_token="", api_key_sid=KEY_SID, api_key_secret=KEY_SECRET).send(SMS)
    assert responses.calls[0].request.headers["Authorization"] == basic(KEY_SID, KEY_SECRET)


@pytest.mark.parametrize(
    "options",
    [
        {"service_sid": "VA123"},
        {"service_sid": "../VA" + "0" * 32},
        {"service_sid": ""},
        {"account_sid": "nope"},
        {"auth_token": ""},
        {"code_length": 8},  # not a per-verification parameter at Twilio
        {"send_locale": "yes"},
    ],
)
def test_bad_options_are_configuration_errors(options):
    options = {"account_sid": ACCOUNT, "service_sid": SERVICE, "auth_token": TOKEN, **options}
    with pytest.raises(Sms2faConfigurationError) as err:
        TwilioVerifyProvider(**options)
    assert TOKEN not in str(err.value)


def test_unknown_channels_and_numbers_are_refused_before_any_request():
    with responses.RequestsMock() as mock:
        with pytest.raises(ProviderRejected) as err:
            make().send(OutgoingSms(to="0701234567"))
        assert err.value.provider_code == "unsupported_number"
        assert len(mock.calls) == 0


# ------------------------------------------------------------------ send failures


def _send_error(status, body, *, content_type="application/json", headers=None):
    with responses.RequestsMock() as mock:
        body = json.dumps(body) if isinstance(body, (dict, list)) else body
        mock.add(
            responses.POST,
            START,
            body=body,
            status=status,
            content_type=content_type,
            headers=headers or {},
        )
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            make().send(SMS)
        assert len(mock.calls) == 1, "never re-sent"
    return err.value


def test_max_send_attempts_is_twilios_send_limit_not_a_throttle():
    # 60203 arrives as HTTP 429, but it is Verify's per-number limit.
    error = _send_error(429, twilio_error(60203, "Max send attempts reached", 429))
    assert type(error) is ProviderRejected
    assert (error.provider_limit, error.provider_code, error.failover) == ("send", "60203", False)
    assert error.context["retry_after"] == 600
    with_header = _send_error(
        429, twilio_error(60203, "Max send attempts reached", 429), headers={"Retry-After": "120"}
    )
    assert with_header.context["retry_after"] == 120


@pytest.mark.parametrize("code", [60200, 60205])
def test_invalid_parameters_and_landlines_are_refused_without_failover(code):
    error = _send_error(400, twilio_error(code, "refused", 400))
    assert type(error) is ProviderRejected
    assert (error.provider_code, error.failover, error.provider_limit) == (str(code), False, "")


@pytest.mark.parametrize("status, code", [(404, 20404), (400, 60223)])
def test_a_wrong_service_or_a_disabled_channel_fails_over(status, code):
    error = _send_error(status, twilio_error(code, "The requested resource was not found", status))
    assert (type(error), error.provider_code, error.failover) == (ProviderRejected, str(code), True)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_over(status):
    error = _send_error(status, twilio_error(20003, "Authenticate", status))
    assert (type(error), error.provider_code, error.failover) == (ProviderRejected, "auth", True)


@pytest.mark.parametrize(
    "body",
    [
        twilio_error(20429, "Too Many Requests", 429),
        twilio_error(60212, "Too many concurrent requests for phone number", 429),
        "",
        "<html>slow down</html>",
    ],
)
def test_other_429s_are_unavailable_and_not_sent(body):
    error = _send_error(429, body, content_type="text/html")
    assert type(error) is ProviderUnavailable
    assert (error.may_have_sent, error.provider_limit) == (False, "")


@pytest.mark.parametrize("status, maybe", [(500, True), (502, False), (503, False), (504, True)])
@pytest.mark.parametrize("body", ["", "<html>error</html>", twilio_error(20500, "boom", 500)])
def test_5xx_follow_the_failover_rule(status, maybe, body):
    error = _send_error(status, body, content_type="text/html")
    assert type(error) is ProviderUnavailable
    assert (error.may_have_sent, error.http_status) == (maybe, status)


@pytest.mark.parametrize(
    "body", ["", "<html>ok</html>", "{bad json", "[]", '{"sid": "SM123"}', '{"status": "pending"}']
)
def test_a_2xx_we_cannot_read_may_have_sent(body):
    error = _send_error(201, body, content_type="text/html")
    assert (type(error), error.provider_code, error.may_have_sent) == (
        ProviderUnavailable,
        "malformed_answer",
        True,
    )


def test_an_unreachable_verify_is_not_sent():
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=f"http://127.0.0.1:{free_port()}", connect_retries=0).send(SMS)
    assert err.value.may_have_sent is False


# ------------------------------------------------------------------ checking


def _check(status, body, *, message_id=VSID, content_type="application/json"):
    with responses.RequestsMock() as mock:
        body = json.dumps(body) if isinstance(body, (dict, list)) else body
        mock.add(responses.POST, CHECK, body=body, status=status, content_type=content_type)
        result = make().check_code(phone=PHONE, code=CODE, message_id=message_id)
        assert len(mock.calls) == 1
        return result, mock.calls[0].request


def test_the_check_is_bound_to_the_verification_sid():
    result, request = _check(200, APPROVED)
    assert result is True
    assert (request.method, request.url) == ("POST", CHECK)
    assert request.headers["Authorization"] == basic(ACCOUNT, TOKEN)
    assert form(request) == {"Code": [CODE], "VerificationSid": [VSID]}


def test_without_a_verification_sid_the_check_goes_by_phone():
    result, request = _check(200, APPROVED, message_id="")
    assert result is True
    assert form(request) == {"Code": [CODE], "To": [PHONE]}


@pytest.mark.parametrize(
    "body",
    [
        {**VERIFICATION, "status": "pending"},
        {**VERIFICATION, "status": "canceled"},
        {**VERIFICATION, "status": "max_attempts_reached"},
        {**VERIFICATION, "status": "expired"},
        {**VERIFICATION, "status": "Approved"},
        {**VERIFICATION, "status": "pending", "valid": True},  # the legacy flag is not trusted
    ],
)
def test_only_approved_is_true(body):
    assert _check(200, body)[0] is False


def test_approval_of_another_verification_is_refused():
    assert _check(200, {**APPROVED, "sid": OTHER_VSID})[0] is False


@pytest.mark.parametrize(
    "status, body",
    [
        (404, twilio_error(20404, "The requested resource was not found", 404)),
        (400, twilio_error(60200, "Invalid parameter", 400)),
    ],
)
def test_an_expired_or_unknown_verification_is_a_wrong_code(status, body):
    assert _check(status, body)[0] is False


def test_a_404_page_that_is_not_twilios_is_an_error_not_a_wrong_code():
    with pytest.raises(ProviderRejected) as err:
        _check(404, "<html>Not Found</html>", content_type="text/html")
    assert err.value.provider_code == "404"


def test_max_check_attempts_is_twilios_check_limit():
    with pytest.raises(ProviderRejected) as err:
        _check(429, twilio_error(60202, "Max check attempts reached", 429))
    assert (err.value.provider_limit, err.value.provider_code) == ("check", "60202")


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_on_check_raise_instead_of_blaming_the_user(status):
    with pytest.raises(ProviderRejected) as err:
        _check(status, twilio_error(20003, "Authenticate", status))
    assert (err.value.provider_code, err.value.failover) == ("auth", True)


@pytest.mark.parametrize(
    "status, maybe", [(429, False), (500, True), (502, False), (503, False), (504, True)]
)
def test_throttles_and_5xx_on_check_are_unavailable(status, maybe):
    with pytest.raises(ProviderUnavailable) as err:
        _check(status, "<html>down</html>", content_type="text/html")
    assert err.value.may_have_sent is maybe


@pytest.mark.parametrize("body", ["", "<html/>", "{nope", "[]", '{"valid": true}'])
def test_a_check_answer_we_cannot_read_is_unavailable(body):
    with pytest.raises(ProviderUnavailable) as err:
        _check(200, body, content_type="text/html")
    assert err.value.provider_code == "malformed_answer"


def test_an_echoed_code_never_reaches_the_error():
    with pytest.raises(ProviderRejected) as err:
        _check(400, {**twilio_error(60999, f"Code {CODE} refused", 400), "code_sent": CODE})
    assert CODE not in err.value.provider_text and CODE not in str(err.value)
    with pytest.raises(ProviderUnavailable) as err:
        _check(200, f"<html>{CODE}</html>", content_type="text/html")
    assert CODE not in err.value.provider_text


# ------------------------------------------------------------------ service


@responses.activate
def test_the_service_code_length_can_be_read():
    responses.add(
        responses.GET, f"{BASE}/v2/Services/{SERVICE}", json={"sid": SERVICE, "code_length": 8}
    )
    assert make().service_code_length() == 8


# ------------------------------------------------------------------ real HTTP


def test_start_and_check_over_real_http(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    loopback.respond(201, VERIFICATION)
    loopback.respond(200, APPROVED)
    provider = make(base_url=loopback.url)
    result = provider.send(OutgoingSms(to=PHONE, channel="call", language="sv"))
    assert provider.check_code(phone=PHONE, code=CODE, message_id=result.message_id) is True
    start, check = loopback.requests
    assert (start.method, start.path) == ("POST", f"/v2/Services/{SERVICE}/Verifications")
    assert (check.method, check.path) == ("POST", f"/v2/Services/{SERVICE}/VerificationCheck")
    for request in (start, check):
        assert request.headers["authorization"] == basic(ACCOUNT, TOKEN)
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(start.body.decode()) == {"To": [PHONE], "Channel": ["call"], "Locale": ["sv"]}
    assert parse_qs(check.body.decode()) == {"Code": [CODE], "VerificationSid": [VSID]}
    assert loopback.connections == 1
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and CODE not in record.getMessage()


def test_a_check_timeout_is_unavailable_and_not_repeated(loopback):
    loopback.respond(200, APPROVED, delay=1.5)
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=loopback.url, read_timeout=0.3).check_code(
            phone=PHONE, code=CODE, message_id=VSID
        )
    assert err.value.may_have_sent is True
    assert len(loopback.requests) == 1


# ------------------------------------------------------------------ sms2fa_send_test


@pytest.mark.django_db
def test_send_test_command_starts_a_verification(sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.twilio_verify.TwilioVerifyProvider",
                "OPTIONS": {"account_sid": ACCOUNT, "auth_token": TOKEN, "service_sid": SERVICE},
            }
        }
    )
    out = io.StringIO()
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, START, json=VERIFICATION, status=201)
        call_command("sms2fa_send_test", PHONE, stdout=out)
        request = mock.calls[0].request
    assert form(request) == {"To": [PHONE], "Channel": ["sms"]}
    assert request.headers["Authorization"] == basic(ACCOUNT, TOKEN)
    assert VSID in out.getvalue()
    message = Message.objects.get()
    assert (message.provider_message_id, message.status) == (VSID, SENT)
    assert message.text_masked == ""  # Twilio writes the text


# ------------------------------------------------------------------ flows


class FakeVerify:
    """Plays Twilio Verify on the loopback server: one pending verification per
    number (a resend within its life sends the same code under the same SID),
    checks by ``VerificationSid`` or ``To``, deletes a verification once
    approved, and answers 60202 after five wrong checks and 60203 after five
    sends, as Verify's documented limits do."""

    def __init__(self) -> None:
        self.inbox: dict[str, str] = {}  # phone -> last code "received"
        self.pending: dict[str, dict] = {}  # sid -> {"to", "code", "checks", "sends"}
        self.starts: list[dict] = []
        self.checks: list[dict] = []
        self._next = 0

    def __call__(self, request) -> Answer:
        fields = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if request.path.endswith("/Verifications"):
            self.starts.append(fields)
            to = fields["To"]
            current = next((s for s, v in self.pending.items() if v["to"] == to), None)
            if current is None:
                self._next += 1
                current = "VE" + f"{self._next:032x}"
                code = "".join(secrets.choice("0123456789") for _ in range(6))
                self.pending[current] = {"to": to, "code": code, "checks": 0, "sends": 0}
            entry = self.pending[current]
            if entry["sends"] >= 5:
                return Answer(429, twilio_error(60203, "Max send attempts reached", 429))
            entry["sends"] += 1
            self.inbox[to] = entry["code"]
            return Answer(201, {**VERIFICATION, "sid": current, "to": to})
        if request.path.endswith("/VerificationCheck"):
            self.checks.append(fields)
            sid = fields.get("VerificationSid") or next(
                (s for s, v in self.pending.items() if v["to"] == fields.get("To")), None
            )
            entry = self.pending.get(sid or "")
            if entry is None:
                return Answer(404, twilio_error(20404, "The requested resource was not found", 404))
            if entry["checks"] >= 5:
                return Answer(429, twilio_error(60202, "Max check attempts reached", 429))
            entry["checks"] += 1
            if fields["Code"] != entry["code"]:
                return Answer(200, {**VERIFICATION, "sid": sid, "status": "pending"})
            del self.pending[sid]
            return Answer(200, {**APPROVED, "sid": sid})
        return Answer(404, twilio_error(20404, "The requested resource was not found", 404))


@pytest.fixture
def fake_verify(loopback, sms2fa_settings):
    fake = FakeVerify()
    loopback.handler = fake
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.twilio_verify.TwilioVerifyProvider",
                "OPTIONS": {
                    "account_sid": ACCOUNT,
                    "auth_token": TOKEN,
                    "service_sid": SERVICE,
                    "base_url": loopback.url,
                },
            }
        }
    )
    return fake


def _wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


@pytest.mark.django_db
def test_flow_request_then_wrong_then_right_code(fake_verify, loopback):
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    stored = Challenge.objects.get(pk=challenge.pk)
    assert (stored.checked_by, stored.code_hash) == (CheckedBy.PROVIDER, "")
    message = Message.objects.get(challenge=challenge)
    sid = message.provider_message_id
    assert sid.startswith("VE") and message.text_masked == ""
    # The active language travels as Locale (the test site's is English).
    assert fake_verify.starts == [{"To": PHONE, "Channel": "sms", "Locale": "en"}]
    code = fake_verify.inbox[PHONE]
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, _wrong(code))
    assert flows.verify_challenge(challenge.pk, code).status == ChallengeStatus.VERIFIED
    # Both checks named this challenge's verification, not just the phone.
    assert fake_verify.checks == [
        {"Code": _wrong(code), "VerificationSid": sid},
        {"Code": code, "VerificationSid": sid},
    ]
    assert {r.headers["authorization"] for r in loopback.requests} == {basic(ACCOUNT, TOKEN)}


@pytest.mark.django_db
def test_flow_twilios_send_limit_is_told_as_a_rate_limit(fake_verify):
    fake_verify.pending["VE" + "f" * 32] = {"to": PHONE, "code": "123456", "checks": 0, "sends": 5}
    with pytest.raises(ProviderLimited) as err:
        flows.request_challenge(phone=PHONE, purpose="login")
    assert err.value.code == "rate_limited"
    assert err.value.retry_after == 600


@pytest.mark.django_db
def test_flow_twilios_check_limit_closes_the_challenge(fake_verify, sms2fa_settings):
    sms2fa_settings(MAX_ATTEMPTS=10)  # ours above Twilio's five
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    code = fake_verify.inbox[PHONE]
    for _ in range(5):
        with pytest.raises(IncorrectCode):
            flows.verify_challenge(challenge.pk, _wrong(code))
    with pytest.raises(TooManyAttempts):
        flows.verify_challenge(challenge.pk, code)
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.FAILED


# ------------------------------------------------------------------ conformance kit


class TwilioVerifyConformance(ProviderConformanceTests, unittest.TestCase):
    secrets = (TOKEN, basic(ACCOUNT, TOKEN).split()[1])
    sms_code = ""  # Twilio makes, sends and checks the code (mode d)
    send_path = "/Verifications"
    expects_provider_checked = True
    expects_status_lookup = False
    expects_delivery_reports = False
    expects_signed_webhooks = False

    def make_provider(self, base_url: str, **overrides):
        return TwilioVerifyProvider(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            service_sid=SERVICE,
            base_url=base_url,
            **overrides,
        )

    def accepted_answer(self) -> KitAnswer:
        return KitAnswer(201, VERIFICATION)

    def number_refused_answer(self) -> KitAnswer:
        return KitAnswer(400, twilio_error(60205, "SMS is not supported by landline", 400))

    def credentials_refused_answer(self) -> KitAnswer:
        return KitAnswer(401, twilio_error(20003, "Authenticate", 401))

    # The kit's code checks (present in newer versions of the kit).
    check_path = "/VerificationCheck"
    check_message_id = VSID

    def code_confirmed_answer(self) -> KitAnswer:
        return KitAnswer(200, APPROVED)

    def code_refused_answer(self) -> KitAnswer:
        return KitAnswer(200, {**VERIFICATION, "status": "pending"})
