"""GoSMS: the exact requests, every answer shape in docs/providers/gosms.md, the
status look-up, secret redaction, real HTTP on loopback and the flows on top."""

from __future__ import annotations

import json
import logging
import re

import pytest
import responses

from django_sms2fa import flows
from django_sms2fa.exceptions import (
    DeliveryFailed,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from django_sms2fa.models import Challenge, ChallengeStatus, Message
from django_sms2fa.providers import build_provider
from django_sms2fa.providers.gosms import GoSMSProvider
from django_sms2fa.types import Capabilities, OutgoingSms

# JWT-shaped, as the GoSMS panel issues them.
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJnb3NtcyJ9.c2lnbmF0dXJlLVNFQ1JFVC0wMTIzNDU2Nzg5"
DEVICE = "6654a4e8f1527149588c89f2"
CALLBACK = "665727c04a5fad164ea38bb2"
MSG_ID = "6658053caa16b5ca5c5d72fc"
API = "https://api.gosms.ru/v1"
BACKEND = "django_sms2fa.providers.gosms.GoSMSProvider"
CODE = "402913"
SMS = OutgoingSms(
    to="+79991234567",
    text=f"Your verification code is {CODE}. It expires in 5 minutes.",
    code=CODE,
    purpose="login",
)


def gosms(**options) -> GoSMSProvider:
    return GoSMSProvider(token=TOKEN, **options)


def error_body(
    code, message="Неверно указан номер телефона в поле phone_number.", hash_="6654a4e8f152"
):
    return {"errors": {"code": code, "message": message, "hash": hash_}}


def sent_json(call) -> dict:
    return json.loads(call.request.body)


# ------------------------------------------------------------------ requests


def test_capabilities_are_mode_a_only():
    assert GoSMSProvider.capabilities == Capabilities(delivers_text=True)
    assert GoSMSProvider.provider_name == "GoSMS"
    assert gosms().base_url == API


@responses.activate
def test_the_send_request_is_exactly_what_the_api_documents():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    gosms().send(SMS)
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert request.method == "POST"
    assert request.url == f"{API}/sms/send"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    # No optional field is sent when no option asks for it.
    assert sent_json(responses.calls[0]) == {"message": SMS.text, "phone_number": "79991234567"}


@responses.activate
def test_device_sim_and_callback_options_go_into_the_body():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    gosms(device_id=DEVICE, to_sim=1, callback_id=CALLBACK).send(SMS)
    assert sent_json(responses.calls[0]) == {
        "message": SMS.text,
        "phone_number": "79991234567",
        "device_id": DEVICE,
        "to_sim": 1,  # a JSON number, as gosms.sh and the Go client send it
        "callback_id": CALLBACK,
    }


@responses.activate
def test_callback_without_device_sends_no_device_fields():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    gosms(callback_id=CALLBACK, device_id="").send(SMS)
    assert sent_json(responses.calls[0]) == {
        "message": SMS.text,
        "phone_number": "79991234567",
        "callback_id": CALLBACK,
    }


@responses.activate
def test_to_sim_from_an_environment_string_is_sent_as_a_number():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    gosms(device_id=DEVICE, to_sim="2").send(SMS)
    assert sent_json(responses.calls[0])["to_sim"] == 2


@responses.activate
def test_cyrillic_text_is_sent_as_valid_utf8_json():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    text = f"Ваш код: {CODE}. Ёё — не сообщайте его никому."
    gosms().send(OutgoingSms(to="+79991234567", text=text, code=CODE))
    body = responses.calls[0].request.body
    assert isinstance(body, bytes)
    assert json.loads(body.decode("utf-8"))["message"] == text


@pytest.mark.parametrize(
    "e164, sent",
    [
        ("+79991234567", "79991234567"),
        ("+46701234567", "46701234567"),
        ("+12025550123", "12025550123"),
        ("+881", "881"),  # 3 digits: the shortest GoSMS takes
    ],
)
@responses.activate
def test_phone_numbers_are_sent_as_digits_without_plus(e164, sent):
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    gosms().send(OutgoingSms(to=e164, text="hello 123456", code="123456"))
    assert sent_json(responses.calls[0])["phone_number"] == sent


@pytest.mark.parametrize(
    "to",
    [
        "79991234567",  # not E.164 (no +)
        "+07991234567",  # no country code starts with 0
        "+12",  # fewer than 3 digits
        "+" + "1" * 31,  # more than 30 digits
        "+7 999 123 45 67",
        "+٧٩٩١٢٣٤٥٦٧",  # Arabic-Indic digits
        "+７９９１２３４５６７",  # full-width digits
        "",
    ],
)
@responses.activate
def test_numbers_gosms_cannot_take_are_refused_before_any_call(to):
    with pytest.raises(ProviderRejected) as err:
        gosms().send(OutgoingSms(to=to, text="hello 123456", code="123456"))
    assert err.value.provider_code == "unsupported_number"
    assert err.value.provider == "default"
    assert len(responses.calls) == 0


@responses.activate
def test_backticks_which_gosms_rejects_are_replaced():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    gosms().send(OutgoingSms(to="+79991234567", text="Code `123456`", code="123456"))
    assert sent_json(responses.calls[0])["message"] == "Code '123456'"


@responses.activate
def test_a_300_character_text_is_sent_and_301_is_refused_before_sending():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    gosms().send(OutgoingSms(to="+79991234567", text="x" * 294 + CODE, code=CODE))
    assert len(responses.calls) == 1
    with pytest.raises(ProviderRejected) as err:
        gosms().send(OutgoingSms(to="+79991234567", text="x" * 295 + CODE, code=CODE))
    assert err.value.provider_code == "message_too_long"
    assert CODE not in err.value.provider_text
    assert len(responses.calls) == 1


@pytest.mark.parametrize("text", ["", "   "])
@responses.activate
def test_an_empty_text_is_refused_before_sending(text):
    with pytest.raises(ProviderRejected) as err:
        gosms().send(OutgoingSms(to="+79991234567", text=text))
    assert err.value.provider_code == "empty_message"
    assert len(responses.calls) == 0


# ------------------------------------------------------------------ success


@responses.activate
def test_success_gives_the_message_id_as_queued():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    result = gosms().send(SMS)
    assert result.message_id == MSG_ID
    # Accepted by GoSMS = waiting for one of the customer's phones to take it.
    assert result.status == "queued"
    assert result.provider_status == ""
    assert result.returned_code == ""
    assert result.raw == {"id": MSG_ID}
    assert result.latency_ms is not None


@responses.activate
def test_201_and_a_numeric_id_are_accepted():
    responses.post(f"{API}/sms/send", json={"id": 12345}, status=201)
    assert gosms().send(SMS).message_id == "12345"


@responses.activate
def test_raw_never_keeps_the_text_or_the_code_even_if_gosms_echoes_them():
    responses.post(
        f"{API}/sms/send",
        json={
            "id": MSG_ID,
            "message": SMS.text,
            "phone_number": "79991234567",
            "status": 0,
            "code": CODE,
            "extra": {"future": "field"},
        },
    )
    result = gosms().send(SMS)
    assert result.raw == {"id": MSG_ID, "status": 0, "extra": {"future": "field"}}
    assert CODE not in repr(result.raw) + repr(result)
    assert "79991234567" not in repr(result.raw)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "status, body, provider_code",
    [
        (400, error_body(2001), "2001"),
        # The docs' own 400 example uses 2008 for a phone error.
        (400, error_body(2008), "2008"),
        (400, error_body(2002, "Неверно указан текст сообщения"), "2002"),
        (400, error_body(2005, "Invalid device_id format."), "2005"),
        (400, error_body(1001, "Invalid Json request"), "1001"),
        (403, error_body(3000, "Your account is blocked"), "3000"),
        (403, error_body(1004, "You have not registered any devices"), "1004"),
        (404, error_body(1008, "SMS with this id does not exist."), "1008"),
        (400, error_body("2001"), "2001"),  # a code sent as a string
        (400, {"unexpected": "shape"}, "400"),
        (404, "404 page not found", "404"),
    ],
)
@responses.activate
def test_permanent_refusals_keep_gosms_code_and_message(status, body, provider_code):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.post(f"{API}/sms/send", status=status, **kwargs)
    with pytest.raises(ProviderRejected) as err:
        gosms().send(SMS)
    assert type(err.value) is ProviderRejected
    assert err.value.provider_code == provider_code
    assert err.value.http_status == status
    assert err.value.may_have_sent is False
    assert err.value.provider == "default"
    if isinstance(body, dict) and "errors" in body:
        assert body["errors"]["message"] in err.value.provider_text
        assert "hash 6654a4e8f152" in err.value.provider_text
        assert f"GoSMS error {provider_code}" in err.value.provider_text
    else:
        assert str(status) in err.value.provider_text


