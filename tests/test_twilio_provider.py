"""Twilio Programmable Messaging (mode a): exact requests, every failure kind
classified, status look-ups and callbacks, the X-Twilio-Signature check
attacked through the real webhook view, real HTTP on loopback, and
``sms2fa_send_test`` against a faked Twilio."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import re
import unittest
from urllib.parse import parse_qs, urlencode

import pytest
import responses

from django.core.management import call_command
from django.urls import include, path

from django_sms2fa.delivery import webhooks
from django_sms2fa.exceptions import (
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from django_sms2fa.models import Message
from django_sms2fa.providers.base import InvalidDeliveryReport, WebhookCall
from django_sms2fa.providers.twilio import TwilioProvider, _signature, _url_variants
from django_sms2fa.testing import Answer as KitAnswer
from django_sms2fa.testing import ProviderConformanceTests
from django_sms2fa.types import DELIVERED, FAILED, QUEUED, SENT, UNKNOWN, Capabilities, OutgoingSms

from .http_support import free_port

# The webhook view mounted as the example site does (tests/urls.py has no webhooks).
urlpatterns = [path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls"))]

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-SECRET-0123456789"
KEY_SID = "SK" + "fedcba9876543210" * 2
KEY_SECRET = "twilio-api-key-secret-SECRET-9876"
SERVICE = "MG" + "00112233445566778899aabbccddeeff"
SID = "SM" + "aa" * 16
BASE = "https://api.twilio.com"
MESSAGES = f"{BASE}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
STATUS_URL = f"{BASE}/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json"
PHONE = "+46701234567"
TEXT = "Your code is 482913"
SMS = OutgoingSms(to=PHONE, text=TEXT, code="482913")
CALLBACK = "https://hooks.example.com/webhooks/sms2fa/twilio/"

MESSAGE = {
    "sid": SID,
    "account_sid": ACCOUNT,
    "to": PHONE,
    "from": "+15005550006",
    "body": TEXT,
    "status": "queued",
    "num_segments": "1",
    "error_code": None,
    "error_message": None,
    "price": None,
    "messaging_service_sid": None,
    "date_created": "Thu, 30 Jul 2015 20:12:31 +0000",
    "api_version": "2010-04-01",
}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make(**options) -> TwilioProvider:
    options.setdefault("auth_token", TOKEN)
    if "messaging_service_sid" not in options and "sender" not in options:
        options["sender"] = "+15005550006"
    return TwilioProvider(account_sid=ACCOUNT, **options)


def form(request) -> dict[str, list[str]]:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return parse_qs(body, keep_blank_values=True)


# ------------------------------------------------------------------ shape


def test_capabilities_are_text_delivery_over_sms():
    provider = make()
    assert provider.capabilities == Capabilities(delivers_text=True)
    assert provider.capabilities.channels == frozenset({"sms"})
    assert provider.base_url == BASE
    assert provider.signs_webhooks() and provider.has_status_lookup()
    assert provider.receives_delivery_reports()


@responses.activate
def test_the_send_request_is_exactly_what_twilio_documents():
    responses.add(responses.POST, MESSAGES, json=MESSAGE, status=201)
    result = make(messaging_service_sid=SERVICE, status_callback=CALLBACK).send(SMS)
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert (request.method, request.url) == ("POST", MESSAGES)
    assert request.headers["Authorization"] == basic(ACCOUNT, TOKEN)
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "To": [PHONE],
        "Body": [TEXT],
        "MessagingServiceSid": [SERVICE],
        "StatusCallback": [CALLBACK],
    }
    assert (result.message_id, result.status, result.provider_status) == (SID, QUEUED, "queued")
    # The Message resource echoes our Body (with the code): never kept.
    assert "body" not in result.raw and "482913" not in json.dumps(result.raw)


@responses.activate
def test_a_sender_goes_as_from_and_an_api_key_authenticates_instead_of_the_token():
    responses.add(responses.POST, MESSAGES, json=MESSAGE, status=201)
    make(auth_token="", api_key_sid=KEY_SID, api_key_secret=KEY_SECRET, sender="Acme").send(SMS)
    request = responses.calls[0].request
    # The Account SID stays in the path; the key is the Basic-auth user.
    assert request.url == MESSAGES
    assert request.headers["Authorization"] == basic(KEY_SID, KEY_SECRET)
    assert form(request) == {"To": [PHONE], "Body": [TEXT], "From": ["Acme"]}


@pytest.mark.parametrize(
    "options",
    [
        {"account_sid": "AC123"},
        {"account_sid": "AC" + "0" * 31 + "/"},
        {"account_sid": "../" + ACCOUNT},
        {"auth_token": ""},
        {"auth_token": "", "api_key_sid": KEY_SID},
        {"auth_token": "", "api_key_secret": KEY_SECRET},
        {"api_key_sid": "SKnothex", "api_key_secret": KEY_SECRET},
        {"sender": "", "messaging_service_sid": ""},
        {"messaging_service_sid": "MG1234"},
        {"sender": "A sender too long"},
        {"sender": "+0701"},
        {"status_callback": "/webhooks/sms2fa/twilio/"},
        {
            "status_callback": CALLBACK,
            "auth_token": "",
            "api_key_sid": KEY_SID,
            "api_key_secret": KEY_SECRET,
        },  # fmt: skip
        {"whatsapp_from": "+15005550006"},
    ],
)
def test_bad_options_are_configuration_errors_that_show_no_secret(options):
    options = {"account_sid": ACCOUNT, "auth_token": TOKEN, "sender": "+15005550006", **options}
    with pytest.raises(Sms2faConfigurationError) as err:
        TwilioProvider(**options)
    assert err.value.check_id == "sms2fa.E002"
    assert TOKEN not in str(err.value) and KEY_SECRET not in str(err.value)


@pytest.mark.parametrize("to", ["0701234567", "+4670", "+46 70 123 45 67", ""])
def test_numbers_twilio_cannot_take_are_refused_before_any_request(to):
    with responses.RequestsMock() as mock, pytest.raises(ProviderRejected) as err:
        make().send(OutgoingSms(to=to, text=TEXT))
    assert err.value.provider_code == "unsupported_number"
    assert len(mock.calls) == 0


# ------------------------------------------------------------------ failures


def _send_error(status, body, *, content_type="application/json", headers=None):
    with responses.RequestsMock() as mock:
        body = json.dumps(body) if isinstance(body, (dict, list)) else body
        mock.add(
            responses.POST,
            MESSAGES,
            body=body,
            status=status,
            content_type=content_type,
            headers=headers or {},
        )
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            make().send(SMS)
        assert len(mock.calls) == 1, "never re-sent"
    return err.value


def twilio_error(code: int, message: str, status: int) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def test_an_invalid_to_is_refused_without_failover():
    error = _send_error(400, twilio_error(21211, "Invalid 'To' Phone Number: +4670123XXXX", 400))
    assert type(error) is ProviderRejected
    assert (error.provider_code, error.failover, error.http_status) == ("21211", False, 400)
    assert "Invalid 'To' Phone Number" in error.provider_text
    assert "docs/errors/21211" in error.provider_text


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_over(status):
    error = _send_error(status, twilio_error(20003, "Authenticate", status))
    assert type(error) is ProviderRejected
    assert (error.provider_code, error.failover) == ("auth", True)
    assert "20003" in error.provider_text


def test_a_401_with_no_twilio_body_is_still_an_auth_failure():
    error = _send_error(401, "", content_type="text/plain")
    assert (type(error), error.provider_code, error.failover) == (ProviderRejected, "auth", True)


@pytest.mark.parametrize("code", [21408, 21606, 21608, 21659, 21212])
def test_refusals_about_our_account_fail_over(code):
    error = _send_error(400, twilio_error(code, "Permission / sender problem", 400))
    assert type(error) is ProviderRejected
    assert (error.provider_code, error.failover) == (str(code), True)


@pytest.mark.parametrize("code", [21610, 21614, 21612, 30007])
def test_refusals_about_the_message_do_not_fail_over(code):
    error = _send_error(400, twilio_error(code, "refused", 400))
    assert (type(error), error.provider_code, error.failover) == (
        ProviderRejected,
        str(code),
        False,
    )


@pytest.mark.parametrize(
    "body",
    [twilio_error(20429, "Too Many Requests", 429), "", "<html>Too Many Requests</html>"],
)
def test_429_is_unavailable_and_surely_not_sent(body):
    error = _send_error(429, body, headers={"Retry-After": "7"}, content_type="text/html")
    assert type(error) is ProviderUnavailable
    assert error.may_have_sent is False
    assert error.retry_after == 7
    assert error.provider_code in ("20429", "429")


@pytest.mark.parametrize(
    "status, maybe",
    [(500, True), (502, False), (503, False), (504, True)],
)
@pytest.mark.parametrize(
    "body, content_type",
    [
        (twilio_error(20500, "Internal Server Error", 500), "application/json"),
        ("<html><body><h1>Bad Gateway</h1></body></html>", "text/html"),
        ("", "text/plain"),
    ],
)
def test_5xx_follow_the_failover_rule(status, maybe, body, content_type):
    error = _send_error(status, body, content_type=content_type)
    assert type(error) is ProviderUnavailable
    assert error.may_have_sent is maybe
    assert error.http_status == status


@pytest.mark.parametrize(
    "body",
    [
        "",
        "OK",
        "<html><body>Welcome</body></html>",
        "{not json",
        "null",
        "[]",
        '{"status": "x"}',
        '{"sid": ""}',
        '{"sid": true}',
    ],  # fmt: skip
)
def test_a_2xx_we_cannot_read_may_have_sent(body):
    error = _send_error(201, body, content_type="text/html")
    assert type(error) is ProviderUnavailable
    assert (error.provider_code, error.may_have_sent) == ("malformed_answer", True)


def test_a_read_timeout_is_maybe_sent_and_not_repeated(loopback):
    loopback.respond(201, MESSAGE, delay=1.5)
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=loopback.url, read_timeout=0.3).send(SMS)
    assert (err.value.provider_code, err.value.may_have_sent) == ("timeout", True)
    assert len(loopback.requests) == 1


def test_an_unreachable_twilio_is_not_sent():
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=f"http://127.0.0.1:{free_port()}", connect_retries=0).send(SMS)
    assert err.value.may_have_sent is False


def test_credentials_never_reach_logs_errors_or_repr(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    provider = make(base_url=loopback.url)
    header = basic(ACCOUNT, TOKEN)
    loopback.respond(401, twilio_error(20003, f"Authenticate {TOKEN} ({header})", 401))
    loopback.respond(500, f"Authorization: {header} token={TOKEN}")
    loopback.respond(201, f"<html>{TOKEN}</html>")
    texts = []
    for _ in range(3):
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            provider.send(SMS)
        texts += [str(err.value), repr(err.value), err.value.provider_text]
    records = [record.getMessage() for record in caplog.records]
    assert any("[redacted]" in text for text in texts), "the echoed token was seen and redacted"
    for text in texts + records + [repr(provider)]:
        assert TOKEN not in text and header.split()[1] not in text
        assert "482913" not in text
    assert loopback.requests[0].headers["authorization"] == header


# ------------------------------------------------------------------ real HTTP


def test_send_and_look_up_over_real_http(loopback):
    loopback.respond(201, MESSAGE)
    loopback.respond(200, {**MESSAGE, "status": "delivered"})
    provider = make(base_url=loopback.url, status_callback=CALLBACK)
    result = provider.send(SMS)
    status = provider.get_status(result.message_id)
    create, lookup = loopback.requests
    assert (create.method, create.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    assert create.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(create.body.decode()) == {
        "To": [PHONE],
        "Body": [TEXT],
        "From": ["+15005550006"],
        "StatusCallback": [CALLBACK],
    }
    assert (lookup.method, lookup.path) == (
        "GET",
        f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json",
    )
    for request in (create, lookup):
        assert request.headers["authorization"] == basic(ACCOUNT, TOKEN)
    assert (status.status, status.provider_status) == (DELIVERED, "delivered")
    assert loopback.connections == 1, "pooled"


# ------------------------------------------------------------------ status look-up


@pytest.mark.parametrize(
    "twilio_status, ours",
    [
        ("queued", QUEUED),
        ("accepted", QUEUED),
        ("scheduled", QUEUED),
        ("sending", QUEUED),
        ("sent", SENT),
        ("delivered", DELIVERED),
        ("read", DELIVERED),
        ("failed", FAILED),
        ("undelivered", FAILED),
        ("canceled", FAILED),
        ("receiving", UNKNOWN),
        ("something-new", UNKNOWN),
    ],
)
@responses.activate
def test_get_status_maps_twilio_statuses(twilio_status, ours):
    responses.add(responses.GET, STATUS_URL, json={**MESSAGE, "status": twilio_status})
    result = make().get_status(SID)
    assert result.status == ours
    assert result.provider_status == twilio_status
    assert responses.calls[0].request.headers["Authorization"] == basic(ACCOUNT, TOKEN)


@responses.activate
def test_get_status_keeps_the_error_code():
    responses.add(
        responses.GET, STATUS_URL, json={**MESSAGE, "status": "undelivered", "error_code": 30003}
    )
    result = make().get_status(SID)
    assert (result.status, result.provider_status) == (FAILED, "undelivered 30003")
    assert "body" not in result.raw


@pytest.mark.parametrize("bad", ["", "SM123", f"../{SID}", f"{SID}/../x", "sm" + "aa" * 16])
def test_get_status_refuses_ids_that_are_not_sids_without_asking(bad):
    with responses.RequestsMock() as mock, pytest.raises(ProviderRejected):
        make().get_status(bad)
    assert len(mock.calls) == 0


@responses.activate
def test_get_status_of_an_unknown_message_is_refused():
    responses.add(
        responses.GET,
        STATUS_URL,
        json=twilio_error(20404, "The requested resource was not found", 404),
        status=404,
    )
    with pytest.raises(ProviderRejected) as err:
        make().get_status(SID)
    assert (err.value.provider_code, err.value.failover) == ("20404", False)


# ------------------------------------------------------------------ callbacks (parser)

FORM = "application/x-www-form-urlencoded"


def callback(status: str = "delivered", sid: str = SID, **extra) -> dict[str, str]:
    fields = {
        "AccountSid": ACCOUNT,
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": PHONE,
    }
    fields.update(extra)
    return fields


def test_a_status_callback_is_read():
    reports = make().parse_delivery_report(
        urlencode(callback("undelivered", ErrorCode="30003")).encode(), FORM
    )
    assert [(r.message_id, r.status, r.provider_status) for r in reports] == [
        (SID, FAILED, "undelivered 30003")
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"MessageStatus=delivered",
        urlencode({"MessageSid": SID}).encode(),
        urlencode({"MessageSid": "../x", "MessageStatus": "sent"}).encode(),
        b"MessageSid=a&MessageSid=b&MessageStatus=sent",
    ],
)
def test_callbacks_without_a_sid_or_status_are_invalid(body):
    with pytest.raises(InvalidDeliveryReport):
        make().parse_delivery_report(body, FORM)


# ------------------------------------------------------------------ signatures


def twilio_sign(token: str, url: str, params: dict[str, str]) -> str:
    """An independent implementation of Twilio's documented scheme, checked
    against Twilio's own test vector below."""
    signed = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(
        hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()


def test_twilio_python_test_vectors():
    # tests/unit/test_request_validator.py of twilio-python.
    uri = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    assert twilio_sign("12345", uri, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert _signature(b"12345", uri, list(params.items())) == b"RSOYDt4T1cUTdK1PDd93/VVr8B8="
    duplicates = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert _signature(b"12345", uri, duplicates) == b"IK+Dwps556ElfBT0I3Rgjkr1wJU="
    # The port variants twilio-python tries.
    assert "https://mycompany.com/myapp.php?foo=1&bar=2" in _url_variants(
        "https://mycompany.com:1234/myapp.php?foo=1&bar=2"
    )
    assert "https://mycompany.com:443/x" in _url_variants("https://mycompany.com/x")
    assert "http://mycompany.com:80/x" in _url_variants("http://mycompany.com/x")


def webhook_call(url: str, params: dict[str, str], signature: str | None, **headers) -> WebhookCall:
    from django.utils import timezone

    if signature is not None:
        headers["x-twilio-signature"] = signature
    return WebhookCall(
        url=url,
        method="POST",
        headers=headers,
        body=urlencode(params).encode(),
        content_type=FORM,
        received_at=timezone.now(),
    )


def test_verify_webhook_accepts_the_default_port_either_way():
    provider = make(status_callback=CALLBACK)
    with_port = CALLBACK.replace(".com/", ".com:443/")
    for signed_url in (CALLBACK, with_port):
        call = webhook_call(
            "http://internal:8000/x/", callback(), twilio_sign(TOKEN, signed_url, callback())
        )
        provider.verify_webhook(call)  # no exception


@pytest.mark.parametrize(
    "signature",
    [None, "", "not base64", twilio_sign("another-token-0123456789", CALLBACK, callback())],
)
def test_verify_webhook_refuses_missing_and_forged_signatures(signature):
    with pytest.raises(InvalidDeliveryReport) as err:
        make(status_callback=CALLBACK).verify_webhook(webhook_call(CALLBACK, callback(), signature))
    assert err.value.code == "bad_signature"


def test_without_an_auth_token_no_callback_can_be_verified():
    provider = make(auth_token="", api_key_sid=KEY_SID, api_key_secret=KEY_SECRET)
    call = webhook_call(CALLBACK, callback(), twilio_sign(TOKEN, CALLBACK, callback()))
    with pytest.raises(InvalidDeliveryReport):
        provider.verify_webhook(call)


def test_a_shared_key_signature_is_refused():
    call = webhook_call(
        CALLBACK,
        callback(),
        twilio_sign(TOKEN, CALLBACK, callback()),
        **{"x-twilio-webhooks-signature-settings": "key=KS1,algorithm=HMAC_SHA256"},
    )
    with pytest.raises(InvalidDeliveryReport):
        make(status_callback=CALLBACK).verify_webhook(call)


# ------------------------------------------------------------------ the webhook view

ALIAS = "twilio"
WEBHOOK = f"/webhooks/sms2fa/{ALIAS}/"
LOCAL_URL = f"http://testserver{WEBHOOK}"


@pytest.fixture
def twilio_site(sms2fa_settings):
    def configure(**options):
        sms2fa_settings(
            PROVIDERS={
                "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
                ALIAS: {
                    "BACKEND": "django_sms2fa.providers.twilio.TwilioProvider",
                    "OPTIONS": {
                        "account_sid": ACCOUNT,
                        "auth_token": TOKEN,
                        "sender": "+15005550006",
                        **options,
                    },
                },
            },
            # No WEBHOOK_SECRETS entry: the signature is the authentication.
            WEBHOOK_SECRETS={},
        )

    configure(status_callback=LOCAL_URL)
    return configure


def sent_message(status: str = SENT) -> Message:
    from django.utils import timezone

    now = timezone.now()
    return Message.objects.create(
        phone=PHONE,
        provider=ALIAS,
        provider_message_id=SID,
        status=status,
        created_at=now,
        sent_at=now,
    )


def post_callback(client, params: dict[str, str], signature: str | None, target: str = WEBHOOK):
    headers = {} if signature is None else {"HTTP_X_TWILIO_SIGNATURE": signature}
    return client.post(target, data=urlencode(params), content_type=FORM, **headers)


def state(row: Message) -> tuple:
    row.refresh_from_db()
    return (row.status, row.provider_status, row.status_changed_at)


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_signed_callback_updates_the_message(client, twilio_site, changes):
    row = sent_message()
    params = callback("delivered")
    answer = post_callback(client, params, twilio_sign(TOKEN, LOCAL_URL, params))
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "updated": 1, "unknown": 0, "deferred": 0}
    row.refresh_from_db()
    assert (row.status, row.provider_status) == (DELIVERED, "delivered")
    assert changes == [(row.pk, SENT, DELIVERED)]


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_replayed_callback_is_200_and_changes_nothing(client, twilio_site, changes):
    row = sent_message()
    params = callback("delivered")
    signature = twilio_sign(TOKEN, LOCAL_URL, params)
    assert post_callback(client, params, signature).status_code == 200
    before = state(row)
    again = post_callback(client, params, signature)
    assert again.status_code == 200
    assert again.json()["updated"] == 0
    assert state(row) == before
    assert len(changes) == 1


def _refused(client, row, changes, params, signature, target=WEBHOOK):
    before = state(row)
    answer = post_callback(client, params, signature, target)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"
    assert state(row) == before
    assert changes == []


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_forged_signature_is_403(client, twilio_site, changes):
    row = sent_message()
    params = callback("failed")
    _refused(
        client, row, changes, params, twilio_sign("guessed-token-000000000", LOCAL_URL, params)
    )


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_missing_signature_is_403(client, twilio_site, changes):
    _refused(client, sent_message(), changes, callback("failed"), None)


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_signature_for_another_url_is_403(client, twilio_site, changes):
    # A genuine signature Twilio made for another webhook of the same account
    # (say, incoming SMS), replayed at ours.
    params = callback("failed")
    other = "http://testserver/twilio/incoming-sms/"
    _refused(client, sent_message(), changes, params, twilio_sign(TOKEN, other, params))


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_tampered_body_is_403(client, twilio_site, changes):
    signed = callback("delivered")
    signature = twilio_sign(TOKEN, LOCAL_URL, signed)
    row = sent_message()
    _refused(client, row, changes, callback("failed"), signature)
    # An added parameter breaks it too.
    _refused(client, row, changes, {**signed, "ErrorCode": "30003"}, signature)


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_an_oversized_body_is_413(client, twilio_site, changes):
    row = sent_message()
    params = callback("delivered", Padding="x" * (webhooks.MAX_BODY_BYTES + 1))
    answer = post_callback(client, params, twilio_sign(TOKEN, LOCAL_URL, params))
    assert answer.status_code == 413
    assert state(row)[0] == SENT


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_behind_a_proxy_the_configured_callback_url_is_the_signed_one(client, twilio_site, changes):
    # Twilio called https://hooks.example.com/...; Django sees http://testserver/...
    twilio_site(status_callback=CALLBACK)
    row = sent_message()
    params = callback("delivered")
    # A signature over the URL Django rebuilds is not what Twilio would send.
    _refused(client, row, changes, params, twilio_sign(TOKEN, LOCAL_URL, params))
    answer = post_callback(client, params, twilio_sign(TOKEN, CALLBACK, params))
    assert answer.status_code == 200
    assert state(row)[0] == DELIVERED


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_without_status_callback_the_request_url_is_the_signed_one(client, twilio_site, changes):
    twilio_site()
    row = sent_message()
    params = callback("sent")
    _refused(client, row, changes, params, twilio_sign(TOKEN, CALLBACK, params))
    assert post_callback(client, params, twilio_sign(TOKEN, LOCAL_URL, params)).status_code == 200
    assert state(row)[0] == SENT


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_json_body_is_signed_through_body_sha256(client, twilio_site, changes):
    twilio_site()
    row = sent_message()
    body = json.dumps({"MessageSid": SID, "MessageStatus": "delivered"})
    digest = hashlib.sha256(body.encode()).hexdigest()
    target = f"{WEBHOOK}?bodySHA256={digest}"
    signature = twilio_sign(TOKEN, f"http://testserver{target}", {})
    tampered = body.replace("delivered", "failed")
    refused = client.post(
        target, data=tampered, content_type="application/json", HTTP_X_TWILIO_SIGNATURE=signature
    )
    assert refused.status_code == 403
    unsigned = client.post(
        WEBHOOK,
        data=body,
        content_type="application/json",
        HTTP_X_TWILIO_SIGNATURE=twilio_sign(TOKEN, LOCAL_URL, {}),
    )
    assert unsigned.status_code == 403, "a JSON body no signature covers"
    assert state(row)[0] == SENT
    answer = client.post(
        target, data=body, content_type="application/json", HTTP_X_TWILIO_SIGNATURE=signature
    )
    assert answer.status_code == 200
    assert state(row)[0] == DELIVERED


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_an_api_key_site_without_the_auth_token_refuses_every_callback(
    client, twilio_site, changes
):
    twilio_site(auth_token="", api_key_sid=KEY_SID, api_key_secret=KEY_SECRET)
    params = callback("failed")
    _refused(client, sent_message(), changes, params, twilio_sign(TOKEN, LOCAL_URL, params))


# ------------------------------------------------------------------ sms2fa_send_test


@pytest.mark.django_db
def test_send_test_command_through_a_faked_twilio(sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.twilio.TwilioProvider",
                "OPTIONS": {
                    "account_sid": ACCOUNT,
                    "auth_token": TOKEN,
                    "messaging_service_sid": SERVICE,
                },
            }
        }
    )
    out = io.StringIO()
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, MESSAGES, json=MESSAGE, status=201)
        call_command("sms2fa_send_test", PHONE, stdout=out)
        request = mock.calls[0].request
    assert request.headers["Authorization"] == basic(ACCOUNT, TOKEN)
    sent = form(request)
    assert sent["To"] == [PHONE] and sent["MessagingServiceSid"] == [SERVICE]
    assert "test message" in sent["Body"][0]
    assert SID in out.getvalue()
    message = Message.objects.get()
    assert (message.provider, message.provider_message_id, message.status) == (
        "default",
        SID,
        QUEUED,
    )


