"""The limits cache down: a clear 503, one log line, and nobody let in (docs/security.md).

Every limit and the failure lockout live in the cache (Redis in production).
When it cannot be reached, requesting, verifying and logging in all answer
503 ``service_unavailable`` in the error shape (the pages: a 503 page that
says so), log one line that names the cache and the error class (no
traceback, no code, no password), and nobody is logged in or verified: a
guess that cannot be counted is not judged.

The cache is a real Redis client pointed at a closed port, so the errors are
the ones redis-py raises.
"""

from __future__ import annotations

import logging
import socket

import pytest

from django.core.cache import caches

from django_sms2fa import flows, login_flows
from django_sms2fa.exceptions import LimitsUnavailable
from django_sms2fa.models import Challenge, ChallengeStatus, PhoneDevice, Purpose

from .test_send_limits import api_client, api_post

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
PASSWORD = "correct horse"
LOGIN = "/2fa/login/"
LOGIN_CODE = "/2fa/login/code/"
PASSWORDLESS_URL = "/2fa/phone-login/"
PASSWORDLESS_CODE = "/2fa/phone-login/code/"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="Phone")


@pytest.fixture
def redis_down(settings):
    """From here on the limits cache is a Redis nobody listens to."""

    def stop() -> None:
        settings.CACHES = {
            **settings.CACHES,
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
                "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
            },
        }

    return stop


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_503(response) -> None:
    assert response.status_code == 503, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "error": {
            "code": "service_unavailable",
            "message": "The service is unavailable right now. Try again in a moment.",
        }
    }


def assert_one_clear_line(log, *secrets: str) -> None:
    lines = [r for r in log.records if r.name.startswith("django_sms2fa")]
    unavailable = [r for r in lines if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1, [r.getMessage() for r in lines]
    [line] = unavailable
    assert line.levelno == logging.ERROR
    assert "ConnectionError" in line.getMessage()
    assert not any(r.exc_info for r in log.records), "no traceback"
    text = "\n".join(r.getMessage() for r in log.records)
    for secret in secrets:
        assert secret not in text


# ---------------------------------------------------------------- the flows


def test_the_flows_raise_the_domain_error(user, device, outbox, redis_down):
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user)
    redis_down()
    with pytest.raises(LimitsUnavailable) as raised:
        flows.verify_challenge(challenge.pk, outbox[-1].code)
    assert raised.value.code == "service_unavailable"
    with pytest.raises(LimitsUnavailable):
        flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    with pytest.raises(LimitsUnavailable):
        login_flows.start_passwordless(PHONE)
    challenge.refresh_from_db()
    assert (challenge.status, challenge.attempts) == (ChallengeStatus.PENDING, 0)


# ------------------------------------------------------------------ the API


@pytest.mark.parametrize("purpose", ["verify_phone", "passwordless"])
def test_api_request(purpose, user, device, outbox, redis_down, log):
    redis_down()
    client = api_client()
    assert_503(api_post(client, "challenges/", {"phone": PHONE, "purpose": purpose}))
    assert outbox == [] and not Challenge.objects.exists()
    assert_one_clear_line(log)


def test_api_verify(user, device, outbox, redis_down, log):
    client = api_client()
    answer = api_post(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    assert answer.status_code == 202
    code = outbox[-1].code
    redis_down()
    log.clear()
    assert_503(api_post(client, f"challenges/{answer.json()['id']}/verify/", {"code": code}))
    assert "_auth_user_id" not in client.session
    stored = Challenge.objects.get(pk=answer.json()["id"])
    assert (stored.status, stored.attempts) == (ChallengeStatus.PENDING, 0)
    assert_one_clear_line(log, code)


def test_api_password_then_code(user, device, outbox, redis_down, log):
    client = api_client()
    redis_down()
    assert_503(api_post(client, "login/", {"username": "alice", "password": PASSWORD}))
    assert "_auth_user_id" not in client.session
    assert_one_clear_line(log, PASSWORD)


def test_api_login_code(user, device, outbox, settings, redis_down, log):
    client = api_client()
    login = api_post(client, "login/", {"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    code = outbox[-1].code
    redis_down()
    log.clear()
    body = {"challenge": login.json()["challenge"]["id"], "code": code}
    assert_503(api_post(client, "login/verify/", body))
    assert "_auth_user_id" not in client.session
    assert_one_clear_line(log, code, PASSWORD)


# ---------------------------------------------------------------- the pages


def assert_503_page(response) -> None:
    assert response.status_code == 503, response.content[:500]
    assert "The service is unavailable right now. Try again in a moment." in (
        response.content.decode()
    )


def test_page_password_then_code(client, user, device, outbox, redis_down, log):
    redis_down()
    assert_503_page(client.post(LOGIN, {"username": "alice", "password": PASSWORD}))
    assert client.session.get("_auth_user_id") is None
    assert_one_clear_line(log, PASSWORD)


def test_page_login_code(client, user, device, outbox, redis_down, log):
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 302
    code = outbox[-1].code
    redis_down()
    log.clear()
    assert_503_page(client.post(LOGIN_CODE, {"code": code}))
    assert client.session.get("_auth_user_id") is None
    assert_one_clear_line(log, code, PASSWORD)


def test_page_passwordless(client, user, device, outbox, redis_down, log):
    redis_down()
    assert_503_page(client.post(PASSWORDLESS_URL, {"phone": PHONE}))
    assert outbox == []
    assert_one_clear_line(log)


def test_page_passwordless_code(client, user, device, outbox, redis_down, log):
    assert client.post(PASSWORDLESS_URL, {"phone": PHONE}).status_code == 302
    code = outbox[-1].code
    redis_down()
    log.clear()
    assert_503_page(client.post(PASSWORDLESS_CODE, {"code": code}))
    assert client.session.get("_auth_user_id") is None
    assert_one_clear_line(log, code)


def test_the_cache_comes_back(user, device, outbox, redis_down, settings):
    """Nothing sticks: with the cache back, the same request goes through."""
    original = settings.CACHES
    redis_down()
    with pytest.raises(LimitsUnavailable):
        flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    settings.CACHES = original
    caches["default"].clear()
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    assert flows.verify_challenge(challenge.pk, outbox[-1].code).status == "verified"