@pytest.mark.parametrize(
    "status, body, gosms_code",
    [
        (401, error_body(1003, "Api does not exist."), "1003"),
        (401, b"", ""),
        (401, "<html><body>401 Authorization Required</body></html>", ""),
        (403, error_body(1002, "Api is inactive."), "1002"),
        (403, error_body(1005, "Sending SMS is not allowed for this API."), "1005"),
        (400, error_body(1003, "Api does not exist."), "1003"),
        (403, error_body(1007, "Receiving information about SMS is not allowed"), "1007"),
    ],
)
@responses.activate
def test_credential_problems_are_permanent_auth_errors(status, body, gosms_code):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.post(f"{API}/sms/send", status=status, **kwargs)
    with pytest.raises(ProviderRejected) as err:
        gosms().send(SMS)
    assert err.value.provider_code == "auth"
    assert err.value.http_status == status
    assert err.value.may_have_sent is False
    if gosms_code:
        assert f"GoSMS error {gosms_code}" in err.value.provider_text
    else:
        assert f"HTTP {status}" in err.value.provider_text
    assert len(responses.calls) == 1  # never retried


@responses.activate
def test_the_monthly_tariff_limit_is_unavailable_not_sent_so_flows_fail_over():
    responses.post(f"{API}/sms/send", status=403, json=error_body(1006, "Maximum number of SMS"))
    with pytest.raises(ProviderUnavailable) as err:
        gosms().send(SMS)
    assert err.value.provider_code == "1006"
    assert err.value.may_have_sent is False
    assert err.value.http_status == 403
    assert "Maximum number of SMS" in err.value.provider_text


