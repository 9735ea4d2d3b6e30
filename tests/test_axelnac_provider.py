"""AxelNAC: our code as a guest password, texted by the NAC.

Exact request and answer shapes with ``responses``; the token's life (caching,
idle and maximum-age renewal with an injected clock, 401 → one re-login and
one repeat), pooling, timeouts and the flows against a fake NAC on the
loopback server.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest
import responses

from django_sms2fa import flows
from django_sms2fa.exceptions import (
    DeliveryFailed,
    IncorrectCode,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from django_sms2fa.models import Challenge, ChallengeStatus, Message
from django_sms2fa.providers import build_provider
from django_sms2fa.providers.axelnac import (
    LOGIN_PATH,
    SEND_PATH,
    TOKEN_IDLE_RENEWAL,
    TOKEN_MAX_AGE_RENEWAL,
    AxelNACProvider,
)
from django_sms2fa.types import SENT, OutgoingSms

from .http_support import Answer, Recorded

BASE = "https://nac.example:9999"
LOGIN_URL = BASE + LOGIN_PATH
SEND_URL = BASE + SEND_PATH
API_USER = "sms2fa-webservices"
PASSWORD = "nac-P4ssw0rd-SECRET-9f2c"
TOKEN = "3f1c9a2e-tok1-4c7b-9d2e-SECRETTOKEN1"
TOKEN2 = "77b0d1aa-tok2-41f0-8c55-SECRETTOKEN2"
SOURCE = "sms-guests"
CODE = "482913"
SMS = OutgoingSms(
    to="+46701234567",
    text=f"Your code is {CODE}",
    code=CODE,
    purpose="login",
    reference="c0ffee",
    username="guest42",
)
INVALID_TOKEN = {"message": "Invalid token. Login again using /api/v1/login"}
BAD_LOGIN = {"message": "Wasn't able to authenticate those credentials"}


def resolve_guest_pid(sms: OutgoingSms) -> str:
    """A pid_resolver, referenced by dotted path in the tests below."""
    return f"guest-{sms.username}-{sms.to[-4:]}"


def resolve_nothing(sms: OutgoingSms) -> str:
    return ""


def resolve_an_int(sms: OutgoingSms) -> int:
    return 42


def make(base_url: str = BASE, **options) -> AxelNACProvider:
    options.setdefault("username", API_USER)
    options.setdefault("password", PASSWORD)
    options.setdefault("source_id", SOURCE)
    return AxelNACProvider(base_url=base_url, **options)


class Clock:
    """An injectable monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeNAC:
    """The NAC's API on the loopback server: login hands out a new token each
    time; a send with anything but the newest token gets PF's 401."""

    def __init__(self) -> None:
        self.logins: list[Recorded] = []
        self.sends: list[Recorded] = []
        self.tokens: list[str] = []
        self.send_answers: list[Answer] = []
        self.login_answers: list[Answer] = []

    @property
    def token(self) -> str:
        return self.tokens[-1] if self.tokens else ""

    def expire(self) -> None:
        """The NAC forgets every token (idle timeout, restart)."""
        self.tokens.append("dead-token")

    def __call__(self, request: Recorded) -> Answer:
        if request.path == LOGIN_PATH:
            self.logins.append(request)
            if self.login_answers:
                return self.login_answers.pop(0)
            self.tokens.append(f"tok-{len(self.logins)}-SECRET-0123456789")
            return Answer(200, {"token": self.token})
        if request.path == SEND_PATH:
            self.sends.append(request)
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return Answer(401, INVALID_TOKEN)
            if self.send_answers:
                return self.send_answers.pop(0)
            return Answer(200, {"message": "Credentials sent", "id": f"nac-{len(self.sends)}"})
        return Answer(404, {"message": "Not found", "status": 404})


@pytest.fixture
def nac(loopback) -> FakeNAC:
    fake = FakeNAC()
    loopback.handler = fake
    return fake


def ok_login(token: str = TOKEN) -> None:
    responses.add(responses.POST, LOGIN_URL, json={"token": token}, status=200)


