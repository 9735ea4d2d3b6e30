"""The shared HTTP base: pooling, timeouts, the no-blind-resend rule, answers we
cannot read, secret redaction and base-URL safety — against a real loopback server."""

from __future__ import annotations

import logging

import pytest
import responses

from django_sms2fa.exceptions import (
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from django_sms2fa.providers.http import HttpProvider, check_base_url
from django_sms2fa.types import OutgoingSms, SendResult

from .http_support import free_port

TOKEN = "tkn-0123456789abcdef-SECRET"
SMS = OutgoingSms(to="+46701234567", text="Your code is 123456", code="123456")


class PathTokenProvider(HttpProvider):
    """A provider with its token in the URL path, as telefon-ip has."""

    default_base_url = "https://sms.example.invalid"

    def __init__(self, *, token: str, **options):
        super().__init__(**options)
        self.token = token
        self.add_secrets(token)

    def _send(self, sms):
        answer = self.call("POST", f"/{self.token}/send", json_body={"to": sms.to})
        if answer.status >= 300:
            raise self.http_error(answer)
        data = answer.json()
        if not isinstance(data, dict) or "id" not in data:
            raise self.malformed(answer, "no message id")
        return SendResult(message_id=str(data["id"]))


def provider(url: str, **options) -> PathTokenProvider:
    return PathTokenProvider(token=TOKEN, base_url=url, **options)


def test_many_sends_reuse_one_connection(loopback):
    loopback.always(200, {"id": "m"})
    client = provider(loopback.url)
    for _ in range(25):
        assert client.send(SMS).message_id == "m"
    assert len(loopback.requests) == 25
    assert loopback.connections == 1


def test_the_request_is_what_the_subclass_asked_for(loopback):
    loopback.respond(200, {"id": 7})
    provider(loopback.url).send(SMS)
    request = loopback.requests[0]
    assert (request.method, request.path) == ("POST", f"/{TOKEN}/send")
    assert request.json() == {"to": "+46701234567"}
    assert request.headers["user-agent"] == "django-sms2fa"


def test_a_read_timeout_is_reported_as_maybe_sent_and_not_repeated(loopback):
    loopback.respond(200, {"id": "late"}, delay=1.5)
    with pytest.raises(ProviderUnavailable) as err:
        provider(loopback.url, read_timeout=0.3).send(SMS)
    assert err.value.may_have_sent is True
    assert err.value.provider_code == "timeout"
    assert len(loopback.requests) == 1  # never sent twice


def test_connection_refused_is_retried_and_reported_as_not_sent():
    client = provider(f"http://127.0.0.1:{free_port()}", connect_retries=2)
    with pytest.raises(ProviderUnavailable) as err:
        client.send(SMS)
    assert err.value.may_have_sent is False
    assert TOKEN not in str(err.value) + err.value.provider_text


def test_a_refused_then_open_port_is_reached_by_the_retry(loopback, monkeypatch):
    """Connect retries are real: the first connection attempt fails, the retry succeeds."""
    import urllib3.connection

    real_new_conn = urllib3.connection.HTTPConnection._new_conn
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 1:
            raise urllib3.exceptions.NewConnectionError(self, "refused (simulated)")
        return real_new_conn(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", flaky)
    loopback.respond(200, {"id": "after-retry"})
    assert provider(loopback.url).send(SMS).message_id == "after-retry"
    assert calls["n"] == 2
    assert len(loopback.requests) == 1


def test_a_connection_dropped_after_sending_is_not_retried(loopback):
    """The server reads the request and hangs up: the SMS may have gone."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    port = sock.getsockname()[1]
    seen = []

    def serve():
        for _ in range(2):
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            seen.append(conn.recv(65536))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with pytest.raises(ProviderUnavailable) as err:
        provider(f"http://127.0.0.1:{port}").send(SMS)
    sock.close()
    assert err.value.may_have_sent is True
    assert len(seen) == 1


@pytest.mark.parametrize(
    "status, error, maybe_sent",
    [
        (400, ProviderRejected, False),
        (401, ProviderRejected, False),
        (404, ProviderRejected, False),
        (429, ProviderUnavailable, False),
        (500, ProviderUnavailable, True),
        (502, ProviderUnavailable, False),
        (503, ProviderUnavailable, False),
        (504, ProviderUnavailable, True),
    ],
)
def test_http_statuses_split_into_permanent_and_transient(loopback, status, error, maybe_sent):
    loopback.respond(status, {"error": "nope"}, headers={"Retry-After": "17"})
    with pytest.raises(error) as err:
        provider(loopback.url).send(SMS)
    assert type(err.value) is error
    assert err.value.http_status == status
    assert err.value.may_have_sent is maybe_sent
    assert "nope" in err.value.provider_text
    if status == 429:
        assert err.value.retry_after == 17


@pytest.mark.parametrize(
    "body",
    [
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        "",
        "not json at all",
        '["a list"]',
        '{"no_id": true}',
    ],
)
def test_answers_we_cannot_read_are_failures_not_crashes(loopback, body):
    loopback.respond(200, body, headers={"Content-Type": "text/html"})
    with pytest.raises(ProviderUnavailable) as err:
        provider(loopback.url).send(SMS)
    assert err.value.provider_code == "malformed_answer"
    assert err.value.may_have_sent is True


def test_an_oversized_answer_is_cut_off(loopback):
    loopback.respond(200, "x" * 100_000)
    with pytest.raises(ProviderUnavailable) as err:
        provider(loopback.url, max_response_bytes=10_000).send(SMS)
    assert err.value.provider_code == "oversized_response"


def test_redirects_are_not_followed(loopback):
    loopback.respond(302, b"", headers={"Location": "http://169.254.169.254/latest"})
    with pytest.raises(ProviderRejected):
        provider(loopback.url).send(SMS)
    assert len(loopback.requests) == 1


def test_the_token_never_reaches_logs_or_errors(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    loopback.respond(200, {"id": "ok"})
    loopback.respond(400, f"bad request for /{TOKEN}/send")
    loopback.respond(200, "<html>oops</html>")
    client = provider(loopback.url, read_timeout=0.3)
    client.send(SMS)
    texts = []
    for _ in range(2):
        with pytest.raises(Exception) as err:
            client.send(SMS)
        texts += [str(err.value), repr(err.value), getattr(err.value, "provider_text", "")]
    loopback.respond(200, {"id": "late"}, delay=1)
    with pytest.raises(ProviderUnavailable) as err:
        client.send(SMS)
    texts += [str(err.value), err.value.provider_text]
    records = [record.getMessage() for record in caplog.records]
    assert any("/send" in line for line in records), "urllib3 should have logged the request"
    for text in texts + records + [repr(client)]:
        assert TOKEN not in text


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.169.254",
        "http://sms.example.com",  # plain http off loopback
        "ftp://sms.example.com",
        "https://user:pass@sms.example.com",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "sms.example.com/api",
    ],
)
def test_unsafe_base_urls_are_refused(url):
    with pytest.raises(Sms2faConfigurationError) as err:
        check_base_url(url, alias="x")
    assert err.value.check_id == "sms2fa.E002"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.gosms.ru/v1",
        "http://127.0.0.1:8080",
        "http://localhost",
        "https://10.0.0.5:9999",
    ],
)
def test_reasonable_base_urls_are_accepted(url):
    assert check_base_url(url + "/", alias="x") == url


def test_tls_verification_cannot_be_switched_off():
    assert provider("https://sms.example.com").verify is True
    assert provider("https://nac.local", ca_bundle="/etc/nac-ca.pem").verify == "/etc/nac-ca.pem"
    with pytest.raises(Sms2faConfigurationError):
        provider("https://sms.example.com", verify=False)


@responses.activate
def test_timeouts_are_passed_to_requests():
    seen = {}

    def callback(request):
        seen["timeout"] = request.req_kwargs["timeout"]
        return (200, {}, '{"id": "x"}')

    responses.add_callback(responses.POST, f"https://sms.example.com/{TOKEN}/send", callback)
    provider("https://sms.example.com", connect_timeout=2, read_timeout=9).send(SMS)
    assert seen["timeout"] == (2.0, 9.0)


@pytest.mark.parametrize("bad_token", ["line\r\nInjected: 1", "токен-не-latin1"])
def test_a_request_that_cannot_be_built_is_refused_without_sending(loopback, bad_token):
    class HeaderTokenProvider(HttpProvider):
        def _send(self, sms):
            self.call("POST", "/send", headers={"Authorization": f"Bearer {bad_token}"})
            return SendResult(message_id="never")

    with pytest.raises(ProviderRejected) as err:
        HeaderTokenProvider(base_url=loopback.url).send(SMS)
    assert err.value.provider_code == "bad_request_setup"
    assert err.value.may_have_sent is False and err.value.failover is True
    assert loopback.requests == []


def test_credential_refusals_allow_failover(loopback):
    loopback.respond(401, {"error": "bad token"})
    loopback.respond(400, {"error": "bad number"})
    client = provider(loopback.url)
    with pytest.raises(ProviderRejected) as auth:
        client.send(SMS)
    with pytest.raises(ProviderRejected) as number:
        client.send(SMS)
    assert (auth.value.failover, number.value.failover) == (True, False)


def test_request_lines_in_debug_logs_lose_digits_and_query(loopback, caplog):
    """urllib3 prints request targets; phones and codes travel in some of them."""

    class QueryProvider(HttpProvider):
        def _send(self, sms):
            answer = self.call("GET", f"/send/{sms.to.lstrip('+')}/", params={"code": sms.code})
            return SendResult(message_id=str(answer.json()["id"]))

    caplog.set_level(logging.DEBUG)
    loopback.respond(200, {"id": "1"})
    QueryProvider(base_url=loopback.url).send(SMS)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/send/" in line for line in lines)
    for line in lines:
        assert "46701234567" not in line and "123456" not in line


def test_transport_error_texts_lose_the_url_details():
    class QueryProvider(HttpProvider):
        def _send(self, sms):
            self.call("GET", "/send/46701234567/", params={"code": "123456"})

    with pytest.raises(ProviderUnavailable) as err:
        QueryProvider(base_url=f"http://127.0.0.1:{free_port()}", connect_retries=0).send(SMS)
    assert "46701234567" not in err.value.provider_text
    assert "123456" not in err.value.provider_text


def test_a_secret_at_the_summary_cut_is_still_redacted(loopback):
    loopback.respond(400, "x" * 290 + TOKEN)
    with pytest.raises(ProviderRejected) as err:
        provider(loopback.url).send(SMS)
    assert TOKEN[:8] not in err.value.provider_text