@responses.activate
def test_429_is_transient_with_retry_after_from_the_header():
    responses.post(
        f"{API}/sms/send",
        status=429,
        json={"errors": {"code": 1000, "message": "Too many requests"}},
        headers={"Retry-After": "7"},
    )
    with pytest.raises(ProviderUnavailable) as err:
        gosms().send(SMS)
    assert err.value.retry_after == 7
    assert err.value.may_have_sent is False  # a 429 was not processed
    assert err.value.http_status == 429
    assert err.value.provider_code == "1000"
    assert len(responses.calls) == 1


@responses.activate
def test_429_without_retry_after_backs_off_one_second():
    responses.post(f"{API}/sms/send", status=429, body="")
    with pytest.raises(ProviderUnavailable) as err:
        gosms().send(SMS)
    assert err.value.retry_after == 1
    assert err.value.provider_code == "429"


@responses.activate
def test_429_with_an_auth_code_is_still_transient():
    responses.post(f"{API}/sms/send", status=429, json=error_body(1003, "x"))
    with pytest.raises(ProviderUnavailable):
        gosms().send(SMS)


@pytest.mark.parametrize(
    "status, body, code, maybe_sent",
    [
        (500, error_body(1000, "Unknown error"), "1000", True),
        (500, "Internal Server Error", "500", True),
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "502", False),
        (503, "<html><body>Service Unavailable</body></html>", "503", False),
        (504, "", "504", True),
    ],
)
@responses.activate
def test_server_errors_are_transient(status, body, code, maybe_sent):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.post(f"{API}/sms/send", status=status, **kwargs)
    with pytest.raises(ProviderUnavailable) as err:
        gosms().send(SMS)
    assert err.value.provider_code == code
    assert err.value.http_status == status
    assert err.value.may_have_sent is maybe_sent
    if body and "html" in str(body):
        assert "(HTML page)" in err.value.provider_text
    assert len(responses.calls) == 1  # no blind re-send


@responses.activate
def test_a_200_that_says_errors_is_a_refusal():
    responses.post(f"{API}/sms/send", status=200, json=error_body(2001))
    with pytest.raises(ProviderRejected) as err:
        gosms().send(SMS)
    assert err.value.provider_code == "2001"
    assert err.value.http_status == 200


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>",
        "",
        '["6654a4e8f1527149588c89f2"]',
        "{}",
        '{"id": ""}',
        '{"id": null}',
        '{"id": true}',
        '{"id": {"$oid": "x"}}',
    ],
)
@responses.activate
def test_a_2xx_answer_without_a_readable_id_may_have_sent(body):
    responses.post(f"{API}/sms/send", status=200, body=body, content_type="text/html")
    with pytest.raises(ProviderUnavailable) as err:
        gosms().send(SMS)
    assert err.value.provider_code == "malformed_answer"
    assert err.value.may_have_sent is True
    assert len(responses.calls) == 1