# ----------------------------------------------------------------- requests


@responses.activate
def test_the_exact_login_and_send_requests():
    ok_login()
    responses.add(responses.POST, SEND_URL, json={"message": "Credentials sent"}, status=200)
    make().send(SMS)

    assert len(responses.calls) == 2
    login, send = (call.request for call in responses.calls)
    assert (login.method, login.url) == ("POST", LOGIN_URL)
    assert login.headers["Content-Type"] == "application/json"
    assert "Authorization" not in login.headers
    assert json.loads(login.body) == {"username": API_USER, "password": PASSWORD}

    assert (send.method, send.url) == ("POST", SEND_URL)
    assert send.headers["Authorization"] == f"Bearer {TOKEN}"
    assert send.headers["Content-Type"] == "application/json"
    assert send.headers["User-Agent"] == "django-sms2fa"
    assert json.loads(send.body) == {
        "args": {"pid": "guest42", "password": CODE, "source_id": SOURCE}
    }
    # The NAC texts the phone on the guest record: we never send a number.
    assert b"4670" not in send.body and b"4670" not in login.body


@responses.activate
def test_a_base_url_that_already_ends_in_api_v1_is_accepted():
    ok_login()
    responses.add(responses.POST, SEND_URL, json={}, status=200)
    make(BASE + "/api/v1/").send(SMS)
    assert [c.request.url for c in responses.calls] == [LOGIN_URL, SEND_URL]


@responses.activate
def test_an_integer_source_id_is_sent_as_a_string():
    ok_login()
    responses.add(responses.POST, SEND_URL, json={}, status=200)
    make(source_id=7).send(SMS)
    assert json.loads(responses.calls[1].request.body)["args"]["source_id"] == "7"


# ----------------------------------------------------------------- success


@pytest.mark.parametrize(
    "status, body, message_id, raw",
    [
        (200, {"message": "Credentials sent", "id": "sms-17"}, "sms-17", None),
        (200, {"message_id": 9001}, "9001", None),
        (201, {"item": {"id": 5, "status": "queued"}}, "5", None),
        (200, {"message": "Credentials sent"}, "", None),
        (200, "", "", {}),
        (204, "", "", {}),
        (200, {"status": 200, "message": "OK"}, "", None),
    ],
)
@responses.activate
def test_any_2xx_is_accepted_and_an_id_is_taken_when_there_is_one(status, body, message_id, raw):
    ok_login()
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.add(responses.POST, SEND_URL, status=status, **kwargs)
    result = make().send(SMS)
    assert result.message_id == message_id
    assert result.status == SENT
    assert result.provider_status == "accepted"
    assert result.returned_code == ""
    assert result.raw == (body if raw is None else raw)


@responses.activate
def test_raw_never_holds_the_code_the_password_or_the_token():
    ok_login()
    echo = {
        "message": f"Sent password {CODE} to guest42",
        "id": "sms-1",
        "args": {"pid": "guest42", "password": CODE, "source_id": SOURCE},
        "Token": TOKEN,
        "echo": [CODE, int(CODE), f"login {API_USER}/{PASSWORD}"],
    }
    responses.add(responses.POST, SEND_URL, json=echo, status=200)
    result = make().send(SMS)
    dumped = json.dumps(result.raw)
    for secret in (CODE, PASSWORD, TOKEN):
        assert secret not in dumped
    assert result.raw["args"] == {"pid": "guest42", "source_id": SOURCE}
    assert "Token" not in result.raw
    assert result.raw["id"] == "sms-1"


@responses.activate
def test_a_code_with_leading_zeros_echoed_as_a_number_is_removed_from_raw():
    ok_login()
    responses.add(responses.POST, SEND_URL, json={"n": 12345, "other": 7}, status=200)
    result = make().send(OutgoingSms(to="+46701234567", code="012345", username="guest42"))
    assert result.raw == {"n": "[redacted]", "other": 7}


# ----------------------------------------------------------------- send errors


