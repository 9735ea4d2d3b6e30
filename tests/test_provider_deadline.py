"""Attack: a provider answer that never ends.

requests' read timeout bounds each socket read, not the answer. A server that
drips its answer one byte at a time, each byte inside the read timeout, kept
a send busy for as long as it liked (with the defaults, 15 s per byte and a
256 KiB cap: days) — and the send then succeeded. Every provider call now has
a total deadline (``total_timeout``, by default connect + read timeout); a
breach after the request went out is reported like a read timeout: the SMS
may have gone, so it is never sent again, and the flows fail over only with
the same code.

The servers here are real sockets on loopback; the timeouts are small so the
tests are quick. Figures are printed (``pytest -s``) rather than asserted
tightly: what is asserted is how many bytes the server got out before the
client hung up, which does not depend on the machine's speed.
"""

from __future__ import annotations

import time

import pytest

from django_sms2fa import flows
from django_sms2fa.exceptions import ProviderUnavailable, Sms2faConfigurationError
from django_sms2fa.models import Challenge, ChallengeStatus, Message
from django_sms2fa.providers import build_provider, locmem
from django_sms2fa.providers.gosms import GoSMSProvider
from django_sms2fa.types import OutgoingSms

from .http_support import DripServer

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJnb3NtcyJ9.c2lnbmF0dXJlLVNFQ1JFVC0wMTIzNDU2Nzg5"
CONNECT, READ = 0.2, 0.3  # so the default deadline is 0.5 s
INTERVAL = 0.05  # one byte every 50 ms: never a read timeout
BODY = b'{"id": "6654a4e8f1527149588c89f2", "status": 0, "note": "' + b"." * 50 + b'"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)
SMS = OutgoingSms(to="+79991234567", text="Your code is 480917", code="480917", purpose="login")


@pytest.fixture(params=["whole_answer_dripped", "body_dripped"])
def drip(request):
    server = DripServer(
        ANSWER, interval=INTERVAL, head_at_once=request.param == "body_dripped"
    ).start()
    yield server
    server.stop()


def gosms(url: str, **options) -> GoSMSProvider:
    options.setdefault("connect_timeout", CONNECT)
    options.setdefault("read_timeout", READ)
    return GoSMSProvider(token=TOKEN, base_url=url, connect_retries=0, **options)


def test_a_dripped_answer_ends_at_the_deadline(drip):
    provider = gosms(drip.url)
    deadline = CONNECT + READ  # the default: connect + read timeout
    started = time.monotonic()
    try:
        provider.send(SMS)
        outcome, error = "the send succeeded", None
    except ProviderUnavailable as err:
        outcome, error = f"ProviderUnavailable({err.provider_code})", err
    elapsed = time.monotonic() - started
    print(
        f"\ndripped answer: deadline {deadline:.2f} s; {outcome} after {elapsed:.2f} s "
        f"({elapsed / deadline:.1f}x the deadline); the whole answer takes "
        f"{drip.full_time:.2f} s to drip; {drip.sent} of {len(ANSWER)} bytes left the server"
    )
    assert error is not None, f"{outcome} after {elapsed:.2f} s, deadline {deadline} s"
    assert provider.total_timeout == deadline
    assert error.provider_code == "deadline_exceeded"
    assert error.may_have_sent is True
    assert "480917" not in error.provider_text
    # The client hung up long before the answer was through; and it did not
    # sit out the drip (a generous bound: ten deadlines, on a busy machine).
    assert drip.sent < len(ANSWER) - len(BODY) // 2
    assert elapsed < min(drip.full_time, 10 * deadline)
    assert drip.requests == 1
    assert drip.client_hung_up.wait(5) and not drip.finished.is_set()


def test_an_answer_inside_the_deadline_still_succeeds():
    server = DripServer(ANSWER, interval=0.0).start()
    try:
        result = gosms(server.url).send(SMS)
    finally:
        server.stop()
    assert result.message_id == "6654a4e8f1527149588c89f2"


def test_the_deadline_is_an_option(drip):
    provider = gosms(drip.url, read_timeout=30, connect_timeout=5, total_timeout=0.4)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as err:
        provider.send(SMS)
    elapsed = time.monotonic() - started
    print(f"\ntotal_timeout=0.4 with a 30 s read timeout: ended after {elapsed:.2f} s")
    assert err.value.provider_code == "deadline_exceeded"
    assert drip.sent < len(ANSWER) - len(BODY) // 2