# ------------------------------------------------------------------ status look-up


@pytest.mark.parametrize(
    "gosms_status, status",
    [
        (0, "queued"),  # waiting for processing
        (1, "queued"),  # a phone took it
        (2, "sent"),
        (3, "failed"),  # send error
        (4, "delivered"),
        (5, "failed"),  # delivery error
        (6, "unknown"),  # not documented (yet)
        (-1, "unknown"),
        ("4", "delivered"),  # a number sent as a string
        ("done", "unknown"),
        (2.5, "unknown"),
    ],
)
@responses.activate
def test_get_status_maps_every_gosms_status(gosms_status, status):
    responses.post(
        f"{API}/sms/get",
        json={
            "id": MSG_ID,
            "message": SMS.text,
            "status": gosms_status,
            "callback_id": "",
            "device_id": DEVICE,
            "phone_number": "79991234567",
            "message_status": "Доставлено",
            "time_create": 1716812679,
            "to_sim": 1,
        },
    )
    result = gosms().get_status(MSG_ID)
    request = responses.calls[0].request
    assert (request.method, request.url) == ("POST", f"{API}/sms/get")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"id": MSG_ID}
    assert result.message_id == MSG_ID
    assert result.status == status
    assert result.provider_status == str(gosms_status)
    assert result.raw == {
        "id": MSG_ID,
        "status": gosms_status,
        "callback_id": "",
        "device_id": DEVICE,
        "message_status": "Доставлено",
        "time_create": 1716812679,
        "to_sim": 1,
    }
    assert CODE not in repr(result.raw)


@pytest.mark.parametrize(
    "status, body, error, provider_code",
    [
        (404, error_body(1008, "SMS with this id does not exist."), ProviderRejected, "1008"),
        (400, error_body(2003, "Invalid id format."), ProviderRejected, "2003"),
        (403, error_body(1007, "Receiving information is not allowed"), ProviderRejected, "auth"),
        (401, error_body(1003, "Api does not exist."), ProviderRejected, "auth"),
        (429, "", ProviderUnavailable, "429"),
        (500, error_body(1000, "Unknown error"), ProviderUnavailable, "1000"),
    ],
)
@responses.activate
def test_get_status_errors(status, body, error, provider_code):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.post(f"{API}/sms/get", status=status, **kwargs)
    with pytest.raises(error) as err:
        gosms(alias="ru").get_status(MSG_ID)
    assert type(err.value) is error
    assert err.value.provider_code == provider_code
    assert err.value.provider == "ru"


@pytest.mark.parametrize("body", ["", "<html>oops</html>", '{"id": "x"}', "[]"])
@responses.activate
def test_get_status_answers_we_cannot_read(body):
    responses.post(f"{API}/sms/get", status=200, body=body)
    with pytest.raises(ProviderUnavailable) as err:
        gosms().get_status(MSG_ID)
    assert err.value.provider_code == "malformed_answer"


@responses.activate
def test_get_status_without_an_id_makes_no_call():
    with pytest.raises(ProviderRejected) as err:
        gosms().get_status("")
    assert err.value.provider_code == "invalid_message_id"
    assert len(responses.calls) == 0


# ------------------------------------------------------------------ configuration


def test_a_missing_token_is_a_configuration_error_naming_it(sms2fa_settings):
    sms2fa_settings(PROVIDERS={"default": {"BACKEND": BACKEND, "OPTIONS": {}}})
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert err.value.check_id == "sms2fa.E002"
    assert "token" in str(err.value)


@pytest.mark.parametrize(
    "token", ["", "   ", None, f"Bearer {TOKEN}", "abc\r\nX-Evil: 1", "токен-X-Evil", 12345]
)
def test_an_unusable_token_is_refused_without_echoing_it(sms2fa_settings, token):
    sms2fa_settings(PROVIDERS={"default": {"BACKEND": BACKEND, "OPTIONS": {"token": token}}})
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert err.value.check_id == "sms2fa.E002"
    assert "'token'" in str(err.value)
    assert TOKEN not in str(err.value) and "X-Evil" not in str(err.value)