@pytest.mark.parametrize(
    "status, body, error, code, maybe_sent, fragments",
    [
        (
            400,
            {
                "message": "Invalid request",
                "errors": [{"field": "pid", "message": "pid is required"}],
                "status": 400,
            },
            ProviderRejected,
            "400",
            False,
            ["Invalid request", "pid: pid is required"],
        ),
        (
            404,
            {"message": "Unable to get resource with this identifier", "status": 404},
            ProviderRejected,
            "404",
            False,
            ["Unable to get resource"],
        ),
        (
            422,
            {
                "message": "Guest has no telephone",
                "errors": [{"field": "telephone", "message": "missing"}],
                "status": 422,
            },
            ProviderRejected,
            "422",
            False,
            ["Guest has no telephone", "telephone: missing"],
        ),
        (
            403,
            {"message": "Not authorized to access sms_gateways"},
            ProviderRejected,
            "auth",
            False,
            ["forbidden", "Not authorized"],
        ),
        (
            500,
            {"message": "Error sending SMS", "status": 500},
            ProviderUnavailable,
            "500",
            True,
            ["Error sending SMS"],
        ),
        (503, "Service Unavailable", ProviderUnavailable, "503", False, ["Service Unavailable"]),
        (
            502,
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
            ProviderUnavailable,
            "502",
            False,
            ["(HTML page)", "Bad Gateway"],
        ),
        (405, "", ProviderRejected, "405", False, ["(empty body)"]),
    ],
)
@responses.activate
def test_every_send_error_shape(status, body, error, code, maybe_sent, fragments):
    ok_login()
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.add(responses.POST, SEND_URL, status=status, **kwargs)
    with pytest.raises(error) as err:
        make().send(SMS)
    assert type(err.value) is error
    assert err.value.provider_code == code
    assert err.value.http_status == status
    assert err.value.may_have_sent is maybe_sent
    assert err.value.provider == "default"
    for fragment in fragments:
        assert fragment in err.value.provider_text
    assert len(responses.calls) == 2  # one login, one send: never repeated


@responses.activate
def test_429_is_transient_with_retry_after():
    ok_login()
    responses.add(
        responses.POST,
        SEND_URL,
        json={"message": "Too many requests"},
        status=429,
        headers={"Retry-After": "30"},
    )
    with pytest.raises(ProviderUnavailable) as err:
        make().send(SMS)
    assert err.value.retry_after == 30
    assert err.value.may_have_sent is False
    assert err.value.provider_code == "429"
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    "body",
    [
        "<html><head><title>AxelNAC</title></head><body>Sign in</body></html>",
        "OK, sent",
        '["a", "list"]',
        '"just a string"',
    ],
)
@responses.activate
def test_a_2xx_we_cannot_read_may_have_sent(body):
    ok_login()
    responses.add(responses.POST, SEND_URL, body=body, status=200)
    with pytest.raises(ProviderUnavailable) as err:
        make().send(SMS)
    assert err.value.provider_code == "malformed_answer"
    assert err.value.may_have_sent is True
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    "body, code, fragment",
    [
        ({"message": "No telephone for this guest", "status": 422}, "422", "No telephone"),
        ({"errors": [{"field": "pid", "message": "unknown user"}]}, "refused", "pid: unknown"),
    ],
)
@responses.activate
def test_a_2xx_carrying_a_render_error_body_is_a_refusal(body, code, fragment):
    ok_login()
    responses.add(responses.POST, SEND_URL, json=body, status=200)
    with pytest.raises(ProviderRejected) as err:
        make().send(SMS)
    assert err.value.provider_code == code
    assert fragment in err.value.provider_text
    assert err.value.may_have_sent is False


@responses.activate
def test_an_error_that_echoes_the_code_does_not_carry_it():
    ok_login()
    responses.add(
        responses.POST,
        SEND_URL,
        json={
            "message": f"Password {CODE} does not meet the policy",
            "errors": [{"field": "password", "message": f"{CODE} too short"}],
        },
        status=422,
    )
    with pytest.raises(ProviderRejected) as err:
        make().send(SMS)
    for text in (err.value.provider_text, str(err.value), repr(err.value)):
        assert CODE not in text
    assert "does not meet the policy" in err.value.provider_text