@pytest.mark.parametrize("value", [0, -1, "5", True, 3601, float("nan")])
def test_a_bad_total_timeout_is_a_configuration_error(sms2fa_settings, value):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
                "OPTIONS": {"token": TOKEN, "total_timeout": value},
            }
        }
    )
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert err.value.check_id == "sms2fa.E002"
    assert "total_timeout" in str(err.value)


def test_the_default_deadline_is_connect_plus_read():
    assert GoSMSProvider(token=TOKEN).total_timeout == 5.0 + 15.0
    assert GoSMSProvider(token=TOKEN, read_timeout=7, connect_timeout=2).total_timeout == 9.0


@pytest.mark.django_db
def test_a_deadline_breach_is_never_resent_and_fails_over_with_the_same_code(
    drip, sms2fa_settings, outbox
):
    """Through the flows: the SMS may be on its way, so GoSMS is not asked
    again; the fallback gets the same code (the failover rule), so whichever
    SMS arrives, one code works."""
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
                "OPTIONS": {
                    "token": TOKEN,
                    "base_url": drip.url,
                    "connect_timeout": CONNECT,
                    "read_timeout": READ,
                    "connect_retries": 0,
                },
            },
            "backup": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
        },
        FALLBACKS=["backup"],
    )
    started = time.monotonic()
    challenge = flows.request_challenge(phone="+79991234567", purpose="login")
    elapsed = time.monotonic() - started
    print(f"\nrequest_challenge through a dripping GoSMS: {elapsed:.2f} s")
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.PENDING
    first, second = Message.objects.filter(challenge=challenge).order_by("id")
    assert (first.provider, first.status, first.error_code) == (
        "default",
        "unknown",
        "deadline_exceeded",
    )
    assert (second.provider, second.status) == ("backup", "sent")
    assert drip.requests == 1
    # The code GoSMS may deliver is the one the fallback delivered.
    assert [sms.alias for sms in locmem.outbox] == ["backup"]
    flows.verify_challenge(challenge.pk, outbox[0].code)
    assert drip.sent < len(ANSWER) - len(BODY) // 2


@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate for localhost (and 127.0.0.1), made with openssl."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_an_answer_dripped_inside_tls_ends_at_the_deadline(tls_files):
    """The same drip over https: the TLS layer reads record by record, each
    read inside the read timeout; the deadline still ends the call."""
    import ssl

    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = DripServer(ANSWER, interval=INTERVAL, ssl_context=context).start()
    try:
        url = server.url.replace("http://127.0.0.1", "https://localhost")
        provider = gosms(url, ca_bundle=str(cert))
        started = time.monotonic()
        try:
            provider.send(SMS)
            outcome, error = "the send succeeded", None
        except ProviderUnavailable as err:
            outcome, error = f"ProviderUnavailable({err.provider_code})", err
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    print(
        f"\nanswer dripped inside TLS: {outcome} after {elapsed:.2f} s (deadline "
        f"{CONNECT + READ:.2f} s, the whole answer drips in {server.full_time:.2f} s); "
        f"{server.sent} of {len(ANSWER)} bytes left the server"
    )
    assert error is not None, f"{outcome} after {elapsed:.2f} s"
    assert error.provider_code == "deadline_exceeded"
    assert error.may_have_sent is True
    assert server.requests == 1
    assert server.sent < len(ANSWER) - len(BODY) // 2
    assert elapsed < min(server.full_time, 10 * (CONNECT + READ))


def test_the_deadline_holds_through_a_proxy(drip):
    """With an HTTP proxy (HTTPS_PROXY/HTTP_PROXY in a site's environment) the
    connection is to the proxy; a proxy that drips is cut off the same way."""
    provider = gosms("http://localhost:9")
    provider.session.proxies = {"http": drip.url}
    with pytest.raises(ProviderUnavailable) as err:
        provider.send(SMS)
    assert err.value.provider_code == "deadline_exceeded"
    assert drip.requests == 1
    assert drip.sent < len(ANSWER) - len(BODY) // 2