@responses.activate
def test_whitespace_around_the_token_is_forgiven():
    responses.post(f"{API}/sms/send", json={"id": MSG_ID})
    GoSMSProvider(token=f"  {TOKEN}\n").send(SMS)
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "options, option",
    [
        ({"device_id": "6654a4e8f1527149588c89f"}, "device_id"),  # 23 hex
        ({"device_id": "6654a4e8f1527149588c89f2a"}, "device_id"),  # 25 hex
        ({"device_id": "6654a4e8f1527149588c89zz"}, "device_id"),
        ({"device_id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789"}, "device_id"),  # new-API UUID
        ({"device_id": 6654}, "device_id"),
        ({"callback_id": "not-an-object-id"}, "callback_id"),
        ({"callback_id": "6654a4e8f1527149588c89f2\n"}, "callback_id"),
        ({"to_sim": 1}, "to_sim"),  # without device_id
        ({"device_id": DEVICE, "to_sim": -1}, "to_sim"),
        ({"device_id": DEVICE, "to_sim": "first"}, "to_sim"),
        ({"device_id": DEVICE, "to_sim": True}, "to_sim"),
    ],
)
def test_malformed_options_fail_at_construction_naming_the_option(options, option):
    with pytest.raises(Sms2faConfigurationError) as err:
        GoSMSProvider(token=TOKEN, alias="ru", **options)
    assert err.value.check_id == "sms2fa.E002"
    assert f"'{option}'" in str(err.value)
    assert "'ru'" in str(err.value)
    assert TOKEN not in str(err.value)
    value = options.get(option)
    if isinstance(value, str) and len(value) > 4:
        assert value.strip() not in str(err.value)


def test_upper_case_object_ids_are_valid():
    provider = GoSMSProvider(token=TOKEN, device_id=DEVICE.upper(), callback_id=CALLBACK)
    assert provider.device_id == DEVICE.upper()


def test_an_unknown_option_is_a_configuration_error():
    with pytest.raises(Sms2faConfigurationError) as err:
        GoSMSProvider(token=TOKEN, sender="ACME")
    assert "sender" in str(err.value)


def test_an_http_base_url_off_loopback_is_refused():
    with pytest.raises(Sms2faConfigurationError):
        GoSMSProvider(token=TOKEN, base_url="http://api.gosms.ru/v1")


def test_the_new_api_host_can_be_configured():
    assert gosms(base_url="https://api.gosms.ru/api/ext/v1/").base_url == (
        "https://api.gosms.ru/api/ext/v1"
    )


# ------------------------------------------------------------------ real HTTP (loopback)


def test_against_a_real_server_the_request_is_as_documented(loopback):
    loopback.respond(200, {"id": MSG_ID})
    result = gosms(base_url=loopback.url, device_id=DEVICE).send(SMS)
    assert result.message_id == MSG_ID
    request = loopback.requests[0]
    assert (request.method, request.path) == ("POST", "/sms/send")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "message": SMS.text,
        "phone_number": "79991234567",
        "device_id": DEVICE,
    }


def test_twenty_sends_reuse_one_connection(loopback):
    loopback.always(200, {"id": MSG_ID})
    provider = gosms(base_url=loopback.url)
    for _ in range(20):
        assert provider.send(SMS).message_id == MSG_ID
    loopback.respond(200, {"id": MSG_ID, "status": 4})
    assert provider.get_status(MSG_ID).status == "delivered"
    assert len(loopback.requests) == 21
    assert loopback.connections == 1


def test_a_read_timeout_may_have_sent_and_is_not_repeated(loopback):
    loopback.respond(200, {"id": MSG_ID}, delay=1.5)
    with pytest.raises(ProviderUnavailable) as err:
        gosms(base_url=loopback.url, read_timeout=0.3).send(SMS)
    assert err.value.may_have_sent is True
    assert err.value.provider_code == "timeout"
    assert len(loopback.requests) == 1


def test_real_server_429_with_retry_after(loopback):
    loopback.respond(429, error_body(1000, "Too Many Requests"), headers={"Retry-After": "3"})
    with pytest.raises(ProviderUnavailable) as err:
        gosms(base_url=loopback.url).send(SMS)
    assert err.value.retry_after == 3
    assert len(loopback.requests) == 1


