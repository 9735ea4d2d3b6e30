"""Many sends through one provider reuse one TCP connection (bench/README.md).

A real HTTP server on loopback counts the TCP connections it accepts; GoSMS is
pointed at it with its ``base_url`` option. Providers are built once per alias
(``providers.get_provider``) and each holds one pooled ``requests.Session``, so
a run of sends costs one TCP (and, in production, one TLS) handshake, not one
per SMS.
"""

from __future__ import annotations

import threading

import pytest

from django_sms2fa import flows
from django_sms2fa.models import Message, Purpose
from django_sms2fa.providers import get_provider
from django_sms2fa.providers.gosms import GoSMSProvider
from django_sms2fa.types import OutgoingSms

pytestmark = pytest.mark.django_db

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJnb3NtcyJ9.c2lnbmF0dXJlLWNvbm5lY3Rpb24tdGVzdA"
SENDS = 25
ANSWER = {"id": "6654a4e8f1527149588c89f2"}


@pytest.fixture
def gosms_on_loopback(loopback, sms2fa_settings):
    loopback.always(200, ANSWER)
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
                "OPTIONS": {"token": TOKEN, "base_url": loopback.url},
            }
        }
    )
    return loopback


def test_many_sends_through_the_flows_use_one_connection(gosms_on_loopback):
    for i in range(SENDS):
        flows.request_challenge(phone=f"+467012345{i:02d}", purpose=Purpose.VERIFY_PHONE)
    assert len(gosms_on_loopback.requests) == SENDS
    assert Message.objects.filter(provider_message_id=ANSWER["id"]).count() == SENDS
    assert gosms_on_loopback.connections == 1


def test_resends_reuse_the_same_connection(gosms_on_loopback):
    challenge = flows.request_challenge(phone="+46701234567", purpose=Purpose.VERIFY_PHONE)
    for _ in range(SENDS - 1):
        flows.resend_challenge(challenge.pk)
    assert len(gosms_on_loopback.requests) == SENDS
    assert gosms_on_loopback.connections == 1


def test_the_provider_is_built_once_per_alias(gosms_on_loopback):
    first = get_provider("default")
    flows.request_challenge(phone="+46701234567", purpose=Purpose.VERIFY_PHONE)
    assert get_provider("default") is first
    assert isinstance(first, GoSMSProvider)


def test_a_settings_change_builds_a_new_provider_and_connection(gosms_on_loopback, sms2fa_settings):
    flows.request_challenge(phone="+46701234567", purpose=Purpose.VERIFY_PHONE)
    before = get_provider("default")
    sms2fa_settings(DEFAULT_REGION="SE")  # any SMS2FA change drops the cached providers
    flows.request_challenge(phone="+46701234568", purpose=Purpose.VERIFY_PHONE)
    assert get_provider("default") is not before
    assert gosms_on_loopback.connections == 2


def test_threads_share_the_pool_instead_of_one_connection_each_send(loopback):
    """Concurrent sends open at most one connection per thread, then reuse them."""
    loopback.always(200, ANSWER)
    provider = GoSMSProvider(token=TOKEN, base_url=loopback.url)
    threads, per_thread = 4, 10
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def send_many() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                provider.send(OutgoingSms(to="+46701234567", text="Your code is 123456"))
        except BaseException as err:  # reported below, on the test's thread
            errors.append(err)

    workers = [threading.Thread(target=send_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not errors
    assert len(loopback.requests) == threads * per_thread
    assert 1 <= loopback.connections <= threads