def test_a_read_timeout_may_have_sent_and_is_not_repeated(loopback, nac):
    nac.send_answers.append(Answer(200, {"id": "late"}, delay=1.5))
    with pytest.raises(ProviderUnavailable) as err:
        make(loopback.url, read_timeout=0.3).send(SMS)
    assert err.value.may_have_sent is True
    assert err.value.provider_code == "timeout"
    assert len(nac.logins) == 1
    assert len(nac.sends) == 1  # never sent twice


# ----------------------------------------------------------------- login errors


@pytest.mark.parametrize(
    "status, body, fragments",
    [
        (401, BAD_LOGIN, ["HTTP 401", "Wasn't able to authenticate"]),
        (400, "Bad Request: invalid character 'x' looking for value", ["HTTP 400", "Bad Request"]),
        (403, {"message": "Forbidden"}, ["HTTP 403", "Forbidden"]),
        (404, "<html><body>Not Found</body></html>", ["HTTP 404", "(HTML page)"]),
        (302, "", ["HTTP 302"]),
    ],
)
@responses.activate
def test_login_refusals_are_permanent_auth_errors_and_nothing_is_sent(status, body, fragments):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.add(responses.POST, LOGIN_URL, status=status, **kwargs)
    with pytest.raises(ProviderRejected) as err:
        make().send(SMS)
    assert err.value.provider_code == "auth"
    assert err.value.http_status == status
    assert err.value.may_have_sent is False
    for fragment in fragments:
        assert fragment in err.value.provider_text
    assert len(responses.calls) == 1  # the send was never attempted


@pytest.mark.parametrize(
    "status, body, headers, code",
    [
        (500, {"message": "internal error"}, {}, "500"),
        (503, "Service Unavailable", {}, "503"),
        (504, "<html>Gateway Timeout</html>", {}, "504"),
        (429, {"message": "slow down"}, {"Retry-After": "12"}, "429"),
        (200, {"no_token": True}, {}, "malformed_answer"),
        (200, {"token": ""}, {}, "malformed_answer"),
        (200, "<html>portal</html>", {}, "malformed_answer"),
        (200, "", {}, "malformed_answer"),
    ],
)
@responses.activate
def test_transient_login_failures_say_nothing_was_sent(status, body, headers, code):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.add(responses.POST, LOGIN_URL, status=status, headers=headers, **kwargs)
    with pytest.raises(ProviderUnavailable) as err:
        make().send(SMS)
    assert err.value.provider_code == code
    # No SMS can have gone before a token existed: failover stays possible.
    assert err.value.may_have_sent is False
    assert err.value.provider_text.startswith("login")
    if status == 429:
        assert err.value.retry_after == 12
    assert len(responses.calls) == 1


def test_a_login_timeout_says_nothing_was_sent(loopback, nac):
    nac.login_answers.append(Answer(200, {"token": TOKEN}, delay=1.5))
    with pytest.raises(ProviderUnavailable) as err:
        make(loopback.url, read_timeout=0.3).send(SMS)
    assert err.value.provider_code == "timeout"
    assert err.value.may_have_sent is False
    assert len(nac.logins) == 1 and nac.sends == []


# ----------------------------------------------------------------- the token


def test_twenty_sends_log_in_once_and_reuse_one_connection(loopback, nac):
    provider = make(loopback.url)
    ids = [provider.send(SMS).message_id for _ in range(20)]
    assert ids == [f"nac-{n}" for n in range(1, 21)]
    assert len(nac.logins) == 1
    assert len(nac.sends) == 20
    assert {r.headers["authorization"] for r in nac.sends} == {f"Bearer {nac.token}"}
    assert loopback.connections == 1
    # What went over the wire, on a real socket:
    assert [r.path for r in loopback.requests[:2]] == [LOGIN_PATH, SEND_PATH]
    assert nac.logins[0].json() == {"username": API_USER, "password": PASSWORD}
    assert nac.sends[0].headers["content-type"] == "application/json"
    assert nac.sends[0].json() == {
        "args": {"pid": "guest42", "password": CODE, "source_id": SOURCE}
    }