def test_the_token_never_reaches_logs_errors_or_reprs(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    provider = gosms(base_url=loopback.url, read_timeout=0.3, device_id=DEVICE)
    loopback.respond(200, {"id": MSG_ID})
    result = provider.send(SMS)
    texts = [repr(provider), str(provider), repr(result), repr(result.raw)]
    failures = [
        (401, error_body(1003, f"token {TOKEN} does not exist")),
        (400, f"bad request: Authorization: Bearer {TOKEN}"),
        (403, error_body(1005, f"Bearer {TOKEN} may not send")),
        (500, f"<html>{TOKEN}</html>"),
        (200, f"<html>{TOKEN}</html>"),
        (200, error_body(2001, TOKEN)),
    ]
    for status, body in failures:
        loopback.respond(status, body)
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            provider.send(SMS)
        texts += [str(err.value), repr(err.value), err.value.provider_text, err.value.provider_code]
    loopback.respond(404, error_body(1008, f"no sms for {TOKEN}"))
    with pytest.raises(ProviderRejected) as err:
        provider.get_status(MSG_ID)
    texts += [str(err.value), err.value.provider_text]
    loopback.respond(200, {"id": MSG_ID}, delay=1)
    with pytest.raises(ProviderUnavailable) as err:
        provider.send(SMS)
    texts += [str(err.value), err.value.provider_text]
    records = [record.getMessage() for record in caplog.records]
    assert any("/sms/send" in line for line in records), "urllib3 should have logged requests"
    assert any("[redacted]" in text for text in texts), "echoed tokens should show as redacted"
    for text in texts + records:
        assert TOKEN not in text
        assert CODE not in text


# ------------------------------------------------------------------ flows


def gosms_settings(sms2fa_settings, url: str, **options) -> None:
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": BACKEND,
                "OPTIONS": {"token": TOKEN, "base_url": url, **options},
            }
        }
    )


@pytest.mark.django_db
def test_a_login_challenge_goes_through_gosms_and_verifies(loopback, sms2fa_settings, user):
    gosms_settings(sms2fa_settings, loopback.url, callback_id=CALLBACK)
    loopback.respond(200, {"id": MSG_ID})
    challenge = flows.request_challenge(phone="+7 999 123-45-67", purpose="login", user=user)

    request = loopback.requests[0]
    assert request.path == "/sms/send"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    body = request.json()
    assert body["phone_number"] == "79991234567"
    assert body["callback_id"] == CALLBACK
    code = re.search(r"\b(\d{6})\b", body["message"]).group(1)  # what the phone shows

    message = Message.objects.get(challenge=challenge)
    assert message.provider == "default"
    assert message.provider_message_id == MSG_ID
    assert message.status == "queued"
    assert code not in message.text_masked

    verified = flows.verify_challenge(challenge.pk, code, user=user)
    assert verified.status == ChallengeStatus.VERIFIED
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.VERIFIED
    assert len(loopback.requests) == 1  # checked locally: GoSMS has no verify API


@pytest.mark.django_db
def test_a_gosms_outage_leaves_the_challenge_undeliverable(loopback, sms2fa_settings):
    gosms_settings(sms2fa_settings, loopback.url)
    loopback.respond(503, "<html><body>503 Service Temporarily Unavailable</body></html>")
    with pytest.raises(DeliveryFailed) as err:
        flows.request_challenge(phone="+79991234567", purpose="login")
    challenge = Challenge.objects.get(pk=err.value.context["challenge_id"])
    assert challenge.status == ChallengeStatus.UNDELIVERABLE
    message = Message.objects.get(challenge=challenge)
    assert message.status == "failed"  # a 503 was not processed: nothing went out
    assert message.error_code == "503"
    assert len(loopback.requests) == 1


@pytest.mark.django_db
def test_a_dead_token_is_recorded_as_auth(loopback, sms2fa_settings):
    gosms_settings(sms2fa_settings, loopback.url)
    loopback.respond(401, error_body(1003, "Api does not exist."))
    with pytest.raises(DeliveryFailed) as err:
        flows.request_challenge(phone="+79991234567", purpose="login")
    assert isinstance(err.value.__cause__, ProviderRejected)
    message = Message.objects.get(challenge_id=err.value.context["challenge_id"])
    assert message.error_code == "auth"
    assert "1003" in message.error_text
    assert TOKEN not in message.error_text