@pytest.mark.django_db
def test_send_test_command_reports_a_twilio_refusal(sms2fa_settings):
    from django.core.management import CommandError

    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.twilio.TwilioProvider",
                "OPTIONS": {"account_sid": ACCOUNT, "auth_token": TOKEN, "sender": "Acme"},
            }
        }
    )
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            MESSAGES,
            json=twilio_error(21408, "Permission to send an SMS has not been enabled", 400),
            status=400,
        )
        with pytest.raises(CommandError) as err:
            call_command("sms2fa_send_test", PHONE, stdout=io.StringIO())
    assert "21408" in str(err.value) and TOKEN not in str(err.value)
    assert Message.objects.get().status == FAILED


# ------------------------------------------------------------------ flows


@pytest.mark.django_db
def test_flow_the_code_travels_in_our_text_and_is_checked_locally(loopback, sms2fa_settings):
    from django_sms2fa import flows
    from django_sms2fa.models import Challenge, ChallengeStatus, CheckedBy

    loopback.always(201, MESSAGE)
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.twilio.TwilioProvider",
                "OPTIONS": {
                    "account_sid": ACCOUNT,
                    "auth_token": TOKEN,
                    "sender": "Acme",
                    "base_url": loopback.url,
                },
            }
        }
    )
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    stored = Challenge.objects.get(pk=challenge.pk)
    assert stored.checked_by == CheckedBy.LOCAL and stored.code_hash
    (request,) = loopback.requests
    body = parse_qs(request.body.decode())["Body"][0]
    code = re.search(r"\b\d{6,10}\b", body).group()
    message = Message.objects.get(challenge=challenge)
    assert (message.provider_message_id, message.status) == (SID, QUEUED)
    assert code not in message.text_masked
    assert flows.verify_challenge(challenge.pk, code).status == ChallengeStatus.VERIFIED
    assert len(loopback.requests) == 1, "checked locally: no call to Twilio"