def test_the_token_is_renewed_after_14_idle_minutes_and_each_use_resets_that(loopback, nac):
    provider = make(loopback.url)
    provider._clock = clock = Clock()
    provider.send(SMS)
    for _ in range(5):  # used every 13.9 minutes: stays alive well past 14 minutes
        clock.now += TOKEN_IDLE_RENEWAL - 6
        provider.send(SMS)
    assert len(nac.logins) == 1
    clock.now += TOKEN_IDLE_RENEWAL
    provider.send(SMS)
    assert len(nac.logins) == 2
    assert nac.sends[-1].headers["authorization"] == f"Bearer {nac.tokens[-1]}"
    # The replaced token is dead: it leaves the process-wide redaction registry,
    # which would otherwise grow by one entry per login for ever.
    from django_sms2fa.providers.http import secret_registry

    assert nac.tokens[0] not in secret_registry._secrets
    assert nac.tokens[-1] in secret_registry._secrets


def test_a_failed_call_does_not_reset_the_idle_timer(loopback, nac):
    provider = make(loopback.url)
    provider._clock = clock = Clock()
    provider.send(SMS)
    clock.now += TOKEN_IDLE_RENEWAL - 60
    nac.send_answers.append(Answer(500, {"message": "boom"}))
    with pytest.raises(ProviderUnavailable):
        provider.send(SMS)
    clock.now += 60
    provider.send(SMS)
    assert len(nac.logins) == 2


def test_the_token_is_renewed_at_11_and_a_half_hours_however_busy(loopback, nac):
    provider = make(loopback.url)
    provider._clock = clock = Clock()
    start = clock.now
    logins_by_age = []
    while clock.now - start <= TOKEN_MAX_AGE_RENEWAL:
        provider.send(SMS)
        logins_by_age.append((clock.now - start, len(nac.logins)))
        clock.now += 600  # a send every 10 minutes: never idle
    assert [age for age, logins in logins_by_age if logins == 2] == [TOKEN_MAX_AGE_RENEWAL]
    assert logins_by_age[-2] == (TOKEN_MAX_AGE_RENEWAL - 600, 1)


def test_a_401_logs_in_again_and_repeats_the_call_once(loopback, nac):
    provider = make(loopback.url)
    provider.send(SMS)
    nac.expire()  # e.g. the NAC restarted
    result = provider.send(SMS)
    assert result.message_id == "nac-3"
    assert [r.path for r in loopback.requests] == [
        LOGIN_PATH,
        SEND_PATH,
        SEND_PATH,
        LOGIN_PATH,
        SEND_PATH,
    ]
    assert nac.sends[1].headers["authorization"] == f"Bearer {nac.tokens[0]}"
    assert nac.sends[2].headers["authorization"] == f"Bearer {nac.tokens[-1]}"
    assert nac.sends[2].json() == nac.sends[1].json()
    provider.send(SMS)  # the new token is cached
    assert len(nac.logins) == 2


@responses.activate
def test_a_second_401_is_a_permanent_auth_error_after_two_attempts_and_two_logins():
    ok_login(TOKEN)
    ok_login(TOKEN2)
    responses.add(responses.POST, SEND_URL, json=INVALID_TOKEN, status=401)
    provider = make()
    with pytest.raises(ProviderRejected) as err:
        provider.send(SMS)
    assert err.value.provider_code == "auth"
    assert err.value.http_status == 401
    assert err.value.may_have_sent is False
    assert "Invalid token" in err.value.provider_text
    urls = [call.request.url for call in responses.calls]
    assert urls == [LOGIN_URL, SEND_URL, LOGIN_URL, SEND_URL]
    assert responses.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert responses.calls[3].request.headers["Authorization"] == f"Bearer {TOKEN2}"
    # The refused token is not kept: the next send starts with a login.
    with pytest.raises(ProviderRejected):
        provider.send(SMS)
    assert responses.calls[4].request.url == LOGIN_URL


