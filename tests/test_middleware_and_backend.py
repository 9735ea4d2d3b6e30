"""SecondFactorMiddleware and PhoneCodeBackend.

The middleware: a session that logged in with a password alone, for a user
with a confirmed phone, is anonymous to every view until a code is checked
(``django_otp.login``); users without a phone are left alone; a misplaced
middleware fails loudly.

The backend: ``authenticate(request, challenge=..., code=...)`` gives the user
of a right passwordless code and ``None`` for anything else, so that it sits
beside ``ModelBackend`` without changing what a password does.

This module is its own URLconf (``pytest.mark.urls``): ``whoami/`` shows what
a view sees as ``request.user``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.decorators import otp_required
from rest_framework.test import APIClient

from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY, authenticate, get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LogoutView
from django.http import HttpResponse, JsonResponse
from django.test import RequestFactory, override_settings
from django.urls import include, path
from django.utils import timezone

from django_sms2fa import flows, login_flows
from django_sms2fa.models import Challenge, ChallengeStatus, PhoneDevice, Purpose

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PHONE = "+46701234567"
OTHER_PHONE = "+46709876543"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
PHONE_BACKEND = "django_sms2fa.backends.PhoneCodeBackend"
FIXED_CODE = "271828"


# ------------------------------------------------------------------ URLconf


def whoami(request):
    user = request.user
    unverified = getattr(request, "sms2fa_unverified_user", None)
    return JsonResponse(
        {
            "authenticated": user.is_authenticated,
            "verified": user.is_verified(),
            "username": user.get_username(),
            "otp_device": getattr(user, "otp_device", "missing") is not None,
            "unverified_user": unverified.pk if unverified is not None else None,
        }
    )


@otp_required
def otp_protected(request):
    return HttpResponse(f"hello {request.user.get_username()}")


@login_required
def login_protected(request):
    return HttpResponse(f"hello {request.user.get_username()}")


@login_required
async def async_login_protected(request):
    user = await request.auser()
    return HttpResponse(f"hello {user.get_username()}")


urlpatterns = [
    path("whoami/", whoami),
    path("otp-protected/", otp_protected),
    path("login-protected/", login_protected),
    path("async-login-protected/", async_login_protected),
    path("logout/", LogoutView.as_view(next_page="/whoami/")),
    path("api/2fa/", include("django_sms2fa.api.urls")),
]


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def phone_user(user):
    """alice, with a confirmed phone."""
    PhoneDevice.objects.create(user=user, number=PHONE, name="Phone", confirmed=True)
    return user


@pytest.fixture
def device(phone_user):
    return PhoneDevice.objects.get(user=phone_user)


def whoami_of(client) -> dict:
    answer = client.get("/whoami/")
    assert answer.status_code == 200
    return answer.json()


ANONYMOUS = {
    "authenticated": False,
    "verified": False,
    "username": "",
    "otp_device": False,
}


# ------------------------------------------------------------- the middleware


def test_password_only_session_of_a_user_with_a_phone_is_anonymous(client, phone_user):
    client.force_login(phone_user)
    assert client.session[SESSION_KEY] == str(phone_user.pk)  # Django did log in
    seen = whoami_of(client)
    assert {key: seen[key] for key in ANONYMOUS} == ANONYMOUS
    assert seen["unverified_user"] == phone_user.pk  # kept for logout views and audits

    protected = client.get("/otp-protected/")
    assert protected.status_code == 302
    assert "next=/otp-protected/" in protected["Location"]
    assert client.get("/login-protected/").status_code == 302
    assert client.get("/api/2fa/devices/").status_code == 403


def test_password_only_session_is_anonymous_to_async_views(client, phone_user):
    client.force_login(phone_user)
    answer = client.get("/async-login-protected/")
    assert answer.status_code == 302


def test_async_views_of_a_verified_session_see_the_user(client, phone_user, device):
    """The control for the test above: the async view does answer a real login."""
    client.force_login(phone_user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    answer = client.get("/async-login-protected/")
    assert answer.status_code == 200
    assert answer.content == b"hello alice"


def test_an_unconfirmed_phone_is_not_a_second_factor(client, user):
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=False)
    client.force_login(user)
    seen = whoami_of(client)
    assert (seen["authenticated"], seen["verified"], seen["username"]) == (True, False, "alice")


def test_a_user_without_a_phone_is_not_affected(client, user):
    client.force_login(user)
    seen = whoami_of(client)
    assert seen == {
        "authenticated": True,
        "verified": False,
        "username": "alice",
        "otp_device": False,
        "unverified_user": None,
    }
    assert client.get("/login-protected/").content == b"hello alice"
    assert client.get("/otp-protected/").status_code == 302  # otp_required: still no factor
    assert client.get("/api/2fa/devices/").status_code == 200


def test_an_anonymous_visitor_is_left_alone(client):
    seen = whoami_of(client)
    assert seen == {**ANONYMOUS, "unverified_user": None}


def test_a_session_verified_by_django_otp_login_is_authenticated(client, phone_user, device):
    client.force_login(phone_user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id  # what django_otp.login stores
    session.save()
    seen = whoami_of(client)
    assert (seen["authenticated"], seen["verified"], seen["username"]) == (True, True, "alice")
    assert seen["unverified_user"] is None
    assert client.get("/otp-protected/").content == b"hello alice"
    assert client.get("/api/2fa/devices/").status_code == 200


def test_a_session_verified_with_another_users_device_stays_anonymous(
    client, phone_user, other_user
):
    theirs = PhoneDevice.objects.create(user=other_user, number=OTHER_PHONE, confirmed=True)
    client.force_login(phone_user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = theirs.persistent_id
    session.save()
    seen = whoami_of(client)
    assert {key: seen[key] for key in ANONYMOUS} == ANONYMOUS


def test_the_api_login_with_a_code_gives_a_verified_session(client, phone_user, outbox):
    """The real path to a verified session: password, then code (django_otp.login)."""
    api = APIClient()
    answer = api.post(
        "/api/2fa/login/", {"username": "alice", "password": "correct horse"}, format="json"
    )
    assert answer.json()["mfa_required"] is True
    assert whoami_of(api)["authenticated"] is False
    verified = api.post(
        "/api/2fa/login/verify/",
        {"challenge": answer.json()["challenge"]["id"], "code": outbox[-1].code},
        format="json",
    )
    assert verified.status_code == 200
    seen = whoami_of(api)
    assert (seen["authenticated"], seen["verified"], seen["username"]) == (True, True, "alice")


def test_a_passwordless_login_gives_an_authenticated_session(phone_user, outbox):
    api = APIClient()
    created = api.post(
        "/api/2fa/challenges/", {"phone": PHONE, "purpose": "passwordless"}, format="json"
    )
    answer = api.post(
        f"/api/2fa/challenges/{created.json()['id']}/verify/",
        {"code": outbox[-1].code},
        format="json",
    )
    assert answer.status_code == 200
    seen = whoami_of(api)
    assert (seen["authenticated"], seen["username"]) == (True, "alice")


def test_a_password_only_session_can_log_out(client, phone_user):
    client.force_login(phone_user)
    answer = client.post("/logout/")
    assert answer.status_code == 302
    assert SESSION_KEY not in client.session


def _without(name: str) -> list[str]:
    return [entry for entry in django_settings.MIDDLEWARE if entry != name]


def _moved_before(name: str, anchor: str) -> list[str]:
    entries = _without(name)
    entries.insert(entries.index(anchor), name)
    return entries


OTP_MW = "django_otp.middleware.OTPMiddleware"
AUTH_MW = "django.contrib.auth.middleware.AuthenticationMiddleware"
SF_MW = "django_sms2fa.middleware.SecondFactorMiddleware"


@pytest.mark.parametrize(
    "middleware",
    [
        pytest.param(lambda: _without(OTP_MW), id="without OTPMiddleware"),
        pytest.param(lambda: _moved_before(SF_MW, OTP_MW), id="before OTPMiddleware"),
    ],
)
def test_without_otp_middleware_a_logged_in_request_fails_loudly(client, phone_user, middleware):
    client.force_login(phone_user)
    with override_settings(MIDDLEWARE=middleware()):
        with pytest.raises(RuntimeError, match="OTPMiddleware"):
            client.get("/whoami/")


def test_before_authentication_middleware_it_fails_loudly(client):
    with override_settings(MIDDLEWARE=_moved_before(SF_MW, AUTH_MW)):
        with pytest.raises(RuntimeError, match="AuthenticationMiddleware"):
            client.get("/whoami/")


def test_without_otp_middleware_even_an_anonymous_request_fails_loudly(client):
    with override_settings(MIDDLEWARE=_without(OTP_MW)):
        with pytest.raises(RuntimeError, match="OTPMiddleware"):
            client.get("/login-protected/")  # a view that never asks is_verified()


# --------------------------------------------------------------- the backend


@pytest.fixture
def rf_request():
    return RequestFactory().post("/login/")


@pytest.fixture
def fixed_codes(monkeypatch):
    monkeypatch.setattr(flows, "generate_code", lambda length: (FIXED_CODE * 2)[:length])


def passwordless_challenge(outbox, phone: str = PHONE) -> tuple[Challenge, str]:
    challenge = login_flows.start_passwordless(phone)
    return challenge, (outbox[-1].code if outbox else "")


def test_right_passwordless_code_authenticates(rf_request, phone_user, outbox):
    challenge, code = passwordless_challenge(outbox)
    user = authenticate(rf_request, challenge=str(challenge.pk), code=code)
    assert user == phone_user
    assert user.backend == PHONE_BACKEND
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.VERIFIED


def test_a_uuid_object_works_as_well(rf_request, phone_user, outbox):
    challenge, code = passwordless_challenge(outbox)
    assert authenticate(rf_request, challenge=challenge.pk, code=code) == phone_user


def test_wrong_code_is_none_and_counts_an_attempt(rf_request, phone_user, outbox):
    challenge, code = passwordless_challenge(outbox)
    wrong = "000000" if code != "000000" else "111111"
    assert authenticate(rf_request, challenge=str(challenge.pk), code=wrong) is None
    assert Challenge.objects.get(pk=challenge.pk).attempts == 1
    assert authenticate(rf_request, challenge=str(challenge.pk), code=code) == phone_user


def test_the_attempt_limit_holds_through_the_backend(rf_request, phone_user, outbox, settings):
    challenge, code = passwordless_challenge(outbox)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(settings.SMS2FA.get("MAX_ATTEMPTS", 5)):
        assert authenticate(rf_request, challenge=str(challenge.pk), code=wrong) is None
    assert authenticate(rf_request, challenge=str(challenge.pk), code=code) is None
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.FAILED


def test_a_used_code_is_none(rf_request, phone_user, outbox):
    challenge, code = passwordless_challenge(outbox)
    assert authenticate(rf_request, challenge=str(challenge.pk), code=code) == phone_user
    assert authenticate(rf_request, challenge=str(challenge.pk), code=code) is None


def test_an_expired_code_is_none(rf_request, phone_user, outbox, settings):
    challenge, code = passwordless_challenge(outbox)
    lifetime = settings.SMS2FA.get("CODE_LIFETIME", 300)
    with time_machine.travel(timezone.now() + timedelta(seconds=lifetime + 1)):
        assert authenticate(rf_request, challenge=str(challenge.pk), code=code) is None
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.EXPIRED


def test_a_cancelled_challenge_is_none(rf_request, phone_user, outbox):
    challenge, code = passwordless_challenge(outbox)
    flows.cancel_challenge(challenge.pk)
    assert authenticate(rf_request, challenge=str(challenge.pk), code=code) is None


@pytest.mark.parametrize("challenge_id", [lambda: str(uuid.uuid4()), lambda: "not-a-uuid"])
def test_an_unknown_challenge_is_none(rf_request, phone_user, challenge_id):
    assert authenticate(rf_request, challenge=challenge_id(), code="123456") is None


@pytest.mark.parametrize("purpose", [Purpose.LOGIN, Purpose.VERIFY_PHONE])
def test_a_code_of_another_purpose_is_none_and_left_intact(
    rf_request, phone_user, device, outbox, purpose
):
    challenge = flows.request_challenge(
        phone=PHONE,
        purpose=purpose,
        user=phone_user,
        device=device if purpose == Purpose.LOGIN else None,
    )
    code = outbox[-1].code
    assert authenticate(rf_request, challenge=str(challenge.pk), code=code) is None
    untouched = Challenge.objects.get(pk=challenge.pk)
    assert (untouched.status, untouched.attempts) == (ChallengeStatus.PENDING, 0)
    # Still good for what it was made for.
    assert flows.verify_challenge(challenge.pk, code, purpose=purpose).status == "verified"


def test_a_decoy_challenge_with_its_code_is_none(rf_request, fixed_codes, outbox):
    challenge = login_flows.start_passwordless(OTHER_PHONE)  # no account
    assert outbox == []
    assert authenticate(rf_request, challenge=str(challenge.pk), code=FIXED_CODE) is None


def test_an_inactive_user_is_none(rf_request, phone_user, outbox):
    challenge, code = passwordless_challenge(outbox)
    get_user_model().objects.filter(pk=phone_user.pk).update(is_active=False)
    assert authenticate(rf_request, challenge=str(challenge.pk), code=code) is None


@pytest.mark.parametrize(
    "credentials",
    [
        {"challenge": None, "code": "123456"},
        {"code": "123456"},
        {"challenge": "x"},
        {"username": "alice", "password": "wrong"},
        {},
    ],
)
def test_without_challenge_and_code_the_phone_backend_says_none(
    rf_request, phone_user, credentials
):
    from django_sms2fa.backends import PhoneCodeBackend

    assert PhoneCodeBackend().authenticate(rf_request, **credentials) is None


def test_a_challenge_without_a_code_uses_no_attempt(rf_request, phone_user, outbox):
    challenge, _ = passwordless_challenge(outbox)
    assert authenticate(rf_request, challenge=str(challenge.pk)) is None
    assert Challenge.objects.get(pk=challenge.pk).attempts == 0


@pytest.mark.parametrize(
    "backends",
    [[MODEL_BACKEND, PHONE_BACKEND], [PHONE_BACKEND, MODEL_BACKEND]],
    ids=["model first", "phone first"],
)
def test_it_composes_with_model_backend(rf_request, phone_user, outbox, backends):
    with override_settings(AUTHENTICATION_BACKENDS=backends):
        by_password = authenticate(rf_request, username="alice", password="correct horse")
        assert by_password == phone_user
        assert by_password.backend == MODEL_BACKEND
        assert authenticate(rf_request, username="alice", password="wrong") is None

        challenge, code = passwordless_challenge(outbox)
        by_code = authenticate(rf_request, challenge=str(challenge.pk), code=code)
        assert by_code == phone_user
        assert by_code.backend == PHONE_BACKEND


def test_model_backend_alone_ignores_codes(rf_request, phone_user, outbox):
    with override_settings(AUTHENTICATION_BACKENDS=[MODEL_BACKEND]):
        challenge, code = passwordless_challenge(outbox)
        assert authenticate(rf_request, challenge=str(challenge.pk), code=code) is None
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.PENDING


def test_the_phone_backend_restores_the_session_user(client, phone_user, device, outbox):
    """A session logged in through PhoneCodeBackend is loaded by its get_user()."""
    challenge, code = passwordless_challenge(outbox)
    user = authenticate(RequestFactory().post("/"), challenge=str(challenge.pk), code=code)
    client.force_login(user, backend=PHONE_BACKEND)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    seen = whoami_of(client)
    assert (seen["authenticated"], seen["username"]) == (True, "alice")