@pytest.mark.django_db
def test_refresh_status_polls_twilio(sms2fa_settings, changes):
    from django_sms2fa import delivery

    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            ALIAS: {
                "BACKEND": "django_sms2fa.providers.twilio.TwilioProvider",
                "OPTIONS": {"account_sid": ACCOUNT, "auth_token": TOKEN, "sender": "Acme"},
            },
        }
    )
    row = sent_message()
    with responses.RequestsMock() as mock:
        answer = {**MESSAGE, "status": "undelivered", "error_code": 30003}
        mock.add(responses.GET, STATUS_URL, json=answer)
        summary = delivery.refresh_pending(alias=ALIAS)
    assert (summary.checked, summary.changed) == (1, 1)
    row.refresh_from_db()
    assert (row.status, row.provider_status) == (FAILED, "undelivered 30003")
    assert changes == [(row.pk, SENT, FAILED)]


# ------------------------------------------------------------------ conformance kit


class TwilioConformance(ProviderConformanceTests, unittest.TestCase):
    secrets = (TOKEN, basic(ACCOUNT, TOKEN).split()[1])
    send_path = "/Messages.json"
    expects_provider_checked = False
    expects_status_lookup = True
    expects_delivery_reports = True
    expects_signed_webhooks = True

    def make_provider(self, base_url: str, **overrides):
        return TwilioProvider(
            account_sid=ACCOUNT, auth_token=TOKEN, sender="Acme", base_url=base_url, **overrides
        )

    def accepted_answer(self) -> KitAnswer:
        return KitAnswer(201, {**MESSAGE, "body": f"Your code is {self.sms_code}"})

    def number_refused_answer(self) -> KitAnswer:
        return KitAnswer(400, twilio_error(21211, "Invalid 'To' Phone Number", 400))

    def credentials_refused_answer(self) -> KitAnswer:
        return KitAnswer(401, twilio_error(20003, "Authenticate", 401))