@responses.activate
def test_a_401_whose_re_login_is_refused_is_an_auth_error():
    ok_login(TOKEN)
    responses.add(responses.POST, LOGIN_URL, json=BAD_LOGIN, status=401)
    responses.add(responses.POST, SEND_URL, json=INVALID_TOKEN, status=401)
    with pytest.raises(ProviderRejected) as err:
        make().send(SMS)
    assert err.value.provider_code == "auth"
    assert "Wasn't able" in err.value.provider_text
    assert [c.request.url for c in responses.calls] == [LOGIN_URL, SEND_URL, LOGIN_URL]


def test_threads_sharing_a_provider_log_in_once(loopback, nac):
    nac.login_answers.append(Answer(200, {"token": "slow-token-SECRET"}, delay=0.3))
    nac.tokens.append("slow-token-SECRET")
    provider = make(loopback.url)
    barrier = threading.Barrier(8)
    errors = []

    def send():
        barrier.wait()
        try:
            provider.send(SMS)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(nac.logins) == 1
    assert len(nac.sends) == 8


# ----------------------------------------------------------------- the pid


def test_pid_resolver_names_the_guest_account(loopback, nac):
    provider = make(loopback.url, pid_resolver="tests.test_axelnac_provider.resolve_guest_pid")
    provider.send(SMS)
    assert nac.sends[0].json()["args"]["pid"] == "guest-guest42-4567"


def test_pid_resolver_may_be_a_callable(loopback, nac):
    make(loopback.url, pid_resolver=lambda sms: "room-101").send(SMS)
    assert nac.sends[0].json()["args"]["pid"] == "room-101"


@pytest.mark.parametrize(
    "sms, resolver",
    [
        (OutgoingSms(to="+46701234567", code=CODE, purpose="login"), None),
        (OutgoingSms(to="+46701234567", code=CODE, purpose="login", username="  "), None),
        (SMS, "tests.test_axelnac_provider.resolve_nothing"),
    ],
)
def test_no_pid_is_refused_without_any_http_call(loopback, nac, sms, resolver):
    with pytest.raises(ProviderRejected) as err:
        make(loopback.url, pid_resolver=resolver).send(sms)
    assert err.value.provider_code == "no_pid"
    assert err.value.may_have_sent is False
    assert loopback.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "tests.test_axelnac_provider.no_such_function",
        "no_such_module.resolve",
        "nodots",
        "tests.test_axelnac_provider.SOURCE",  # not callable
        "tests.test_axelnac_provider.resolve_an_int",  # returns an int
    ],
)
def test_a_broken_pid_resolver_is_a_configuration_error(loopback, path):
    provider = make(loopback.url, pid_resolver=path)  # imported lazily, at the first send
    with pytest.raises(Sms2faConfigurationError) as err:
        provider.send(SMS)
    assert err.value.check_id == "sms2fa.E002"
    assert "pid_resolver" in str(err.value)
    assert loopback.requests == []


@pytest.mark.parametrize("purpose", ["verify_phone", "change_phone"])
def test_purposes_that_verify_a_typed_number_are_refused(loopback, purpose):
    sms = OutgoingSms(to="+46701234567", code=CODE, purpose=purpose, username="guest42")
    with pytest.raises(ProviderRejected) as err:
        make(loopback.url).send(sms)
    assert err.value.provider_code == "unsupported_purpose"
    assert loopback.requests == []


def test_passwordless_purpose_is_served(loopback, nac):
    sms = OutgoingSms(to="+46701234567", code=CODE, purpose="passwordless", username="guest42")
    assert make(loopback.url).send(sms).message_id == "nac-1"


# ----------------------------------------------------------------- secrets


