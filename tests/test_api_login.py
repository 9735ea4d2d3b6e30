"""REST contract of login/ and login/verify/: password first, then a code."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import timedelta

import pytest
import time_machine
from django_otp import DEVICE_ID_SESSION_KEY

from django.contrib.sessions.models import Session
from django.core import signing
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_sms2fa.adapter import DefaultSms2faAdapter
from django_sms2fa.api.session import PENDING_KEY
from django_sms2fa.exceptions import ProviderUnavailable
from django_sms2fa.models import Challenge, ChallengeStatus, PhoneDevice, Purpose
from django_sms2fa.providers import locmem

from .api_support import API, api_post, assert_error

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
MASKED = "+46•••••••67"
PASSWORD = "correct horse"  # the `user` fixture's
CHALLENGE_FIELDS = {
    "id",
    "purpose",
    "phone",
    "status",
    "expires_at",
    "resend_at",
    "channel",
    "channels",
    "delivery_uncertain",
}
TOKEN_SALT = "tests.test_api_login.token"


class TokenAdapter(DefaultSms2faAdapter):
    """A site that hands out API tokens at login (signed here: no extra app, no migration)."""

    def login_response(self, request, user):
        token = signing.dumps({"user": user.pk}, salt=TOKEN_SALT)
        return {**super().login_response(request, user), "token": token}


# ------------------------------------------------------------------ helpers


def login(client, username="alice", password=PASSWORD):
    return api_post(client, "login/", {"username": username, "password": password})


def login_verify(client, challenge_id, code):
    return api_post(client, "login/verify/", {"challenge": str(challenge_id), "code": code})


def wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


def session_key(client) -> str | None:
    cookie = client.cookies.get("sessionid")
    return cookie.value if cookie else None


def logged_in_user_id(client) -> str | None:
    return client.session.get("_auth_user_id")


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)


@pytest.fixture
def pending(client, device, outbox):
    """A client that gave the right password; returns (challenge id, code)."""
    response = login(client)
    assert response.status_code == 200
    return response.json()["challenge"]["id"], outbox[-1].code


# ---------------------------------------------------------------- password


def test_wrong_password_and_unknown_username_answer_identically(user, device):
    answers = []
    for username, password in [
        ("alice", "wrong horse"),
        ("nobody", PASSWORD),
        ("nobody", "wrong horse"),
        ("ALICE", PASSWORD),  # usernames are case-sensitive in the default model
    ]:
        response = login(Client(), username, password)
        assert_error(response, 400, "invalid_credentials")
        answers.append(
            (response.status_code, response.content, dict(response.items()), set(response.cookies))
        )
    assert all(answer == answers[0] for answer in answers)


def test_an_inactive_user_is_refused_like_a_wrong_password(client, user):
    user.is_active = False
    user.save()
    inactive = login(client)
    wrong_password = login(Client(), password="wrong horse")
    assert_error(inactive, 400, "invalid_credentials")
    assert inactive.content == wrong_password.content
    assert dict(inactive.items()) == dict(wrong_password.items())
    assert logged_in_user_id(client) is None


@pytest.mark.parametrize(
    "payload, fields",
    [
        ({}, {"username", "password"}),
        ({"username": "alice"}, {"password"}),
        ({"username": "a" * 255, "password": PASSWORD}, {"username"}),
        ({"username": "alice", "password": "x" * 4097}, {"password"}),
        ({"username": "alice", "password": "a\x00b"}, {"password"}),
        ({"username": ["alice"], "password": PASSWORD}, {"username"}),
    ],
    ids=["empty", "no password", "long username", "long password", "NUL", "list"],
)
def test_malformed_login_is_400_invalid(client, user, payload, fields):
    error = assert_error(api_post(client, "login/", payload), 400, "invalid")
    assert set(error["fields"]) == fields


def test_a_user_without_a_phone_is_logged_in_by_the_password(client, user, outbox):
    response = login(client)
    assert response.status_code == 200
    assert response.json() == {
        "mfa_required": False,
        "user": {"id": user.pk, "username": "alice"},
    }
    assert logged_in_user_id(client) == str(user.pk)
    assert outbox == []
    assert client.get(API + "devices/").json() == []


def test_a_password_only_login_rotates_the_session_key(client, user):
    api_post(client, "challenges/", {"phone": "+46701234587", "purpose": "verify_phone"})
    before = session_key(client)
    assert before
    assert login(client).status_code == 200
    after = session_key(client)
    assert after and after != before
    assert not Session.objects.filter(session_key=before).exists()


def test_an_outage_at_the_second_factor_does_not_fall_back_to_the_password(
    client, user, device, outbox
):
    locmem.fail_next(ProviderUnavailable("down", provider_text="SECRET"))
    response = login(client)
    assert_error(response, 503, "delivery_failed")
    assert "SECRET" not in response.content.decode()
    assert logged_in_user_id(client) is None
    assert PENDING_KEY not in client.session
    assert_error(client.get(API + "devices/"), 403, "not_authenticated")


def test_require_second_factor_asks_for_enrolment(client, user, sms2fa_settings):
    sms2fa_settings(REQUIRE_SECOND_FACTOR=True)
    response = login(client)
    assert response.status_code == 200
    assert response.json() == {
        "mfa_required": False,
        "enrollment_required": True,
        "user": {"id": user.pk, "username": "alice"},
    }
    assert logged_in_user_id(client) == str(user.pk)
    # Logged in enough to enrol a phone.
    assert api_post(client, "devices/", {"phone": PHONE}).status_code == 202


def test_a_user_with_a_phone_gets_a_challenge_and_no_login(client, user, device, outbox):
    response = login(client)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"mfa_required", "method", "methods", "challenge"}
    assert body["method"] == "phone" and body["methods"] == ["phone"]
    assert body["mfa_required"] is True
    assert set(body["challenge"]) == CHALLENGE_FIELDS
    assert body["challenge"]["purpose"] == "login"
    assert body["challenge"]["phone"] == MASKED
    assert "701234567" not in response.content.decode()
    assert len(outbox) == 1 and outbox[0].to == PHONE and outbox[0].purpose == "login"
    challenge = Challenge.objects.get(pk=body["challenge"]["id"])
    assert (challenge.user_id, challenge.device_id) == (user.pk, device.pk)
    assert logged_in_user_id(client) is None
    user.refresh_from_db()
    assert user.last_login is None  # no user_logged_in yet
    assert_error(client.get(API + "devices/"), 403, "not_authenticated")


def test_the_pending_login_holds_only_what_it_must(client, user, device):
    body = login(client).json()
    pending = client.session[PENDING_KEY]
    assert set(pending) == {
        "user_id",
        "backend",
        "challenge_id",
        "device_id",
        "expires_at",
        "auth_hash",  # the pending login dies when the password changes
        "method",  # which second factor is being asked for ...
        "methods",  # ... and the others the user may switch to
    }
    assert pending["method"] == "phone"
    assert pending["methods"] == ["phone"]
    assert pending["user_id"] == str(user.pk)
    assert pending["device_id"] == device.pk
    assert pending["auth_hash"] == user.get_session_auth_hash()
    assert pending["backend"] == "django.contrib.auth.backends.ModelBackend"
    assert pending["challenge_id"] == body["challenge"]["id"]
    challenge = Challenge.objects.get(pk=body["challenge"]["id"])
    assert parse_datetime(pending["expires_at"]) == challenge.expires_at


def _encodings(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        binascii.hexlify(raw).decode(),
    }
    # Without padding, and as the middle of a longer base64 string would show it.
    forms |= {form.rstrip("=") for form in forms}
    forms |= {
        base64.b64encode(b"x" + raw).decode()[4:-4],
        base64.b64encode(b"xy" + raw)[4:-4].decode(),
    }
    return {form for form in forms if len(form) >= 8}


def _strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    else:
        yield str(value)


def _decoded_base64(text: str) -> list[str]:
    out = []
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        for pad in ("", "=", "=="):
            try:
                out.append(decode(text + pad).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                continue
    return out


@pytest.mark.parametrize("password", [PASSWORD, "Sp3cial ünïcode & «quotes» \"'\\"])
def test_the_session_never_holds_the_password(client, user, device, password):
    user.set_password(password)
    user.save()
    assert login(client, password=password).status_code == 200
    stored = Session.objects.get(session_key=session_key(client))
    decoded = stored.get_decoded()
    assert PENDING_KEY in decoded
    haystack = list(_strings(decoded)) + [json.dumps(decoded), stored.session_data]
    haystack += [text for item in list(haystack) for text in _decoded_base64(item)]
    for form in _encodings(password):
        for text in haystack:
            assert form not in text
    # Nor anywhere in the challenge row.
    row = Challenge.objects.values().get()
    for form in _encodings(password):
        assert all(form not in str(value) for value in row.values())


# ------------------------------------------------------------------- code


def test_the_right_code_logs_in_verified_with_a_new_session_key(
    client, user, device, pending, outbox
):
    challenge_id, code = pending
    before = session_key(client)
    assert before
    response = login_verify(client, challenge_id, code)
    assert response.status_code == 200
    assert response.json() == {"mfa_required": False, "user": {"id": user.pk, "username": "alice"}}
    after = session_key(client)
    assert after and after != before
    assert not Session.objects.filter(session_key=before).exists()
    session = client.session
    assert session["_auth_user_id"] == str(user.pk)
    assert session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert PENDING_KEY not in session
    user.refresh_from_db()
    assert user.last_login is not None
    # A usable session: the middleware sees it verified.
    listing = client.get(API + "devices/")
    assert listing.status_code == 200
    assert [item["id"] for item in listing.json()] == [device.pk]
    assert Challenge.objects.get(pk=challenge_id).status == ChallengeStatus.VERIFIED


def test_a_wrong_code_is_400_and_keeps_the_login_pending(client, user, device, pending):
    challenge_id, code = pending
    error = assert_error(login_verify(client, challenge_id, wrong(code)), 400, "incorrect_code")
    assert error["attempts_left"] == 4
    assert logged_in_user_id(client) is None
    assert PENDING_KEY in client.session
    assert login_verify(client, challenge_id, code).status_code == 200


def test_five_wrong_codes_end_the_login(client, user, device, pending):
    challenge_id, code = pending
    for _attempt in range(5):
        assert_error(login_verify(client, challenge_id, wrong(code)), 400, "incorrect_code")
    assert_error(login_verify(client, challenge_id, code), 429, "too_many_attempts")
    assert logged_in_user_id(client) is None


def test_a_code_that_is_not_digits_is_400_invalid_code(client, user, device, pending):
    challenge_id, code = pending
    full_width = "".join(chr(ord("０") + int(d)) for d in code)
    assert_error(login_verify(client, challenge_id, full_width), 400, "invalid_code")
    assert Challenge.objects.get(pk=challenge_id).attempts == 0


@pytest.mark.parametrize(
    "payload",
    [{}, {"challenge": "not-a-uuid", "code": "123456"}, {"challenge": str(uuid.uuid4())}],
    ids=["empty", "not a uuid", "no code"],
)
def test_malformed_login_verify_is_400_invalid(client, user, device, pending, payload):
    assert_error(api_post(client, "login/verify/", payload), 400, "invalid")


def test_another_challenge_id_is_404(client, user, device, pending):
    challenge_id, code = pending
    assert_error(login_verify(client, uuid.uuid4(), code), 404, "challenge_not_found")
    # A challenge that exists but is not this login's.
    other = Challenge.objects.create(
        phone=PHONE,
        purpose=Purpose.LOGIN,
        user=user,
        max_attempts=5,
        created_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert_error(login_verify(client, other.pk, code), 404, "challenge_not_found")
    assert logged_in_user_id(client) is None
    assert login_verify(client, challenge_id, code).status_code == 200


def test_another_clients_login_cannot_be_finished(client, user, device, pending):
    challenge_id, code = pending
    stranger = Client()
    assert_error(login_verify(stranger, challenge_id, code), 410, "login_expired")
    assert logged_in_user_id(stranger) is None
    assert Challenge.objects.get(pk=challenge_id).attempts == 0


def test_no_pending_login_is_410(client, user, device):
    assert_error(login_verify(client, uuid.uuid4(), "123456"), 410, "login_expired")


def test_a_pending_login_expires_with_its_challenge(client, user, device, pending):
    challenge_id, code = pending
    with time_machine.travel(timezone.now() + timedelta(seconds=301), tick=False):
        assert_error(login_verify(client, challenge_id, code), 410, "login_expired")
    assert PENDING_KEY not in client.session
    assert logged_in_user_id(client) is None
    assert_error(login_verify(client, challenge_id, code), 410, "login_expired")


def test_a_used_login_cannot_be_replayed(client, user, device, pending):
    challenge_id, code = pending
    assert login_verify(client, challenge_id, code).status_code == 200
    assert_error(login_verify(client, challenge_id, code), 410, "login_expired")


def test_a_new_password_login_replaces_the_pending_one(client, user, device, outbox):
    first = login(client).json()["challenge"]["id"]
    first_code = outbox[-1].code
    second = login(client).json()["challenge"]["id"]
    assert_error(login_verify(client, first, first_code), 404, "challenge_not_found")
    assert login_verify(client, second, outbox[-1].code).status_code == 200


def test_a_user_deactivated_before_the_code_is_not_logged_in(client, user, device, pending):
    challenge_id, code = pending
    user.is_active = False
    user.save()
    assert_error(login_verify(client, challenge_id, code), 410, "login_expired")
    assert logged_in_user_id(client) is None


def test_a_phone_removed_before_the_code_ends_the_login(client, user, device, pending):
    challenge_id, code = pending
    device.delete()
    # Removing a phone cancels every open code sent to it.
    assert_error(login_verify(client, challenge_id, code), 410, "challenge_cancelled")
    assert logged_in_user_id(client) is None


# ----------------------------------------------------------------- resend


def test_the_login_challenge_can_be_resent_by_the_same_client(
    client, user, device, pending, outbox
):
    challenge_id, old_code = pending
    for _attempt in range(5):  # until the random code differs
        response = api_post(client, f"challenges/{challenge_id}/resend/")
        assert response.status_code == 202
        if outbox[-1].code != old_code:
            break
    body = response.json()
    assert set(body) == CHALLENGE_FIELDS
    assert body["id"] == challenge_id and body["purpose"] == "login"
    assert outbox[-1].to == PHONE
    assert_error(login_verify(client, challenge_id, old_code), 400, "incorrect_code")
    assert login_verify(client, challenge_id, outbox[-1].code).status_code == 200


def test_another_client_cannot_resend_or_cancel_the_login_challenge(client, user, device, pending):
    challenge_id, _code = pending
    stranger = Client()
    response = api_post(stranger, f"challenges/{challenge_id}/resend/")
    assert_error(response, 404, "challenge_not_found")
    assert_error(stranger.delete(f"{API}challenges/{challenge_id}/"), 404, "challenge_not_found")
    assert Challenge.objects.get(pk=challenge_id).status == ChallengeStatus.PENDING


def test_the_login_challenge_can_be_cancelled_by_its_client(client, user, device, pending):
    challenge_id, code = pending
    assert client.delete(f"{API}challenges/{challenge_id}/").status_code == 204
    assert_error(login_verify(client, challenge_id, code), 410, "challenge_cancelled")
    assert logged_in_user_id(client) is None


def test_a_resent_login_code_works_for_its_whole_lifetime(client, user, device, outbox):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        challenge_id = login(client).json()["challenge"]["id"]
        traveller.shift(290)
        assert api_post(client, f"challenges/{challenge_id}/resend/").status_code == 202
        traveller.shift(20)  # past the first lifetime, 20 s into the resent code's
        response = login_verify(client, challenge_id, outbox[-1].code)
        assert response.status_code == 200, response.content


# ------------------------------------------------------------ token hook


def _token_user(body) -> int:
    return signing.loads(body["token"], salt=TOKEN_SALT)["user"]


def test_the_adapter_adds_a_token_to_login_verify(client, user, device, outbox, sms2fa_settings):
    sms2fa_settings(ADAPTER="tests.test_api_login.TokenAdapter")
    first = login(client).json()
    assert "token" not in first  # no token before the second factor
    response = login_verify(client, first["challenge"]["id"], outbox[-1].code)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"mfa_required", "user", "token"}
    assert _token_user(body) == user.pk


def test_the_adapter_adds_a_token_to_a_password_only_login(client, user, sms2fa_settings):
    sms2fa_settings(ADAPTER="tests.test_api_login.TokenAdapter")
    body = login(client).json()
    assert body["mfa_required"] is False
    assert _token_user(body) == user.pk


def test_the_adapter_adds_a_token_to_a_passwordless_login(
    client, user, device, outbox, sms2fa_settings
):
    sms2fa_settings(ADAPTER="tests.test_api_login.TokenAdapter")
    created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"}).json()
    response = api_post(client, f"challenges/{created['id']}/verify/", {"code": outbox[-1].code})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"verified", "purpose", "user", "token"}
    assert _token_user(body) == user.pk


def test_no_token_for_a_failed_login(client, user, device, pending, sms2fa_settings):
    sms2fa_settings(ADAPTER="tests.test_api_login.TokenAdapter")
    challenge_id, code = pending
    response = login_verify(client, challenge_id, wrong(code))
    assert "token" not in response.content.decode()
    assert "token" not in login(Client(), password="nope").content.decode()


@pytest.mark.parametrize("challenge", [False, True, 0, 1, 12345, None, ["x"]])
def test_a_challenge_that_is_not_a_uuid_string_is_invalid(client, challenge):
    """DRF's UUIDField takes integers: false would become the nil UUID."""
    response = api_post(client, "login/verify/", {"challenge": challenge, "code": "123456"})
    assert_error(response, 400, "invalid")
