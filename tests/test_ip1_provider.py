"""iP1 (v1 authentications API, mode d): exact requests, every answer shape in
docs/providers/ip1.md, secret and code redaction, real HTTP on loopback, and the
flows with a fake iP1 that makes and checks the codes itself."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading

import pytest
import responses

from django_sms2fa import flows
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import (
    ChallengeAlreadyUsed,
    DeliveryFailed,
    IncorrectCode,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
    TooManyAttempts,
)
from django_sms2fa.models import Challenge, ChallengeStatus, CheckedBy, Message
from django_sms2fa.providers import build_provider
from django_sms2fa.providers.ip1 import DEFAULT_MESSAGE_FORMAT, IP1Provider
from django_sms2fa.types import Capabilities, OutgoingSms

from .http_support import Answer, Recorded, free_port

ACCOUNT = "ip1-40123"
API_KEY = "k3y-IP1-0123456789abcdef-SECRET"
TOKEN = base64.b64encode(f"{ACCOUNT}:{API_KEY}".encode()).decode()
BASE = "https://api.ip1sms.com"
CREATE = f"{BASE}/api/authentications"
VALIDATE = f"{BASE}/api/authentications/validate"
PHONE = "+46701234567"
MSISDN = "46701234567"
SMS = OutgoingSms(to=PHONE, purpose="login", code_length=6, ttl=300)

DTO = {
    "ID": 4711,
    "Phone": MSISDN,
    "Created": "2024-05-01T10:00:00Z",
    "HasExpired": False,
    "Expires": "2024-05-01T10:05:00Z",
    "IsUsed": False,
    "Used": None,
}


def make(**options) -> IP1Provider:
    return IP1Provider(account_id=ACCOUNT, api_key=API_KEY, **options)


# ------------------------------------------------------------------ shape


def test_capabilities_are_provider_side_checking_only():
    provider = make()
    assert provider.capabilities == Capabilities(verifies_code=True)
    assert not provider.capabilities.takes_our_code(6)
    assert provider.base_url == BASE
    assert provider.provider_name == "iP1"


@responses.activate
def test_the_create_request_is_exactly_what_ip1_documents():
    responses.add(responses.POST, CREATE, json=DTO)
    make().send(SMS)
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert (request.method, request.url) == ("POST", CREATE)
    assert request.headers["Authorization"] == f"Basic {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.body.decode("utf-8")) == {
        "Phone": MSISDN,  # digits, no "+"
        "MessageFormat": DEFAULT_MESSAGE_FORMAT,
        "Length": 6,
        "ExpirationTime": 300,
        "NumericOnly": True,
    }
    assert "{0}" in DEFAULT_MESSAGE_FORMAT


@responses.activate
def test_sender_and_message_format_are_passed_through_in_utf8():
    responses.add(responses.POST, CREATE, json=DTO)
    make(sender="Åkeriet", message_format="Din kod är {0} – {{giltig}}").send(SMS)
    raw_body = responses.calls[0].request.body
    body = json.loads(raw_body.decode("utf-8"))
    assert body["From"] == "Åkeriet"
    assert body["MessageFormat"] == "Din kod är {0} – {{giltig}}"


@pytest.mark.parametrize(
    "length, ttl, sent_length, sent_ttl",
    [(6, 300, 6, 300), (10, 1, 10, 1), (2, 0, 3, 1), (30, 100_000, 25, 86_400)],
)
@responses.activate
def test_length_and_expiry_are_kept_inside_ip1s_ranges(length, ttl, sent_length, sent_ttl):
    responses.add(responses.POST, CREATE, json=DTO)
    make().send(OutgoingSms(to=PHONE, code_length=length, ttl=ttl))
    body = json.loads(responses.calls[0].request.body)
    assert (body["Length"], body["ExpirationTime"]) == (sent_length, sent_ttl)


@pytest.mark.parametrize(
    "message_format",
    [
        "Your code",  # no placeholder
        "Your code is {1}",
        "Your code is {{0}}",  # an escaped, literal "{0}": no code in the SMS
        "Code {0} for {1}",
        "Code {0} }",
        "Code: {0}\nDo not share it.",  # iP1's pattern ^(?=.*\{0\}).*$ is one line
        "",
        123,
    ],
)
def test_a_message_format_ip1_would_refuse_is_a_configuration_error(message_format):
    with pytest.raises(Sms2faConfigurationError) as err:
        make(message_format=message_format)
    assert err.value.check_id == "sms2fa.E002"
    assert "message_format" in str(err.value)


@pytest.mark.parametrize("message_format", ["{0}", "Kod: {0}", "{{{0}}}", "{0} {{x}}"])
def test_reasonable_message_formats_are_accepted(message_format):
    assert make(message_format=message_format).message_format == message_format


@pytest.mark.parametrize("sender", ["ThisNameIsTooLong", "+1234567890123456", 42])
def test_an_impossible_sender_is_a_configuration_error(sender):
    with pytest.raises(Sms2faConfigurationError):
        make(sender=sender)


@pytest.mark.parametrize("sender", ["", "Acme", "Acme Bank", "+46701234567", "123456789012345"])
def test_possible_senders_are_accepted(sender):
    make(sender=sender)


@pytest.mark.parametrize("phone", ["+123", "+1234567890123456", "+4670123abc", "+46 701234567"])
@responses.activate
def test_numbers_ip1_cannot_take_are_refused_before_any_request(phone):
    with pytest.raises(ProviderRejected) as err:
        make().send(OutgoingSms(to=phone))
    assert err.value.provider_code == "unsupported_number"
    assert len(responses.calls) == 0


# ---------------------------------------------------------------- success


@responses.activate
def test_the_authentication_id_becomes_the_message_id_and_raw_holds_no_code():
    # iP1 documents no code in this answer; should one ever appear, it must
    # not be kept.
    answer = {**DTO, "Code": "987654", "Extra": {"code": "987654", "keep": 1}}
    responses.add(responses.POST, CREATE, json=answer, status=200)
    result = make().send(SMS)
    assert result.message_id == "4711"
    assert result.status == "sent"
    assert result.provider_status == "created"
    assert result.returned_code == ""  # iP1 never tells us the code
    assert result.raw["ID"] == 4711 and result.raw["Extra"] == {"keep": 1}
    assert "987654" not in json.dumps(result.raw)
    assert result.latency_ms is not None


@responses.activate
def test_a_string_id_is_accepted_and_unknown_fields_ignored():
    responses.add(responses.POST, CREATE, json={"ID": "abc-1", "Whatever": [1, 2]}, status=201)
    assert make().send(SMS).message_id == "abc-1"


# ---------------------------------------------------------------- send errors


def _send_error(status, body, headers=None, content_type="application/json"):
    with responses.RequestsMock() as mock:
        body = json.dumps(body) if isinstance(body, (dict, list)) else body
        mock.add(
            responses.POST,
            CREATE,
            body=body,
            status=status,
            headers=headers or {},
            content_type=content_type,
        )
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            make().send(SMS)
        assert len(mock.calls) == 1
    return err.value


def test_a_model_state_error_on_the_phone_is_a_permanent_invalid_number():
    error = _send_error(
        400,
        {
            "Message": "The request is invalid.",
            "ModelState": {"authentication.Phone": ["The Phone field is required."]},
        },
    )
    assert type(error) is ProviderRejected
    assert error.provider_code == "invalid_number"
    assert error.http_status == 400
    assert "The request is invalid." in error.provider_text
    assert "authentication.Phone: The Phone field is required." in error.provider_text


def test_a_model_state_error_on_another_field_is_an_invalid_request():
    error = _send_error(
        400,
        {
            "Message": "The request is invalid.",
            "ModelState": {
                "authentication.Length": ["The field Length must be between 3 and 25."],
                "authentication.ExpirationTime": "bad",
            },
        },
    )
    assert type(error) is ProviderRejected
    assert error.provider_code == "invalid_request"
    assert "The field Length must be between 3 and 25." in error.provider_text
    assert "authentication.ExpirationTime: bad" in error.provider_text


def test_a_400_without_model_state_is_an_invalid_request():
    error = _send_error(400, {"Message": "Insufficient credits"})
    assert (type(error), error.provider_code) == (ProviderRejected, "invalid_request")
    assert "Insufficient credits" in error.provider_text


@pytest.mark.parametrize("status", [401, 403])
def test_bad_credentials_are_a_permanent_auth_failure(status):
    error = _send_error(status, {"Message": "Authorization has been denied for this request."})
    assert type(error) is ProviderRejected
    assert error.provider_code == "auth"
    assert error.http_status == status
    assert error.provider_text == (
        f"HTTP {status}: Authorization has been denied for this request."
    )
    assert error.may_have_sent is False


def test_a_401_with_no_body_is_still_an_auth_failure():
    error = _send_error(401, "", content_type="text/plain")
    assert error.provider_code == "auth"
    assert "(empty body)" in error.provider_text


@pytest.mark.parametrize("status", [402, 404, 405, 409, 422])
def test_other_4xx_are_permanent_with_the_status_as_code(status):
    error = _send_error(status, {"Message": "No HTTP resource was found"})
    assert type(error) is ProviderRejected
    assert error.provider_code == str(status)
    assert "No HTTP resource was found" in error.provider_text


def test_429_is_transient_with_retry_after():
    error = _send_error(429, {"Message": "Too many requests"}, headers={"Retry-After": "30"})
    assert type(error) is ProviderUnavailable
    assert error.retry_after == 30
    assert error.may_have_sent is False
    assert "Too many requests" in error.provider_text


def test_a_500_is_transient_and_may_have_sent():
    error = _send_error(
        500,
        {
            "Message": "An error has occurred.",
            "ExceptionMessage": "Object reference not set to an instance of an object.",
            "ExceptionType": "System.NullReferenceException",
            "StackTrace": "   at ...",
        },
    )
    assert type(error) is ProviderUnavailable
    assert error.provider_code == "500"
    assert error.may_have_sent is True
    assert "An error has occurred.; Object reference not set" in error.provider_text


@pytest.mark.parametrize("status", [502, 503])
def test_an_html_gateway_page_is_transient(status):
    error = _send_error(
        status, "<html><body><h1>Service Unavailable</h1></body></html>", content_type="text/html"
    )
    assert type(error) is ProviderUnavailable
    assert error.may_have_sent is False
    assert error.provider_text.startswith("(HTML page)")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "OK",
        "<html><body>Welcome</body></html>",
        "null",
        "[]",
        '{"Phone": "46701234567"}',
        '{"ID": null}',
        '{"ID": ""}',
        '{"ID": true}',
    ],
)
def test_a_2xx_we_cannot_read_is_a_maybe_sent_failure(body):
    error = _send_error(200, body, content_type="text/html")
    assert type(error) is ProviderUnavailable
    assert error.provider_code == "malformed_answer"
    assert error.may_have_sent is True


def test_a_read_timeout_is_maybe_sent_and_not_repeated(loopback):
    loopback.respond(200, DTO, delay=1.5)
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=loopback.url, read_timeout=0.3).send(SMS)
    assert err.value.may_have_sent is True
    assert err.value.provider_code == "timeout"
    assert len(loopback.requests) == 1


def test_an_unreachable_ip1_is_not_sent():
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=f"http://127.0.0.1:{free_port()}", connect_retries=0).send(SMS)
    assert err.value.may_have_sent is False


# ---------------------------------------------------------------- check_code


def _check(status, body, *, code="123456", message_id="", content_type="application/json"):
    with responses.RequestsMock() as mock:
        body = json.dumps(body) if isinstance(body, (dict, list)) else body
        mock.add(responses.POST, VALIDATE, body=body, status=status, content_type=content_type)
        result = make().check_code(phone=PHONE, code=code, message_id=message_id)
        assert len(mock.calls) == 1
        return result, mock.calls[0].request


def test_the_validate_request_is_exactly_what_ip1_documents():
    result, request = _check(200, {"Valid": True, "Authentication": DTO})
    assert result is True
    assert (request.method, request.url) == ("POST", VALIDATE)
    assert request.headers["Authorization"] == f"Basic {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"Phone": MSISDN, "Code": "123456"}


@pytest.mark.parametrize(
    "body",
    [
        {"Valid": False, "Authentication": None, "Phone": MSISDN, "Code": "123456"},
        {"Valid": False},
    ],
)
def test_a_wrong_or_expired_code_is_false(body):
    assert _check(200, body)[0] is False


@pytest.mark.parametrize("status", [400, 404, 409, 410, 422])
def test_a_4xx_on_validate_means_the_code_is_not_valid(status, caplog):
    caplog.set_level(logging.DEBUG)
    body = {
        "Message": f"No active authentication for {MSISDN} with code 123456",
        "ModelState": {"authentication.Code": ["Invalid code 123456"]},
    }
    assert _check(status, body)[0] is False
    lines = [record.getMessage() for record in caplog.records]
    assert any(f"HTTP {status}" in line for line in lines)
    for line in lines:
        assert "123456" not in line and MSISDN not in line


def test_valid_true_for_another_authentication_is_refused():
    body = {"Valid": True, "Authentication": {**DTO, "ID": 4712}}
    assert _check(200, body, message_id="4711")[0] is False
    assert _check(200, {**body, "Authentication": DTO}, message_id="4711")[0] is True
    # Without an id to compare, iP1's word is taken.
    assert _check(200, {"Valid": True, "Authentication": None}, message_id="4711")[0] is True
    assert _check(200, body)[0] is True


@pytest.mark.parametrize("status", [401, 403])
def test_bad_credentials_on_validate_raise_instead_of_blaming_the_user(status):
    with pytest.raises(ProviderRejected) as err:
        _check(status, {"Message": "Authorization has been denied for this request."})
    assert err.value.provider_code == "auth"


@pytest.mark.parametrize("status, maybe", [(429, False), (500, True), (503, False)])
def test_5xx_and_429_on_validate_mean_unavailable(status, maybe):
    with pytest.raises(ProviderUnavailable) as err:
        _check(status, {"Message": f"error for {MSISDN} code 123456", "Code": "123456"})
    assert err.value.http_status == status
    assert "123456" not in err.value.provider_text
    assert MSISDN not in err.value.provider_text


@pytest.mark.parametrize(
    "body",
    [
        "",
        "<html>oops</html>",
        "null",
        '{"Code": "123456"}',
        '{"Valid": "true", "Code": "123456"}',
        '{"Valid": 1}',
    ],
)
def test_a_validation_answer_we_cannot_read_is_unavailable_and_shows_no_code(body):
    with pytest.raises(ProviderUnavailable) as err:
        _check(200, body, content_type="text/html")
    assert err.value.provider_code == "malformed_answer"
    assert "123456" not in err.value.provider_text + str(err.value) + repr(err.value)


def test_an_unreachable_ip1_on_validate_is_unavailable():
    provider = make(base_url=f"http://127.0.0.1:{free_port()}", connect_retries=0)
    with pytest.raises(ProviderUnavailable):
        provider.check_code(phone=PHONE, code="123456")


def test_a_validate_timeout_is_unavailable_and_not_repeated(loopback):
    loopback.respond(200, {"Valid": True}, delay=1.5)
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=loopback.url, read_timeout=0.3).check_code(phone=PHONE, code="123456")
    assert err.value.provider_code == "timeout"
    assert len(loopback.requests) == 1


# ---------------------------------------------------------------- secrets


def test_credentials_never_reach_logs_errors_or_repr(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    provider = make(base_url=loopback.url, read_timeout=0.3)
    loopback.respond(200, DTO)
    loopback.respond(401, {"Message": f"Denied for {ACCOUNT}:{API_KEY} (Basic {TOKEN})"})
    loopback.respond(500, f"Authorization: Basic {TOKEN} key={API_KEY}")
    loopback.respond(400, {"Message": "bad", "ModelState": {"x": [API_KEY]}})
    loopback.respond(200, f"<html>{API_KEY}</html>")
    loopback.respond(403, {"Message": f"{API_KEY}"})  # on validate
    provider.send(SMS)
    texts = []
    for _ in range(4):
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            provider.send(SMS)
        texts += [str(err.value), repr(err.value), err.value.provider_text]
    with pytest.raises(ProviderRejected) as err:
        provider.check_code(phone=PHONE, code="123456")
    texts += [str(err.value), repr(err.value), err.value.provider_text]
    loopback.respond(200, DTO, delay=1)
    with pytest.raises(ProviderUnavailable) as err:
        provider.send(SMS)
    texts += [str(err.value), err.value.provider_text]
    records = [record.getMessage() for record in caplog.records]
    assert any("/api/authentications" in line for line in records), "urllib3 logs requests"
    assert any("[redacted]" in text for text in texts), "the echoed key was seen and redacted"
    for text in texts + records + [repr(provider)]:
        for secret in (API_KEY, TOKEN, ACCOUNT):
            assert secret not in text
    # The server did get the real credentials.
    assert loopback.requests[0].headers["authorization"] == f"Basic {TOKEN}"


def test_a_configuration_error_does_not_show_the_key():
    with pytest.raises(Sms2faConfigurationError) as err:
        IP1Provider(account_id=ACCOUNT, api_key=API_KEY, message_format="no placeholder")
    assert API_KEY not in str(err.value)


# ---------------------------------------------------------------- real HTTP


def test_send_and_check_over_real_http(loopback):
    loopback.respond(200, DTO)
    loopback.respond(200, {"Valid": True, "Authentication": {**DTO, "IsUsed": True}})
    provider = make(base_url=loopback.url, sender="Acme")
    result = provider.send(SMS)
    assert result.message_id == "4711"
    assert provider.check_code(phone=PHONE, code="654321", message_id=result.message_id) is True
    create, validate = loopback.requests
    assert (create.method, create.path) == ("POST", "/api/authentications")
    assert (validate.method, validate.path) == ("POST", "/api/authentications/validate")
    for request in (create, validate):
        assert request.headers["authorization"] == f"Basic {TOKEN}"
        assert request.headers["content-type"] == "application/json"
    assert create.json() == {
        "Phone": MSISDN,
        "From": "Acme",
        "MessageFormat": DEFAULT_MESSAGE_FORMAT,
        "Length": 6,
        "ExpirationTime": 300,
        "NumericOnly": True,
    }
    assert validate.json() == {"Phone": MSISDN, "Code": "654321"}


def test_twenty_sends_reuse_one_connection(loopback):
    loopback.always(200, DTO)
    provider = make(base_url=loopback.url)
    for _ in range(20):
        assert provider.send(SMS).message_id == "4711"
    assert len(loopback.requests) == 20
    assert loopback.connections == 1


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("missing", ["account_id", "api_key"])
def test_missing_credentials_are_a_configuration_error(sms2fa_settings, missing):
    options = {"account_id": ACCOUNT, "api_key": API_KEY}
    del options[missing]
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.ip1.IP1Provider", "OPTIONS": options}
        }
    )
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert missing in str(err.value)
    assert API_KEY not in str(err.value)


@pytest.mark.parametrize(
    "options", [{"account_id": ACCOUNT, "api_key": ""}, {"account_id": " ", "api_key": API_KEY}]
)
def test_empty_credentials_are_a_configuration_error(sms2fa_settings, options):
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.ip1.IP1Provider", "OPTIONS": options}
        }
    )
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert err.value.check_id == "sms2fa.E002"


# ---------------------------------------------------------------- flows


class FakeIP1:
    """Plays iP1 on the loopback server: makes each code, "texts" it, checks it.

    ``inbox`` maps a phone (iP1 digits) to the last code it received, as the
    phone's owner would read it. ``single_use=False`` makes it accept a right
    code again, to show that our own single-use rule does not depend on iP1's.
    """

    def __init__(self, *, single_use: bool = True, create_status: int = 200) -> None:
        self.single_use = single_use
        self.create_status = create_status
        self.validate_status = 200
        self.inbox: dict[str, str] = {}
        self.active: dict[str, tuple[int, str]] = {}
        self.creates: list[dict] = []
        self.validations: list[dict] = []
        self._next_id = 1000
        self._lock = threading.Lock()

    def __call__(self, request: Recorded) -> Answer:
        body = request.json()
        with self._lock:
            if request.path == "/api/authentications":
                self.creates.append(body)
                if self.create_status != 200:
                    return Answer(self.create_status, {"Message": "Service Unavailable"})
                self._next_id += 1
                code = "".join(secrets.choice("0123456789") for _ in range(body["Length"]))
                self.inbox[body["Phone"]] = code
                self.active[body["Phone"]] = (self._next_id, code)
                return Answer(200, {**DTO, "ID": self._next_id, "Phone": body["Phone"]})
            if request.path == "/api/authentications/validate":
                self.validations.append(body)
                if self.validate_status != 200:
                    return Answer(self.validate_status, {"Message": "An error has occurred."})
                auth_id, code = self.active.get(body["Phone"], (None, None))
                valid = code is not None and body["Code"] == code
                if valid and self.single_use:
                    del self.active[body["Phone"]]
                return Answer(
                    200,
                    {
                        "Valid": valid,
                        "Authentication": {**DTO, "ID": auth_id, "IsUsed": True} if valid else None,
                        "Phone": body["Phone"],
                        "Code": body["Code"],
                    },
                )
        return Answer(404, {"Message": "No HTTP resource was found"})


@pytest.fixture
def fake_ip1(loopback, sms2fa_settings):
    fake = FakeIP1()
    loopback.handler = fake
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.ip1.IP1Provider",
                "OPTIONS": {"account_id": ACCOUNT, "api_key": API_KEY, "base_url": loopback.url},
            }
        }
    )
    return fake


def _wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


@pytest.mark.django_db
def test_flow_request_then_wrong_then_right_code(fake_ip1, loopback):
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    stored = Challenge.objects.get(pk=challenge.pk)
    assert stored.checked_by == CheckedBy.PROVIDER
    assert stored.code_hash == ""
    assert stored.status == ChallengeStatus.PENDING
    # Our code length and lifetime travel to iP1; the code is numeric.
    (create,) = fake_ip1.creates
    assert create["Phone"] == MSISDN
    assert create["Length"] == app_settings.CODE_LENGTH
    assert 1 <= create["ExpirationTime"] <= app_settings.CODE_LIFETIME
    assert create["NumericOnly"] is True
    message = Message.objects.get(challenge=challenge)
    assert message.provider == "default"
    assert message.provider_message_id == "1001"
    assert message.status == "sent"
    assert message.text_masked == ""  # we never saw the text

    code = fake_ip1.inbox[MSISDN]
    with pytest.raises(IncorrectCode) as err:
        flows.verify_challenge(challenge.pk, _wrong(code))
    assert err.value.attempts_left == app_settings.MAX_ATTEMPTS - 1
    verified = flows.verify_challenge(challenge.pk, code)
    assert verified.status == ChallengeStatus.VERIFIED
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.VERIFIED
    assert fake_ip1.validations == [
        {"Phone": MSISDN, "Code": _wrong(code)},
        {"Phone": MSISDN, "Code": code},
    ]
    # Every request carried the credentials.
    assert {r.headers["authorization"] for r in loopback.requests} == {f"Basic {TOKEN}"}


@pytest.mark.django_db
def test_flow_after_max_attempts_the_right_code_is_refused_without_asking_ip1(fake_ip1):
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    code = fake_ip1.inbox[MSISDN]
    for _ in range(app_settings.MAX_ATTEMPTS):
        with pytest.raises(IncorrectCode):
            flows.verify_challenge(challenge.pk, _wrong(code))
    assert len(fake_ip1.validations) == app_settings.MAX_ATTEMPTS
    with pytest.raises(TooManyAttempts):
        flows.verify_challenge(challenge.pk, code)
    assert len(fake_ip1.validations) == app_settings.MAX_ATTEMPTS  # /validate not called
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.FAILED


@pytest.mark.django_db
def test_flow_a_right_code_works_once_even_if_ip1_would_accept_it_again(fake_ip1):
    fake_ip1.single_use = False
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    code = fake_ip1.inbox[MSISDN]
    flows.verify_challenge(challenge.pk, code)
    with pytest.raises(ChallengeAlreadyUsed):
        flows.verify_challenge(challenge.pk, code)
    assert len(fake_ip1.validations) == 1


@pytest.mark.django_db
def test_flow_ip1_down_at_send_makes_the_challenge_undeliverable(fake_ip1):
    fake_ip1.create_status = 503
    with pytest.raises(DeliveryFailed) as err:
        flows.request_challenge(phone=PHONE, purpose="login")
    challenge = Challenge.objects.get(pk=err.value.context["challenge_id"])
    assert challenge.status == ChallengeStatus.UNDELIVERABLE
    message = Message.objects.get(challenge=challenge)
    assert (message.status, message.error_code) == ("failed", "503")
    assert "Service Unavailable" in message.error_text
    assert isinstance(err.value.__cause__, ProviderUnavailable)


@pytest.mark.django_db
def test_flow_ip1_down_at_validate_raises_and_counts_the_attempt(fake_ip1):
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    code = fake_ip1.inbox[MSISDN]
    fake_ip1.validate_status = 503
    with pytest.raises(ProviderUnavailable):
        flows.verify_challenge(challenge.pk, code)
    stored = Challenge.objects.get(pk=challenge.pk)
    assert (stored.attempts, stored.wrong_attempts) == (1, 1)
    assert stored.status == ChallengeStatus.PENDING
    fake_ip1.validate_status = 200
    assert flows.verify_challenge(challenge.pk, code).status == ChallengeStatus.VERIFIED