def test_no_secret_or_code_reaches_logs_errors_or_repr(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    loopback.respond(200, {"token": TOKEN})
    loopback.respond(200, {"id": "ok", "password": CODE, "message": f"sent {CODE}"})
    # Expired token; the re-login answers TOKEN2; the NAC echoes everything back.
    loopback.respond(401, INVALID_TOKEN)
    loopback.respond(200, {"token": TOKEN2})
    loopback.respond(422, {"message": f"bad password {CODE} for token {TOKEN2}", "status": 422})
    loopback.respond(500, f"<html>{PASSWORD} {TOKEN2} {CODE}</html>")
    loopback.respond(403, {"message": f"{TOKEN2} lacks SMS_GATEWAYS_READ; pw {PASSWORD}"})
    loopback.respond(200, {"id": "late"}, delay=1)

    provider = make(loopback.url, read_timeout=0.3)
    result = provider.send(SMS)
    texts = [json.dumps(result.raw), repr(result)]
    for expected in (ProviderRejected, ProviderUnavailable, ProviderRejected, ProviderUnavailable):
        with pytest.raises(expected) as err:
            provider.send(SMS)
        texts += [str(err.value), repr(err.value), err.value.provider_text]
    # A login refused with an answer that quotes the password.
    loopback.respond(401, {"message": f"bad credentials {API_USER}:{PASSWORD}"})
    with pytest.raises(ProviderRejected) as err:
        make(loopback.url).send(SMS)
    texts += [str(err.value), repr(err.value), err.value.provider_text]

    records = [record.getMessage() for record in caplog.records]
    assert any(SEND_PATH in line for line in records), "urllib3 should have logged requests"
    assert any("[redacted]" in text for text in texts)
    for text in texts + records + [repr(provider), str(provider)]:
        for secret in (PASSWORD, TOKEN, TOKEN2, CODE):
            assert secret not in text, (secret, text)


# ----------------------------------------------------------------- options


def test_tls_verification_uses_the_ca_bundle_and_cannot_be_switched_off():
    assert make().verify is True
    assert make(ca_bundle="/etc/ssl/axelnac-ca.pem").verify == "/etc/ssl/axelnac-ca.pem"
    with pytest.raises(Sms2faConfigurationError):
        make(verify=False)


@pytest.mark.parametrize(
    "url", ["http://nac.example:9999", "https://169.254.169.254:9999", "https://u:p@nac.example"]
)
def test_unsafe_base_urls_are_refused(url):
    with pytest.raises(Sms2faConfigurationError):
        make(url)


def test_the_repr_shows_no_option():
    assert repr(make()) == "<AxelNACProvider alias='default'>"


def test_capabilities():
    caps = AxelNACProvider.capabilities
    assert caps.accepts_code and not caps.delivers_text
    assert not caps.returns_code and not caps.verifies_code
    assert caps.takes_our_code(10)


BACKEND = "django_sms2fa.providers.axelnac.AxelNACProvider"
FULL_OPTIONS = {
    "base_url": BASE,
    "username": API_USER,
    "password": PASSWORD,
    "source_id": SOURCE,
}


@pytest.mark.parametrize(
    "missing, drop_or_blank",
    [
        ("username", "drop"),
        ("password", "drop"),
        ("source_id", "drop"),
        ("base_url", "drop"),
        ("username", "blank"),
        ("password", "blank"),
        ("source_id", "blank"),
        ("base_url", "blank"),
    ],
)
def test_a_missing_option_is_a_configuration_error_naming_it(
    sms2fa_settings, missing, drop_or_blank
):
    options = dict(FULL_OPTIONS)
    if drop_or_blank == "drop":
        del options[missing]
    else:
        options[missing] = ""
    sms2fa_settings(PROVIDERS={"default": {"BACKEND": BACKEND, "OPTIONS": options}})
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert err.value.check_id == "sms2fa.E002"
    assert missing in str(err.value)
    assert PASSWORD not in str(err.value)


def test_the_full_options_build(sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": BACKEND,
                "OPTIONS": {**FULL_OPTIONS, "ca_bundle": "/etc/ssl/nac.pem", "read_timeout": 9},
            }
        }
    )
    provider = build_provider("default")
    assert isinstance(provider, AxelNACProvider)
    assert provider.base_url == BASE
    assert provider.verify == "/etc/ssl/nac.pem"
    assert provider.timeout[1] == 9.0


