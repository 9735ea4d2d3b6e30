"""Vonage Verify v2 (mode d): exact requests in both auth modes (the JWT we
mint decoded and checked), every answer and failure shape, real HTTP on
loopback, signed callbacks through the real webhook view (forged, wrong secret,
alg=none, tampered body, stale, missing, replayed, oversized) and
``sms2fa_send_test``."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from django.core.management import CommandError, call_command
from django.urls import include, path, reverse
from django.utils import timezone

from django_sms2fa import flows
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import (
    IncorrectCode,
    ProviderLimited,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
    TooManyAttempts,
)
from django_sms2fa.models import Challenge, ChallengeStatus, CheckedBy, Message
from django_sms2fa.providers import build_provider
from django_sms2fa.providers.base import InvalidDeliveryReport, WebhookCall
from django_sms2fa.providers.http import secret_registry
from django_sms2fa.providers.vonage import VonageVerifyProvider, status_of_callback
from django_sms2fa.types import DELIVERED, FAILED, SENT, UNKNOWN, Capabilities, OutgoingSms

from .http_support import Answer, Recorded, free_port

# The webhook tests below go through the real view, mounted as the example site does.
urlpatterns = [path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls"))]
pytestmark = pytest.mark.urls(__name__)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PUBLIC = KEY.public_key()
APP_ID = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
API_KEY = "abcd1234"
API_SECRET = "Vonage-API-secret-0123456789-SECRET"
BASIC = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
# 64+ bytes: PyJWT warns below a key the size of the hash (HS512 in an attack below).
SIGNATURE_SECRET = "vonage-signature-secret-0123456789abcdef-0123456789abcdef-SECRET!!"
OTHER_SECRET = "another-accounts-signature-secret-0123456789abcdef-0123456789abcdef"
BASE = "https://api.nexmo.com"
VERIFY = f"{BASE}/v2/verify"
REQUEST_ID = "36e7060d-2b23-4257-bad0-773ab47f85ef"
CHECK = f"{VERIFY}/{REQUEST_ID}"
PHONE = "+46701234567"
MSISDN = "46701234567"
CHALLENGE = "5f0c7a2e-9b1d-4c3e-8f7a-6b5c4d3e2f1a"
SMS = OutgoingSms(to=PHONE, purpose="login", code_length=6, ttl=300, reference=CHALLENGE)

# Vonage's own answers (vonage-python-sdk verify/tests/data, http_client/tests/data).
INVALID_CODE = {
    "type": "https://developer.nexmo.com/api-errors#bad-request",
    "title": "Invalid Code",
    "detail": "The code you provided does not match the expected value.",
    "instance": "475343c0-9239-4715-aed1-72b4a18379d1",
}
TOO_MANY = {
    "title": "Invalid Code",
    "detail": "An incorrect code has been provided too many times. Workflow terminated.",
    "instance": "f79d7a15-30b7-498a-bc99-4e879b836b18",
    "type": "https://developer.nexmo.com/api-errors#gone",
}
CONCURRENT = {
    "title": "Conflict",
    "detail": "Concurrent verifications to the same number are not allowed",
    "instance": "229ececf-382e-4ab6-b380-d8e0e830fd44",
    "request_id": "f8386e0f-6873-4617-aa99-19016217b2aa",
}
UNAUTHORIZED = {
    "type": "https://developer.nexmo.com/api-errors#unauthorized",
    "title": "Unauthorized",
    "detail": "You did not provide correct credentials.",
    "instance": "a813c536-43f6-4568-acbf-f36ef2db955a",
}
RATE_LIMIT = {
    "title": "Rate Limit Hit",
    "type": "https://developer.vonage.com/api-errors#rate-limit",
    "detail": "Please wait, then retry your request",
    "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
}
SERVER_ERROR = {
    "type": "https://developer.vonage.com/api-errors",
    "title": "Internal Server Error",
    "instance": "272c5fa3-c02a-4451-b33c-d01e8de74023",
}


def make(**options) -> VonageVerifyProvider:
    options.setdefault("brand", "Acme")
    if "api_key" not in options:
        options.setdefault("application_id", APP_ID)
        options.setdefault("private_key", PEM)
    return VonageVerifyProvider(**options)


def make_basic(**options) -> VonageVerifyProvider:
    return make(api_key=API_KEY, api_secret=API_SECRET, **options)


def bearer_claims(request) -> dict:
    scheme, _, token = request.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}
    # Signed with the application's private key: its public key verifies it.
    return jwt.decode(token, PUBLIC, algorithms=["RS256"])


# ------------------------------------------------------------------ shape


def test_capabilities_are_provider_side_checking_on_three_channels():
    provider = make(whatsapp_from="447700900001")
    assert provider.capabilities == Capabilities(
        verifies_code=True, channels=frozenset({"sms", "call", "whatsapp"})
    )
    assert not provider.capabilities.takes_our_code(6)
    assert VonageVerifyProvider.capabilities.channels == frozenset({"sms", "call", "whatsapp"})
    # Without a WhatsApp Business number the flows are not offered WhatsApp.
    assert make().capabilities.channels == frozenset({"sms", "call"})
    assert make().base_url == BASE
    assert VonageVerifyProvider.signs_webhooks()
    assert VonageVerifyProvider.receives_delivery_reports()
    assert not VonageVerifyProvider.has_status_lookup()


@responses.activate
def test_the_verify_request_is_exactly_what_vonage_documents_with_a_jwt():
    responses.add(responses.POST, VERIFY, json={"request_id": REQUEST_ID}, status=202)
    before = int(time.time())
    result = make().send(SMS)
    after = int(time.time())
    assert result.message_id == REQUEST_ID
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert (request.method, request.url) == ("POST", VERIFY)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert (
        json.loads(request.body)
        == {
            "brand": "Acme",
            "workflow": [{"channel": "sms", "to": MSISDN}, {"channel": "voice", "to": MSISDN}],
            "locale": "en-us",
            "code_length": 6,
            "channel_timeout": 150,  # 300 s shared by two steps
            "client_ref": CHALLENGE.replace("-", "")[:16],
        }
    )
    claims = bearer_claims(request)
    assert set(claims) == {"application_id", "iat", "exp", "jti"}
    assert claims["application_id"] == APP_ID
    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + 15 * 60
    assert uuid.UUID(claims["jti"]).version == 4


@responses.activate
def test_every_call_mints_a_new_jwt_and_forgets_it_afterwards():
    responses.add(responses.POST, VERIFY, json={"request_id": REQUEST_ID}, status=202)
    provider = make()
    provider.send(SMS)
    provider.send(SMS)
    tokens = [c.request.headers["Authorization"].split(" ", 1)[1] for c in responses.calls]
    assert (
        bearer_claims(responses.calls[0].request)["jti"]
        != (bearer_claims(responses.calls[1].request)["jti"])
    )
    # Redacted while in use, then dropped: the registry does not grow per call.
    for token in tokens:
        assert token not in secret_registry._secrets
        assert token not in provider._secrets


@responses.activate
def test_the_verify_request_with_api_key_and_secret_uses_basic_auth():
    responses.add(responses.POST, VERIFY, json={"request_id": REQUEST_ID}, status=202)
    make_basic().send(SMS)
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Basic {BASIC}"
    assert json.loads(request.body)["workflow"][0] == {"channel": "sms", "to": MSISDN}


@pytest.mark.parametrize(
    "channel, options, workflow",
    [
        ("call", {}, [{"channel": "voice", "to": MSISDN}]),
        (
            "whatsapp",
            {"whatsapp_from": "+447700900001"},
            [{"channel": "whatsapp", "to": MSISDN, "from": "447700900001"}],
        ),
        (
            "sms",
            {"workflow": ["sms"], "sms_from": "AcmeBank"},
            [{"channel": "sms", "to": MSISDN, "from": "AcmeBank"}],
        ),
        (
            "sms",
            {"workflow": ("whatsapp", "sms", "voice"), "whatsapp_from": "447700900001"},
            [
                {"channel": "whatsapp", "to": MSISDN, "from": "447700900001"},
                {"channel": "sms", "to": MSISDN},
                {"channel": "voice", "to": MSISDN},
            ],
        ),
    ],
)
@responses.activate
def test_channels_and_workflows(channel, options, workflow):
    responses.add(responses.POST, VERIFY, json={"request_id": REQUEST_ID}, status=202)
    sms = OutgoingSms(to=PHONE, ttl=300, channel=channel)
    result = make(**options).send(sms)
    body = json.loads(responses.calls[0].request.body)
    assert body["workflow"] == workflow
    assert body["channel_timeout"] == max(300 // len(workflow), 15)
    assert "client_ref" not in body  # no reference, no client_ref
    assert result.raw["workflow"] == [step["channel"] for step in workflow]


@responses.activate
def test_whatsapp_without_a_number_is_refused_before_any_request():
    with pytest.raises(ProviderRejected) as err:
        make().send(OutgoingSms(to=PHONE, channel="whatsapp"))
    assert err.value.provider_code == "unsupported_channel"
    assert err.value.failover is True
    assert len(responses.calls) == 0


@pytest.mark.parametrize(
    "language, option, expected",
    [
        ("de", "en-us", "de-de"),
        ("pt-BR", "en-us", "pt-br"),
        ("en_GB", "en-us", "en-gb"),
        ("es", "en-us", "es-es"),
        ("sv", "en-us", "en-us"),  # no Swedish locale: the option
        ("sv", "en-gb", "en-gb"),
        ("", "fr-fr", "fr-fr"),
    ],
)
@responses.activate
def test_locale_from_the_language_else_the_option(language, option, expected):
    responses.add(responses.POST, VERIFY, json={"request_id": REQUEST_ID}, status=202)
    make(locale=option).send(OutgoingSms(to=PHONE, language=language))
    assert json.loads(responses.calls[0].request.body)["locale"] == expected


@pytest.mark.parametrize(
    "length, ttl, options, sent_length, sent_timeout",
    [
        (6, 300, {}, 6, 150),
        (10, 10, {}, 10, 15),
        (2, 5000, {"workflow": ["sms"]}, 4, 900),
        (12, 300, {"channel_timeout": 60}, 10, 60),
    ],
)
@responses.activate
def test_code_length_and_channel_timeout_stay_in_vonages_ranges(
    length, ttl, options, sent_length, sent_timeout
):
    responses.add(responses.POST, VERIFY, json={"request_id": REQUEST_ID}, status=202)
    make(**options).send(OutgoingSms(to=PHONE, code_length=length, ttl=ttl))
    body = json.loads(responses.calls[0].request.body)
    assert (body["code_length"], body["channel_timeout"]) == (sent_length, sent_timeout)


@pytest.mark.parametrize("phone", ["+123", "+1234567890123456", "+4470a", "+0447700900000"])
@responses.activate
def test_numbers_vonage_cannot_take_are_refused_before_any_request(phone):
    with pytest.raises(ProviderRejected) as err:
        make().send(OutgoingSms(to=phone))
    assert err.value.provider_code == "unsupported_number"
    assert len(responses.calls) == 0


# ---------------------------------------------------------------- options


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    "options, word",
    [
        ({"brand": ""}, "brand"),
        ({"brand": "A brand far too long"}, "brand"),
        ({"brand": None}, "brand"),
        ({"application_id": "", "private_key": ""}, "either"),  # no credentials at all
        (  # both modes at once
            {"application_id": APP_ID, "private_key": PEM, "api_key": API_KEY, "api_secret": "s"},
            "either",
        ),
        ({"private_key": ""}, "private_key"),
        ({"application_id": ""}, "application_id"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"}, "RSA"),
        ({"private_key": "SECRET-not-a-key"}, "RSA"),
        ({"private_key": _ec_pem()}, "RSA"),
        ({"workflow": []}, "workflow"),
        ({"workflow": ["sms", "sms"]}, "workflow"),
        ({"workflow": ["sms", "email"]}, "workflow"),
        ({"workflow": ["call"]}, "workflow"),  # Vonage's step is "voice"
        ({"workflow": 5}, "workflow"),
        ({"workflow": ["whatsapp"]}, "whatsapp_from"),
        ({"channel_timeout": 10}, "channel_timeout"),
        ({"channel_timeout": 901}, "channel_timeout"),
        ({"channel_timeout": True}, "channel_timeout"),
        ({"channel_timeout": "60"}, "channel_timeout"),
        ({"locale": "sv-se"}, "locale"),
        ({"sms_from": "A"}, "sms_from"),
        ({"sms_from": "Acme Bank!"}, "sms_from"),
        ({"whatsapp_from": "12"}, "whatsapp_from"),
        ({"signature_secret": 123}, "signature_secret"),
        ({"unknown_option": 1}, "unknown_option"),
    ],
)
def test_impossible_options_are_configuration_errors(options, word):
    with pytest.raises(Sms2faConfigurationError) as err:
        make(**options)
    assert err.value.check_id == "sms2fa.E002"
    assert word in str(err.value)
    for secret in (PEM, API_SECRET, "SECRET-not-a-key"):
        assert secret not in str(err.value)


def test_basic_mode_needs_both_halves():
    for options in ({"api_key": API_KEY}, {"api_secret": API_SECRET}):
        with pytest.raises(Sms2faConfigurationError) as err:
            VonageVerifyProvider(brand="Acme", **options)
        assert API_SECRET not in str(err.value)


def test_a_pem_with_escaped_line_breaks_and_a_pkcs1_key_are_accepted():
    assert make(private_key=PEM.replace("\n", "\\n"))._private_key is not None
    pkcs1 = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert "BEGIN RSA PRIVATE KEY" in pkcs1
    assert make(private_key=pkcs1)._private_key is not None


def test_build_provider_from_settings(sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "vonage": {
                "BACKEND": "django_sms2fa.providers.vonage.VonageVerifyProvider",
                "OPTIONS": {
                    "brand": "Acme",
                    "api_key": API_KEY,
                    "api_secret": API_SECRET,
                    "workflow": ["sms"],
                },
            },
        }
    )
    provider = build_provider("vonage")
    assert isinstance(provider, VonageVerifyProvider)
    assert provider.workflow == ("sms",)
    assert API_SECRET not in repr(provider)


# ---------------------------------------------------------------- sending


@pytest.mark.parametrize("status", [200, 201, 202])
@responses.activate
def test_any_2xx_with_a_request_id_is_taken(status):
    responses.add(responses.POST, VERIFY, json={"request_id": REQUEST_ID}, status=status)
    result = make().send(SMS)
    assert (result.message_id, result.status, result.provider_status) == (
        REQUEST_ID,
        SENT,
        "accepted",
    )
    assert result.returned_code == ""  # Vonage never tells us the code
    assert result.raw == {"request_id": REQUEST_ID, "workflow": ["sms", "voice"]}


def _send_error(status, body, headers=None, content_type="application/json", provider=None):
    with responses.RequestsMock() as mock:
        body = json.dumps(body) if isinstance(body, (dict, list)) else body
        mock.add(
            responses.POST,
            VERIFY,
            body=body,
            status=status,
            headers=headers or {},
            content_type=content_type,
        )
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            (provider or make()).send(SMS)
        # Never repeated, whatever came back.
        assert len(mock.calls) == 1
    return err.value


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("<html><body>Gateway</body></html>", "text/html"),
        ("", "application/json"),
        ("{not json", "application/json"),
        ({"status": "ok"}, "application/json"),
        ({"request_id": ""}, "application/json"),
        ({"request_id": 42}, "application/json"),
        ({"request_id": "../../v2/verify/x"}, "application/json"),
        (["request_id"], "application/json"),
    ],
)
def test_a_2xx_that_cannot_be_read_may_have_been_sent(body, content_type):
    error = _send_error(202, body, content_type=content_type)
    assert type(error) is ProviderUnavailable
    assert error.provider_code == "malformed_answer"
    assert error.may_have_sent is True


@pytest.mark.parametrize(
    "status, may_have_sent", [(500, True), (504, True), (502, False), (503, False)]
)
def test_server_errors_follow_the_failover_rule(status, may_have_sent):
    error = _send_error(status, SERVER_ERROR)
    assert type(error) is ProviderUnavailable
    assert error.http_status == status
    assert error.may_have_sent is may_have_sent
    assert "Internal Server Error" in error.provider_text
    # "…/api-errors" without a fragment names no error: the status does.
    assert error.provider_code == str(status)


def test_an_html_500_is_uncertain_and_summarised():
    error = _send_error(500, "<html><h1>500</h1></html>", content_type="text/html")
    assert (type(error), error.may_have_sent) == (ProviderUnavailable, True)
    assert error.provider_text.startswith("(HTML page)")


def test_429_is_not_sent_and_keeps_retry_after():
    error = _send_error(429, RATE_LIMIT, headers={"Retry-After": "7"})
    assert type(error) is ProviderUnavailable
    assert (error.may_have_sent, error.retry_after, error.provider_code) == (
        False,
        7,
        "rate-limit",
    )
    assert "Rate Limit Hit" in error.provider_text


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_over(status):
    error = _send_error(status, UNAUTHORIZED)
    assert type(error) is ProviderRejected
    assert (error.provider_code, error.failover, error.http_status) == ("auth", True, status)
    assert error.provider_text == (
        f"HTTP {status}: Unauthorized: You did not provide correct credentials."
    )


def test_low_balance_fails_over():
    error = _send_error(
        402,
        {
            "type": "https://developer.nexmo.com/api-errors#low-balance",
            "title": "Low balance",
            "detail": "This request could not be performed due to your account balance being low.",
        },
    )
    assert (type(error), error.provider_code, error.failover) == (
        ProviderRejected,
        "low_balance",
        True,
    )


def test_a_concurrent_verification_is_vonages_own_send_limit():
    error = _send_error(409, CONCURRENT)
    assert type(error) is ProviderRejected
    assert (error.provider_limit, error.provider_code, error.http_status) == (
        "send",
        "concurrent",
        409,
    )
    # Until the in-flight request can be over: two steps of 150 s.
    assert error.context["retry_after"] == 300
    assert "Concurrent verifications" in error.provider_text
    assert error.may_have_sent is False
    with_header = _send_error(409, CONCURRENT, headers={"Retry-After": "42"})
    assert with_header.context["retry_after"] == 42
    fixed = _send_error(409, CONCURRENT, provider=make(channel_timeout=60, workflow=["sms"]))
    assert fixed.context["retry_after"] == 60


def test_another_conflict_is_a_plain_refusal():
    error = _send_error(
        409,
        {
            "type": "https://developer.nexmo.com/api-errors#conflict",
            "title": "Conflict",
            "detail": "There are no more events left to trigger.",
        },
    )
    assert type(error) is ProviderRejected
    assert (error.provider_limit, error.provider_code, error.failover) == ("", "conflict", False)


@pytest.mark.parametrize(
    "detail, code",
    [
        ("Invalid value for `to`: the phone number is not valid", "invalid_number"),
        ("The destination number is not in a supported network", "invalid_number"),
        ("Missing required field `brand`", "invalid_request"),
    ],
)
def test_422_is_a_permanent_refusal(detail, code):
    error = _send_error(
        422,
        {
            "type": "https://developer.nexmo.com/api-errors#invalid-params",
            "title": "Invalid params",
            "detail": detail,
        },
    )
    assert (type(error), error.provider_code, error.failover) == (ProviderRejected, code, False)
    assert detail in error.provider_text


def test_other_4xx_are_permanent_with_the_problem_type():
    error = _send_error(
        404,
        {"type": "https://developer.vonage.com/api-errors#not-found", "title": "Not Found"},
    )
    assert (type(error), error.provider_code, error.failover) == (
        ProviderRejected,
        "not-found",
        False,
    )


def test_a_read_timeout_is_maybe_sent_and_not_repeated(loopback):
    loopback.respond(202, {"request_id": REQUEST_ID}, delay=1.5)
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=loopback.url, read_timeout=0.3).send(SMS)
    assert (err.value.may_have_sent, err.value.provider_code) == (True, "timeout")
    assert len(loopback.requests) == 1


def test_an_unreachable_vonage_is_not_sent():
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=f"http://127.0.0.1:{free_port()}", connect_retries=0).send(SMS)
    assert err.value.may_have_sent is False


# ---------------------------------------------------------------- check_code


def _check(status, body, *, code="123456", message_id=REQUEST_ID, content_type="application/json"):
    with responses.RequestsMock() as mock:
        body = json.dumps(body) if isinstance(body, (dict, list)) else body
        mock.add(
            responses.POST,
            f"{VERIFY}/{message_id}",
            body=body,
            status=status,
            content_type=content_type,
        )
        result = make().check_code(phone=PHONE, code=code, message_id=message_id)
        assert len(mock.calls) == 1
        return result, mock.calls[0].request


def test_the_check_request_is_exactly_what_vonage_documents():
    result, request = _check(200, {"request_id": REQUEST_ID, "status": "completed"})
    assert result is True
    assert (request.method, request.url) == ("POST", CHECK)
    assert json.loads(request.body) == {"code": "123456"}
    assert bearer_claims(request)["application_id"] == APP_ID


@responses.activate
def test_the_check_with_basic_auth():
    responses.add(responses.POST, CHECK, json={"request_id": REQUEST_ID, "status": "completed"})
    assert make_basic().check_code(phone=PHONE, code="1234", message_id=REQUEST_ID) is True
    assert responses.calls[0].request.headers["Authorization"] == f"Basic {BASIC}"


@pytest.mark.parametrize(
    "status, body",
    [
        (400, INVALID_CODE),
        (404, {"title": "Not Found", "detail": "Request not found or has been verified already"}),
        (409, {"title": "Conflict", "detail": "The current workflow step does not support a code"}),
        (422, {"title": "Invalid params", "detail": "code"}),
        (200, {"request_id": REQUEST_ID, "status": "failed"}),
        (200, {"request_id": "11111111-2222-4333-8444-555555555555", "status": "completed"}),
    ],
)
def test_only_completed_for_this_request_is_a_right_code(status, body):
    result, _request = _check(status, body)
    assert result is False


def test_too_many_wrong_codes_is_vonages_own_check_limit():
    with pytest.raises(ProviderRejected) as err:
        _check(410, TOO_MANY)
    assert (err.value.provider_limit, err.value.provider_code, err.value.http_status) == (
        "check",
        "too_many_attempts",
        410,
    )
    assert "Workflow terminated" in err.value.provider_text


@pytest.mark.parametrize("status", [401, 403])
def test_a_check_with_refused_credentials_is_not_a_wrong_code(status):
    with pytest.raises(ProviderRejected) as err:
        _check(status, UNAUTHORIZED)
    assert (err.value.provider_code, err.value.failover) == ("auth", True)


@pytest.mark.parametrize(
    "status, may_have_sent", [(429, False), (500, True), (502, False), (503, False), (504, True)]
)
def test_a_check_vonage_could_not_answer_is_unavailable(status, may_have_sent):
    with pytest.raises(ProviderUnavailable) as err:
        _check(status, RATE_LIMIT if status == 429 else SERVER_ERROR)
    assert err.value.may_have_sent is may_have_sent


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("<html>ok</html>", "text/html"),
        ("", "application/json"),
        ("{not json", "application/json"),
        ({"request_id": REQUEST_ID}, "application/json"),
    ],
)
def test_a_check_answer_that_cannot_be_read_is_unavailable(body, content_type):
    with pytest.raises(ProviderUnavailable) as err:
        _check(200, body, content_type=content_type)
    assert err.value.provider_code == "malformed_answer"


@pytest.mark.parametrize("message_id", ["", "   ", "../../v2/verify", "a/b", "x" * 65])
@responses.activate
def test_no_usable_request_id_asks_nothing(message_id):
    with pytest.raises(ProviderRejected) as err:
        make().check_code(phone=PHONE, code="123456", message_id=message_id)
    assert err.value.provider_code == "no_request_id"
    assert len(responses.calls) == 0


def test_an_echoed_code_never_reaches_the_error_or_the_log(caplog):
    caplog.set_level(logging.DEBUG)
    code = "918273"
    for status in (500, 400):
        body = {"title": "Invalid Code", "detail": f"code {code} / {code[:3]} {code[3:]} is wrong"}
        try:
            _check(status, body, code=code)
        except ProviderUnavailable as err:
            assert code not in err.provider_text and "918 273" not in err.provider_text
    assert code not in caplog.text and "918 273" not in caplog.text


# ---------------------------------------------------------------- cancel


@responses.activate
def test_cancel_deletes_the_request():
    responses.add(responses.DELETE, CHECK, status=204)
    responses.add(responses.DELETE, f"{VERIFY}/11111111-2222-4333-8444-555555555555", status=404)
    provider = make()
    assert provider.cancel_verification(REQUEST_ID) is True
    assert provider.cancel_verification("11111111-2222-4333-8444-555555555555") is False
    assert provider.cancel_verification("../x") is False
    assert [c.request.method for c in responses.calls] == ["DELETE", "DELETE"]
    assert bearer_claims(responses.calls[0].request)["application_id"] == APP_ID
    responses.add(responses.DELETE, f"{VERIFY}/22222222-2222-4333-8444-555555555555", status=401)
    with pytest.raises(ProviderRejected):
        provider.cancel_verification("22222222-2222-4333-8444-555555555555")


# ---------------------------------------------------------------- real HTTP


def test_send_and_check_over_real_http(loopback):
    loopback.respond(202, {"request_id": REQUEST_ID})
    loopback.respond(200, {"request_id": REQUEST_ID, "status": "completed"})
    provider = make(base_url=loopback.url, sms_from="Acme")
    result = provider.send(SMS)
    assert provider.check_code(phone=PHONE, code="654321", message_id=result.message_id) is True
    start, check = loopback.requests
    assert (start.method, start.path) == ("POST", "/v2/verify")
    assert (check.method, check.path) == ("POST", f"/v2/verify/{REQUEST_ID}")
    for request in (start, check):
        assert request.headers["content-type"] == "application/json"
        scheme, _, token = request.headers["authorization"].partition(" ")
        assert scheme == "Bearer"
        assert jwt.decode(token, PUBLIC, algorithms=["RS256"])["application_id"] == APP_ID
    assert start.json()["workflow"][0] == {"channel": "sms", "to": MSISDN, "from": "Acme"}
    assert check.json() == {"code": "654321"}
    assert loopback.connections == 1  # pooled


def test_credentials_never_reach_logs_errors_or_repr(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    provider = make_basic(base_url=loopback.url, signature_secret=SIGNATURE_SECRET)
    loopback.respond(401, {"title": "Unauthorized", "detail": f"{API_KEY}:{API_SECRET}"})
    loopback.respond(500, f"Authorization: Basic {BASIC}")
    loopback.respond(422, {"title": "bad", "detail": f"signature {SIGNATURE_SECRET}"})
    loopback.respond(202, f"<html>{API_SECRET}</html>")
    texts = []
    for _ in range(4):
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            provider.send(SMS)
        texts += [str(err.value), repr(err.value), err.value.provider_text]
    records = [record.getMessage() for record in caplog.records]
    assert any("[redacted]" in text for text in texts), "the echoed secret was seen"
    for text in texts + records + [repr(provider)]:
        for secret in (API_SECRET, BASIC, SIGNATURE_SECRET):
            assert secret not in text
    assert loopback.requests[0].headers["authorization"] == f"Basic {BASIC}"


def assert_no_piece_of(secret: str, text: str, size: int = 24) -> None:
    for start in range(0, len(secret) - size + 1):
        assert secret[start : start + size] not in text


def test_the_private_key_and_minted_jwt_never_reach_errors(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    provider = make(base_url=loopback.url)
    line = PEM.splitlines()[3]

    def echo(request):
        return Answer(500, f"{request.headers['authorization']} {line}")

    loopback.handler = echo
    with pytest.raises(ProviderUnavailable) as err:
        provider.send(SMS)
    token = loopback.requests[0].headers["authorization"].split(" ", 1)[1]
    for text in (err.value.provider_text, str(err.value), caplog.text):
        # Not even a piece of it: a text cut short before redaction would
        # keep half a token.
        assert_no_piece_of(token, text)
        assert_no_piece_of(line, text)
    assert "[redacted]" in err.value.provider_text


# ---------------------------------------------------------------- callbacks (parser)


def event(status="completed", channel="sms", request_id=REQUEST_ID, **extra) -> dict:
    return {
        "request_id": request_id,
        "triggered_at": "2024-05-01T10:00:00.032Z",
        "type": "event",
        "channel": channel,
        "status": status,
        "finalized_at": "2024-05-01T10:01:00.001Z",
        "client_ref": "my-personal-ref",
        **extra,
    }


def summary(status="failed", request_id=REQUEST_ID) -> dict:
    return {
        "request_id": request_id,
        "submitted_at": "2024-05-01T10:00:02.000Z",
        "status": status,
        "type": "summary",
        "channel_timeout": 300,
        "workflow": [
            {"channel": "sms", "initiated_at": "2024-05-01T10:00:00.000Z", "status": "expired"},
            {"channel": "voice", "initiated_at": "2024-05-01T10:05:00.000Z", "status": "failed"},
        ],
        "price": "0.300000125",
    }


def test_callbacks_are_read():
    provider = make()
    (report,) = provider.parse_delivery_report(json.dumps(event()).encode(), "application/json")
    assert (report.message_id, report.status, report.provider_status) == (
        REQUEST_ID,
        DELIVERED,
        "completed (sms)",
    )
    assert report.at == datetime(2024, 5, 1, 10, 1, 0, 1000, tzinfo=UTC)
    (failed,) = provider.parse_delivery_report(json.dumps(summary()).encode(), "application/json")
    assert (failed.status, failed.provider_status) == (FAILED, "failed")
    assert failed.at == datetime(2024, 5, 1, 10, 0, 2, tzinfo=UTC)
    both = provider.parse_delivery_report(
        json.dumps([event(channel="voice"), summary("expired")]).encode(), "text/plain"
    )
    assert [(r.status, r.provider_status) for r in both] == [
        (DELIVERED, "completed (voice)"),
        (UNKNOWN, "expired"),
    ]


@pytest.mark.parametrize(
    "kind, status, expected",
    [
        ("event", "completed", DELIVERED),
        ("summary", "completed", DELIVERED),
        ("summary", "failed", FAILED),
        ("event", "failed", UNKNOWN),  # one step; the next may still get through
        ("event", "user_rejected", UNKNOWN),
        ("event", "rejected", UNKNOWN),
        ("summary", "expired", UNKNOWN),
        ("summary", "action_pending", UNKNOWN),
        ("", "whatever", UNKNOWN),
    ],
)
def test_callback_statuses(kind, status, expected):
    assert status_of_callback(kind, status) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"[]",
        json.dumps({"status": "completed"}).encode(),
        json.dumps({"request_id": REQUEST_ID}).encode(),
        json.dumps({"request_id": REQUEST_ID, "status": ""}).encode(),
        json.dumps({"request_id": "a b", "status": "completed"}).encode(),
        json.dumps([1, 2]).encode(),
    ],
)
def test_bodies_that_are_not_callbacks_are_refused(body):
    with pytest.raises(InvalidDeliveryReport):
        make().parse_delivery_report(body, "application/json")


# ---------------------------------------------------------------- callbacks (signed, real view)


def vonage_providers(**extra) -> dict:
    return {
        "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
        "vonage": {
            "BACKEND": "django_sms2fa.providers.vonage.VonageVerifyProvider",
            "OPTIONS": {
                "brand": "Acme",
                "application_id": APP_ID,
                "private_key": PEM,
                "signature_secret": SIGNATURE_SECRET,
                **extra,
            },
        },
    }


@pytest.fixture
def vonage_settings(sms2fa_settings):
    # No WEBHOOK_SECRETS: the signature is what is checked.
    sms2fa_settings(PROVIDERS=vonage_providers(), WEBHOOK_SECRETS={})


def message(message_id: str = REQUEST_ID, status: str = SENT) -> Message:
    now = timezone.now()
    return Message.objects.create(
        phone=PHONE,
        provider="vonage",
        provider_message_id=message_id,
        status=status,
        created_at=now,
        sent_at=now,
    )


def sign(
    body: bytes,
    *,
    secret: str = SIGNATURE_SECRET,
    iat: float | None = None,
    algorithm: str = "HS256",
    drop: tuple[str, ...] = (),
    **claims,
) -> str:
    payload = {
        "iat": int(time.time()) if iat is None else iat,
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": API_KEY,
        "application_id": APP_ID,
        **claims,
    }
    for name in drop:
        payload.pop(name)
    return jwt.encode(payload, secret, algorithm=algorithm)


def unsigned(body: bytes) -> str:
    """An ``alg: none`` token with good claims and no signature."""

    def part(value: dict) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"iat": int(time.time()), "payload_hash": hashlib.sha256(body).hexdigest()}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def post(client, body: bytes, token: str | None, *, scheme: str = "Bearer"):
    headers = {} if token is None else {"HTTP_AUTHORIZATION": f"{scheme} {token}"}
    return client.post(
        reverse("sms2fa_webhooks:delivery_report", args=["vonage"]),
        data=body,
        content_type="application/json",
        **headers,
    )


def state(row: Message) -> tuple:
    row.refresh_from_db()
    return (row.status, row.provider_status, row.status_changed_at)


@pytest.mark.django_db
def test_a_signed_callback_updates_the_message(client, vonage_settings, changes):
    row = message()
    body = json.dumps(event()).encode()
    answer = post(client, body, sign(body))
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "updated": 1, "unknown": 0, "deferred": 0}
    row.refresh_from_db()
    assert (row.status, row.provider_status) == (DELIVERED, "completed (sms)")
    assert row.status_changed_at == datetime(2024, 5, 1, 10, 1, 0, 1000, tzinfo=UTC)
    assert changes == [(row.pk, SENT, DELIVERED)]


@pytest.mark.django_db
def test_a_replayed_callback_changes_nothing_the_second_time(client, vonage_settings, changes):
    row = message()
    body = json.dumps(event()).encode()
    token = sign(body)
    assert post(client, body, token).json()["updated"] == 1
    before = state(row)
    again = post(client, body, token)
    assert again.status_code == 200
    assert again.json() == {"received": 1, "updated": 0, "unknown": 0, "deferred": 0}
    assert state(row) == before
    assert changes == [(row.pk, SENT, DELIVERED)]


def _forged_signature(body: bytes) -> str:
    header, claims, signature = sign(body).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{header}.{claims}.{flipped}"


def _other_claims_same_signature(body: bytes) -> str:
    # A genuine signature moved onto other claims (a later iat).
    header, _claims, signature = sign(body).split(".")
    _h, claims, _s = sign(body, iat=int(time.time()) + 1).split(".")
    return f"{header}.{claims}.{signature}"


ATTACKS = {
    "forged signature": lambda body: _forged_signature(body),
    "claims swapped under a signature": lambda body: _other_claims_same_signature(body),
    "wrong secret": lambda body: sign(body, secret=OTHER_SECRET),
    "alg none": lambda body: unsigned(body),
    "alg HS512": lambda body: sign(body, algorithm="HS512"),
    "stale iat": lambda body: sign(body, iat=int(time.time()) - 6 * 60),
    "iat in the future": lambda body: sign(body, iat=int(time.time()) + 5 * 60),
    "expired": lambda body: sign(body, exp=int(time.time()) - 10),
    "no iat": lambda body: sign(body, drop=("iat",)),
    "no payload_hash": lambda body: sign(body, drop=("payload_hash",)),
    "iat not a number": lambda body: sign(body, iat="yesterday"),
    "garbage": lambda body: "not.a.jwt",
}


@pytest.mark.django_db
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_unsigned_forged_or_stale_callbacks_are_403_and_change_nothing(
    client, vonage_settings, changes, attack, caplog
):
    row = message()
    before = state(row)
    body = json.dumps(event()).encode()
    answer = post(client, body, ATTACKS[attack](body))
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"
    assert state(row) == before
    assert changes == []
    assert any("refused" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_a_tampered_body_is_403(client, vonage_settings, changes):
    row = message()
    signed_body = json.dumps(event(status="failed")).encode()
    token = sign(signed_body)
    tampered = json.dumps(event(status="completed")).encode()
    assert post(client, tampered, token).status_code == 403
    # The payload_hash claim of another body: refused too.
    assert post(client, tampered, sign(tampered, payload_hash="0" * 64)).status_code == 403
    assert row.status == SENT and state(row)[0] == SENT
    assert changes == []


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", [None, "Basic", "Token", "Bearer  "])
def test_a_missing_or_other_authorization_is_403(client, vonage_settings, changes, scheme):
    row = message()
    body = json.dumps(event()).encode()
    if scheme is None:
        answer = post(client, body, None)
    elif scheme == "Bearer  ":
        answer = post(client, body, "", scheme="Bearer")
    else:
        answer = post(client, body, sign(body), scheme=scheme)
    assert answer.status_code == 403
    assert state(row)[0] == SENT
    assert changes == []


SHARED = "a-shared-webhook-secret-is-not-enough-here-0123456789"


@pytest.mark.django_db
def test_without_a_signature_secret_every_callback_is_refused(client, sms2fa_settings, changes):
    options = vonage_providers()["vonage"]["OPTIONS"]
    del options["signature_secret"]
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "vonage": {
                "BACKEND": "django_sms2fa.providers.vonage.VonageVerifyProvider",
                "OPTIONS": options,
            },
        },
        WEBHOOK_SECRETS={"vonage": SHARED},
    )
    row = message()
    body = json.dumps(event()).encode()
    assert post(client, body, sign(body)).status_code == 403
    # Nor does a token signed with the alias's shared secret get in.
    assert post(client, body, sign(body, secret=SHARED)).status_code == 403
    assert state(row)[0] == SENT
    assert changes == []


@pytest.mark.django_db
def test_an_oversized_callback_is_413(client, vonage_settings, changes):
    row = message()
    body = json.dumps(event(padding="x" * (64 * 1024))).encode()
    answer = post(client, body, sign(body))
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"
    assert state(row)[0] == SENT
    assert changes == []


@pytest.mark.django_db
def test_a_hash_over_compact_json_is_accepted(client, vonage_settings, changes):
    row = message()
    record = event()
    pretty = json.dumps(record, indent=2).encode()
    compact = json.dumps(record, separators=(",", ":")).encode()
    assert post(client, pretty, sign(pretty, payload_hash=hashlib.sha256(compact).hexdigest()))
    assert state(row)[0] == DELIVERED
    assert len(changes) == 1


@pytest.mark.django_db
def test_an_unknown_request_or_a_step_failure_is_200_and_changes_nothing(
    client, vonage_settings, changes
):
    row = message()
    for record in (event(request_id="11111111-2222-4333-8444-555555555555"), event("failed")):
        body = json.dumps(record).encode()
        assert post(client, body, sign(body)).status_code == 200
    assert state(row)[0] == SENT
    assert changes == []


@pytest.mark.django_db
def test_a_signed_body_that_is_not_a_callback_is_400(client, vonage_settings):
    body = b'{"hello": "world"}'
    answer = post(client, body, sign(body))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "malformed_report"


@pytest.mark.django_db
def test_the_token_and_secret_never_reach_logs_or_answers(client, vonage_settings, caplog):
    caplog.set_level(logging.DEBUG)
    message()
    body = json.dumps(event()).encode()
    good, bad = sign(body), sign(body, secret=OTHER_SECRET)
    answers = [post(client, body, good), post(client, body, bad)]
    assert [a.status_code for a in answers] == [200, 403]
    for text in [caplog.text] + [a.content.decode() for a in answers]:
        for secret in (good, bad, SIGNATURE_SECRET):
            assert secret not in text


def test_verify_webhook_uses_the_time_it_was_received():
    provider = make(signature_secret=SIGNATURE_SECRET)
    body = json.dumps(event()).encode()
    issued = int(time.time())
    token = sign(body, iat=issued)

    def call(received: float) -> WebhookCall:
        return WebhookCall(
            url="https://example.com/webhooks/sms2fa/vonage/",
            method="POST",
            headers={"authorization": f"Bearer {token}"},
            body=body,
            content_type="application/json",
            received_at=datetime.fromtimestamp(received, tz=UTC),
        )

    provider.verify_webhook(call(issued + 299))
    provider.verify_webhook(call(issued - 59))
    for received in (issued + 301, issued - 61):
        with pytest.raises(InvalidDeliveryReport) as err:
            provider.verify_webhook(call(received))
        assert err.value.code == "stale"


# ---------------------------------------------------------------- sms2fa_send_test


def run_send_test(*args) -> str:
    out = io.StringIO()
    call_command("sms2fa_send_test", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@responses.activate
def test_sms2fa_send_test_starts_a_verification(vonage_settings):
    responses.add(responses.POST, VERIFY, json={"request_id": REQUEST_ID}, status=202)
    output = run_send_test(PHONE, "--provider", "vonage")
    assert REQUEST_ID in output and "vonage" in output
    message = Message.objects.get()
    assert (message.provider, message.provider_message_id, message.status) == (
        "vonage",
        REQUEST_ID,
        SENT,
    )
    assert message.text_masked == ""  # Vonage writes the text
    body = json.loads(responses.calls[0].request.body)
    assert body["workflow"][0] == {"channel": "sms", "to": MSISDN}
    assert "code" not in body  # Vonage makes the code


@pytest.mark.django_db
@responses.activate
def test_sms2fa_send_test_reports_a_refusal(vonage_settings):
    responses.add(responses.POST, VERIFY, json=UNAUTHORIZED, status=401)
    with pytest.raises(CommandError) as err:
        run_send_test(PHONE, "--provider", "vonage")
    assert "auth" in str(err.value) and "You did not provide correct credentials" in str(err.value)
    assert Message.objects.get().status == FAILED
    assert len(responses.calls) == 1


# ---------------------------------------------------------------- the flows, with a fake Vonage


class FakeVonage:
    """Vonage Verify v2 on loopback: makes a code per request, checks it, one
    request in flight per number, refuses unsigned calls."""

    def __init__(self) -> None:
        self.inbox: dict[str, str] = {}
        self.active: dict[str, tuple[str, str]] = {}  # request_id -> (msisdn, code)
        self.starts: list[dict] = []
        self.checks: list[tuple[str, dict]] = []
        self.max_wrong = 100
        self.wrong: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, request: Recorded) -> Answer:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            assert scheme == "Bearer"
            jwt.decode(token, PUBLIC, algorithms=["RS256"])
        except Exception:
            return Answer(401, UNAUTHORIZED)
        body = request.json()
        with self._lock:
            if request.path == "/v2/verify":
                self.starts.append(body)
                msisdn = body["workflow"][0]["to"]
                if any(number == msisdn for number, _ in self.active.values()):
                    return Answer(409, {**CONCURRENT, "request_id": "in-flight"})
                request_id = str(uuid.uuid4())
                code = "".join(secrets.choice("0123456789") for _ in range(body["code_length"]))
                self.inbox[msisdn] = code
                self.active[request_id] = (msisdn, code)
                return Answer(202, {"request_id": request_id})
            request_id = request.path.rsplit("/", 1)[1]
            self.checks.append((request_id, body))
            if request_id not in self.active:
                return Answer(404, {"title": "Not Found", "detail": "Request not found"})
            _msisdn, code = self.active[request_id]
            if body["code"] != code:
                self.wrong[request_id] = self.wrong.get(request_id, 0) + 1
                if self.wrong[request_id] >= self.max_wrong:
                    del self.active[request_id]
                    return Answer(410, TOO_MANY)
                return Answer(400, INVALID_CODE)
            del self.active[request_id]
            return Answer(200, {"request_id": request_id, "status": "completed"})


@pytest.fixture
def fake_vonage(loopback, sms2fa_settings):
    fake = FakeVonage()
    loopback.handler = fake
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.vonage.VonageVerifyProvider",
                "OPTIONS": {
                    "brand": "Acme",
                    "application_id": APP_ID,
                    "private_key": PEM,
                    "base_url": loopback.url,
                },
            }
        }
    )
    return fake


def _wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


@pytest.mark.django_db
def test_flow_request_then_wrong_then_right_code(fake_vonage):
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    stored = Challenge.objects.get(pk=challenge.pk)
    assert (stored.checked_by, stored.code_hash) == (CheckedBy.PROVIDER, "")
    (start,) = fake_vonage.starts
    assert start["code_length"] == app_settings.CODE_LENGTH
    assert start["workflow"] == [
        {"channel": "sms", "to": MSISDN},
        {"channel": "voice", "to": MSISDN},
    ]
    assert start["client_ref"] == str(challenge.pk).replace("-", "")[:16]
    message = Message.objects.get(challenge=challenge)
    assert message.provider_message_id in fake_vonage.active
    code = fake_vonage.inbox[MSISDN]
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, _wrong(code))
    assert flows.verify_challenge(challenge.pk, code).status == ChallengeStatus.VERIFIED
    # Both checks named the request this challenge's SMS was sent under.
    assert [rid for rid, _ in fake_vonage.checks] == [message.provider_message_id] * 2


@pytest.mark.django_db
def test_flow_a_concurrent_verification_is_told_as_a_rate_limit(fake_vonage):
    flows.request_challenge(phone=PHONE, purpose="login")
    with pytest.raises(ProviderLimited) as err:
        flows.request_challenge(phone=PHONE, purpose="login")
    assert err.value.code == "rate_limited"
    assert err.value.context["retry_after"] > 0
    failed = Message.objects.filter(status=FAILED).get()
    assert failed.error_code == "concurrent"


@pytest.mark.django_db
def test_flow_after_max_attempts_vonage_is_not_asked_again(fake_vonage):
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    code = fake_vonage.inbox[MSISDN]
    for _ in range(app_settings.MAX_ATTEMPTS):
        with pytest.raises(IncorrectCode):
            flows.verify_challenge(challenge.pk, _wrong(code))
    with pytest.raises(TooManyAttempts):
        flows.verify_challenge(challenge.pk, code)
    assert len(fake_vonage.checks) == app_settings.MAX_ATTEMPTS