# ----------------------------------------------------------------- flows


def configure(sms2fa_settings, url: str, **extra) -> None:
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": BACKEND, "OPTIONS": {**FULL_OPTIONS, "base_url": url, **extra}}
        }
    )


@pytest.mark.django_db
def test_flow_sends_the_code_as_the_guest_password_and_verifies_it(
    sms2fa_settings, loopback, nac, django_user_model
):
    configure(sms2fa_settings, loopback.url)
    user = django_user_model.objects.create_user(username="guest42", password="irrelevant")
    challenge = flows.request_challenge(phone="+46701234567", purpose="login", user=user)

    assert len(nac.logins) == 1 and len(nac.sends) == 1
    args = nac.sends[0].json()["args"]
    assert args["pid"] == "guest42" and args["source_id"] == SOURCE
    code = args["password"]  # what the guest reads in the NAC's SMS
    assert code.isdigit() and len(code) == 6

    message = Message.objects.get(challenge=challenge)
    assert message.provider == "default"
    assert message.provider_message_id == "nac-1"
    assert message.status == SENT
    assert message.text_masked == ""  # the NAC writes the text, not us

    verified = flows.verify_challenge(challenge.pk, code)
    assert verified.status == ChallengeStatus.VERIFIED
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.VERIFIED


@pytest.mark.django_db
def test_flow_with_a_wrong_code_is_refused(sms2fa_settings, loopback, nac, django_user_model):
    configure(sms2fa_settings, loopback.url)
    user = django_user_model.objects.create_user(username="guest42", password="irrelevant")
    challenge = flows.request_challenge(phone="+46701234567", purpose="login", user=user)
    code = nac.sends[0].json()["args"]["password"]
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, wrong)


@pytest.mark.django_db
def test_flow_outage_leaves_the_challenge_undeliverable(
    sms2fa_settings, loopback, nac, django_user_model
):
    configure(sms2fa_settings, loopback.url)
    nac.send_answers.append(Answer(503, "Service Unavailable"))
    user = django_user_model.objects.create_user(username="guest42", password="irrelevant")
    with pytest.raises(DeliveryFailed) as err:
        flows.request_challenge(phone="+46701234567", purpose="login", user=user)
    challenge = Challenge.objects.get(pk=err.value.context["challenge_id"])
    assert challenge.status == ChallengeStatus.UNDELIVERABLE
    message = Message.objects.get(challenge=challenge)
    assert (message.status, message.error_code) == ("failed", "503")
    assert len(nac.sends) == 1


@pytest.mark.django_db
def test_flow_without_a_user_has_no_pid_and_makes_no_call(sms2fa_settings, loopback):
    configure(sms2fa_settings, loopback.url)
    with pytest.raises(DeliveryFailed) as err:
        flows.request_challenge(phone="+46701234567", purpose="login")
    challenge = Challenge.objects.get(pk=err.value.context["challenge_id"])
    assert challenge.status == ChallengeStatus.UNDELIVERABLE
    assert Message.objects.get(challenge=challenge).error_code == "no_pid"
    assert loopback.requests == []


@pytest.mark.django_db
def test_flow_with_bad_credentials_records_an_auth_failure(
    sms2fa_settings, loopback, nac, django_user_model
):
    configure(sms2fa_settings, loopback.url)
    nac.login_answers.append(Answer(401, BAD_LOGIN))
    user = django_user_model.objects.create_user(username="guest42", password="irrelevant")
    with pytest.raises(DeliveryFailed) as err:
        flows.request_challenge(phone="+46701234567", purpose="login", user=user)
    message = Message.objects.get(challenge_id=err.value.context["challenge_id"])
    assert message.error_code == "auth"
    assert PASSWORD not in message.error_text
    assert nac.sends == []
