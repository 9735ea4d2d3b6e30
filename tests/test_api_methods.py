"""REST contract of the sign-in methods beside the phone: an authenticator app
(TOTP), recovery codes, remembered browsers, the method choice at login and
step-up before any change of sign-in method."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from datetime import UTC, datetime

import pytest
import time_machine
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from django.test import Client
from django.utils.dateparse import parse_datetime

from django_sms2fa import methods
from django_sms2fa.conf import app_settings
from django_sms2fa.models import PhoneDevice, RecoveryCode
from django_sms2fa.session_keys import VERIFIED_AT_KEY

from .api_support import API, api_post, assert_error

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
SECOND_PHONE = "+46709876543"
NEW_PHONE = "+46731112233"
PASSWORD = "correct horse"  # the `user` fixture's
NEW_PASSWORD = "a brand new passphrase"
COOKIE = methods.BROWSER_COOKIE
METHODS_FIELDS = {
    "methods",
    "phones",
    "totp",
    "recovery_codes",
    "browsers",
    "remember_enabled",
    "step_up_until",
}
BROWSER_FIELDS = {"id", "created_at", "last_used_at", "expires_at", "user_agent"}


# ------------------------------------------------------------------ helpers


def totp_code(secret: str, *, later: int = 0) -> str:
    """The code an authenticator app shows now (``later`` seconds from now)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key, step=30, t0=0, digits=6)
    totp.time = time.time() + later
    return f"{totp.token():06d}"


def wrong_totp(secret: str) -> str:
    right = {totp_code(secret, later=s) for s in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in right)


def post(client, path, data, **extra):
    return client.post(API + path, data, content_type="application/json", **extra)


def login(client, password=PASSWORD, **extra):
    return post(client, "login/", {"username": "alice", "password": password}, **extra)


def verify(client, body, **extra):
    return post(client, "login/verify/", body, **extra)


def login_with_phone(client, outbox, *, remember=False, secure=False):
    """Password, then the phone's code (switching to the phone if another
    method is the default). Returns the login/verify/ answer."""
    body = login(client, secure=secure).json()
    assert body["mfa_required"] is True
    if body["method"] != "phone":
        body = post(client, "login/method/", {"method": "phone"}, secure=secure).json()
    challenge = body["challenge"]["id"]
    return verify(
        client,
        {"challenge": challenge, "code": outbox[-1].code, "remember": remember},
        secure=secure,
    )


def add_totp(user) -> str:
    """Give ``user`` a confirmed authenticator app (through the domain); its secret."""
    device = methods.start_totp(user)
    secret = methods.totp_secret(device)
    methods.confirm_totp(user, device.pk, totp_code(secret))
    return secret


def make_stale(client) -> None:
    """The session proved its factor longer ago than ``STEP_UP_WINDOW``."""
    session = client.session
    session[VERIFIED_AT_KEY] = time.time() - app_settings.STEP_UP_WINDOW - 1
    session.save()


def step_up(client, method, code, challenge=None):
    body = {"method": method, "code": code}
    if challenge is not None:
        body["challenge"] = challenge
    return api_post(client, "step-up/", body)


@pytest.fixture(autouse=True)
def clock():
    """Time stands still unless a test moves it (TOTP codes are per 30 s, and
    django-otp accepts each time step once)."""
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        yield traveller


@pytest.fixture
def phone(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)


@pytest.fixture
def verified(client, user, phone, outbox):
    """A client logged in with the password and the phone's code just now."""
    assert login_with_phone(client, outbox).status_code == 200
    assert client.session[DEVICE_ID_SESSION_KEY] == phone.persistent_id
    outbox.clear()
    return client


@pytest.fixture
def remembering(sms2fa_settings):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)


# ---------------------------------------------------------------- anonymous


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "methods/"),
        ("post", "totp/"),
        ("delete", "totp/"),
        ("post", "totp/confirm/"),
        ("get", "recovery-codes/"),
        ("post", "recovery-codes/"),
        ("get", "browsers/"),
        ("delete", f"browsers/{uuid.uuid4()}/"),
        ("post", "browsers/forget-all/"),
        ("post", "step-up/"),
        ("post", "step-up/challenge/"),
    ],
)
def test_anonymous_is_403_in_the_error_shape(client, method, path):
    response = getattr(client, method)(API + path, {}, content_type="application/json")
    assert_error(response, 403, "not_authenticated")


def test_a_password_only_session_of_a_user_with_a_phone_is_anonymous(client, user, phone):
    client.force_login(user)
    assert_error(client.get(API + "methods/"), 403, "not_authenticated")
    assert_error(api_post(client, "recovery-codes/"), 403, "not_authenticated")


# ----------------------------------------------------------- methods/ shape


def test_methods_lists_what_the_user_has(verified, user, phone, clock):
    body = verified.get(API + "methods/").json()
    assert set(body) == METHODS_FIELDS
    assert body["methods"] == ["phone"]
    assert [p["id"] for p in body["phones"]] == [phone.pk]
    assert body["phones"][0]["phone"] != PHONE  # masked, as devices/ gives it
    assert body["totp"] is None and body["recovery_codes"] is None
    assert body["browsers"] == [] and body["remember_enabled"] is False
    # Just logged in with a code: the step-up window runs from now.
    until = parse_datetime(body["step_up_until"])
    assert abs(until.timestamp() - (time.time() + app_settings.STEP_UP_WINDOW)) < 2
    make_stale(verified)
    assert verified.get(API + "methods/").json()["step_up_until"] is None


# ------------------------------------------------------- authenticator app


def test_enrol_totp_confirm_and_recovery_codes_are_shown_once(verified, user, phone, clock, caplog):
    caplog.set_level(logging.DEBUG)
    started = api_post(verified, "totp/")
    assert started.status_code == 201
    body = started.json()
    assert set(body) == {"id", "secret", "otpauth_url", "qr_svg"}
    assert "no-store" in started["Cache-Control"]
    secret = body["secret"]
    assert body["otpauth_url"].startswith("otpauth://totp/testserver%3Aalice?")
    assert f"secret={secret}" in body["otpauth_url"] and "issuer=testserver" in body["otpauth_url"]
    assert body["qr_svg"].startswith("<svg") and secret not in body["qr_svg"]
    assert verified.get(API + "methods/").json()["totp"] == {
        "id": body["id"],
        "confirmed": False,
        "created_at": verified.get(API + "methods/").json()["totp"]["created_at"],
    }

    wrong = api_post(verified, "totp/confirm/", {"code": wrong_totp(secret)})
    assert_error(wrong, 400, "incorrect_code")
    clock.shift(5)  # past django-otp's throttle after a wrong code
    confirmed = api_post(verified, "totp/confirm/", {"id": body["id"], "code": totp_code(secret)})
    assert confirmed.status_code == 200, confirmed.content
    answer = confirmed.json()
    assert answer["confirmed"] is True
    codes = answer["recovery_codes"]
    assert len(codes) == app_settings.RECOVERY_CODE_COUNT == len(set(codes))
    assert "no-store" in confirmed["Cache-Control"]

    listed = verified.get(API + "methods/").json()
    assert listed["methods"][0] == "totp" and set(listed["methods"]) == {
        "totp",
        "phone",
        "recovery",
    }
    assert listed["totp"]["confirmed"] is True
    assert listed["recovery_codes"] == {"left": len(codes)}
    assert verified.get(API + "recovery-codes/").json() == {"left": len(codes)}
    assert_error(api_post(verified, "totp/"), 409, "method_already_enrolled")

    # Removed and added again: the user still has codes, none is shown.
    assert verified.delete(API + "totp/").status_code == 204
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert_error(verified.delete(API + "totp/"), 400, "method_unavailable")
    again = api_post(verified, "totp/").json()
    clock.shift(30)
    reconfirmed = api_post(verified, "totp/confirm/", {"code": totp_code(again["secret"])})
    assert reconfirmed.json() == {"confirmed": True}

    # No code or secret in any log line.
    for secret_text in [secret, again["secret"], *codes, *(c.replace("-", "") for c in codes)]:
        assert secret_text not in caplog.text
    assert secret not in wrong.content.decode()


def test_confirming_with_no_app_being_added_is_404(verified):
    assert_error(api_post(verified, "totp/confirm/", {"code": "123456"}), 404, "device_not_found")


def test_confirming_another_users_app_is_404(verified, other_user, clock):
    theirs = methods.start_totp(other_user)
    body = {"id": theirs.pk, "code": totp_code(methods.totp_secret(theirs))}
    assert_error(api_post(verified, "totp/confirm/", body), 404, "device_not_found")
    theirs.refresh_from_db()
    assert theirs.confirmed is False


def test_a_first_factor_enrolled_verifies_the_session(client, user, clock):
    # A user with no second factor yet: enrolment needs no step-up, and once
    # the app is confirmed the session is verified with it (not anonymous).
    client.force_login(user)
    body = api_post(client, "totp/").json()
    confirmed = api_post(client, "totp/confirm/", {"code": totp_code(body["secret"])})
    assert confirmed.status_code == 200
    assert len(confirmed.json()["recovery_codes"]) == app_settings.RECOVERY_CODE_COUNT
    assert client.get(API + "methods/").status_code == 200


# ------------------------------------------------------------- login flows


def test_login_with_totp_and_then_with_a_recovery_code(user, phone, outbox, clock):
    secret = add_totp(user)
    codes = methods.generate_recovery_codes(user)
    clock.shift(30)

    client = Client()
    body = login(client).json()
    assert body["mfa_required"] is True
    assert body["method"] == "totp" and body["challenge"] is None
    assert set(body["methods"]) == {"totp", "phone", "recovery"}
    assert outbox == []  # nothing sent for an authenticator app
    done = verify(client, {"code": totp_code(secret)})
    assert done.status_code == 200, done.content
    assert "recovery_codes_left" not in done.json()
    assert client.get(API + "methods/").status_code == 200

    other = Client()
    login(other)
    switched = api_post(other, "login/method/", {"method": "recovery"})
    assert switched.json()["method"] == "recovery" and switched.json()["challenge"] is None
    done = verify(other, {"code": codes[0]})
    assert done.status_code == 200, done.content
    assert done.json()["recovery_codes_left"] == len(codes) - 1
    # Spent: it does not log in twice.
    third = Client()
    login(third)
    api_post(third, "login/method/", {"method": "recovery"})
    assert_error(verify(third, {"code": codes[0]}), 400, "incorrect_code")


# ------------------------------------------------------- remembered browsers


def test_remember_sets_an_httponly_secure_cookie_that_skips_the_code(
    client, user, phone, outbox, remembering
):
    done = login_with_phone(client, outbox, remember=True, secure=True)
    assert done.status_code == 200
    cookie = done.cookies[COOKIE]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 30 * 86400
    assert cookie.value not in done.content.decode()

    again = Client()
    again.cookies[COOKIE] = cookie.value
    outbox.clear()
    skipped = login(again)
    assert skipped.status_code == 200
    assert skipped.json()["mfa_required"] is False and skipped.json()["remembered"] is True
    assert outbox == []
    listed = again.get(API + "methods/").json()
    assert [set(b) for b in listed["browsers"]] == [BROWSER_FIELDS]
    assert listed["remember_enabled"] is True
    # No factor was proved now: changes need a step-up first.
    assert listed["step_up_until"] is None
    assert_error(api_post(again, "recovery-codes/"), 403, "step_up_required")


def test_the_cookie_is_not_secure_over_plain_http(client, user, phone, outbox, remembering):
    cookie = login_with_phone(client, outbox, remember=True).cookies[COOKIE]
    assert cookie["httponly"] and not cookie["secure"]


def test_without_remember_no_cookie_is_set(client, user, phone, outbox, remembering):
    assert COOKIE not in login_with_phone(client, outbox, secure=True).cookies


def remembered_cookie(outbox) -> str:
    client = Client()
    return login_with_phone(client, outbox, remember=True, secure=True).cookies[COOKIE].value


def logs_in_without_code(cookie: str, password: str = PASSWORD) -> bool:
    client = Client()
    client.cookies[COOKIE] = cookie
    body = login(client, password=password).json()
    return body["mfa_required"] is False


def test_the_cookie_stops_working_after_a_password_change(user, phone, outbox, remembering):
    cookie = remembered_cookie(outbox)
    assert logs_in_without_code(cookie)
    user.set_password(NEW_PASSWORD)
    user.save()
    assert not logs_in_without_code(cookie, NEW_PASSWORD)


def test_forget_all_forgets_every_browser_and_deletes_the_cookie(
    client, user, phone, outbox, remembering
):
    other = remembered_cookie(outbox)
    done = login_with_phone(client, outbox, remember=True, secure=True)
    mine = done.cookies[COOKIE].value
    assert len(client.get(API + "browsers/").json()) == 2
    response = api_post(client, "browsers/forget-all/")
    assert response.status_code == 200
    assert response.json() == {"forgotten": 2}
    assert response.cookies[COOKIE].value == "" and response.cookies[COOKIE]["max-age"] == 0
    assert client.get(API + "browsers/").json() == []
    assert not logs_in_without_code(mine)
    assert not logs_in_without_code(other)
    assert api_post(client, "browsers/forget-all/").json() == {"forgotten": 0}


def test_forgetting_one_browser(client, user, other_user, phone, outbox, remembering, clock):
    other = remembered_cookie(outbox)
    clock.shift(1)
    login_with_phone(client, outbox, remember=True)
    browsers = client.get(API + "browsers/").json()
    assert len(browsers) == 2
    # Newest first: the other browser is the second.
    target = browsers[1]["id"]
    assert client.delete(f"{API}browsers/{target}/").status_code == 204
    assert_error(client.delete(f"{API}browsers/{target}/"), 404, "device_not_found")
    assert not logs_in_without_code(other)
    assert [b["id"] for b in client.get(API + "browsers/").json()] == [browsers[0]["id"]]
    for bad in ["nope", str(uuid.uuid4()), "1"]:
        assert_error(client.delete(f"{API}browsers/{bad}/"), 404, "device_not_found")


def test_a_stranger_cannot_forget_someone_elses_browser(
    user, other_user, phone, outbox, remembering
):
    cookie = remembered_cookie(outbox)
    browser_id = methods.browsers_of(user).get().pk
    stranger = Client()
    stranger.force_login(other_user)  # bob has no second factor
    assert_error(stranger.delete(f"{API}browsers/{browser_id}/"), 404, "device_not_found")
    assert api_post(stranger, "browsers/forget-all/").json() == {"forgotten": 0}
    assert logs_in_without_code(cookie)


def test_the_cookie_stops_working_when_a_phone_is_removed(client, user, phone, outbox, remembering):
    second = PhoneDevice.objects.create(user=user, number=SECOND_PHONE, name="Work", confirmed=True)
    cookie = remembered_cookie(outbox)
    assert logs_in_without_code(cookie)
    login_with_phone(client, outbox)
    assert client.delete(f"{API}devices/{second.pk}/").status_code == 204
    assert not logs_in_without_code(cookie)


def test_the_cookie_stops_working_when_the_app_is_removed(
    client, user, phone, outbox, remembering, clock
):
    add_totp(user)
    cookie = remembered_cookie(outbox)
    assert logs_in_without_code(cookie)
    login_with_phone(client, outbox)
    assert client.delete(API + "totp/").status_code == 204
    assert not logs_in_without_code(cookie)


# ----------------------------------------------------------------- step-up


def stale_changes_are_refused(client, user, phone) -> None:
    outbox_before = PhoneDevice.objects.count(), RecoveryCode.objects.count()
    assert_error(api_post(client, "devices/", {"phone": NEW_PHONE}), 403, "step_up_required")
    assert_error(client.delete(f"{API}devices/{phone.pk}/"), 403, "step_up_required")
    assert_error(api_post(client, "totp/"), 403, "step_up_required")
    assert_error(client.delete(API + "totp/"), 403, "step_up_required")
    assert_error(api_post(client, "recovery-codes/"), 403, "step_up_required")
    assert (PhoneDevice.objects.count(), RecoveryCode.objects.count()) == outbox_before


def test_changes_need_a_step_up_after_the_window(verified, user, phone, clock, outbox):
    secret = add_totp(user)
    codes = methods.generate_recovery_codes(user)
    # Within the window: allowed (no change made here, only not refused).
    assert api_post(verified, "recovery-codes/").status_code == 201
    clock.shift(app_settings.STEP_UP_WINDOW + 1)
    stale_changes_are_refused(verified, user, phone)
    assert TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    # Reading is not a change: no step-up.
    assert verified.get(API + "methods/").json()["step_up_until"] is None
    assert verified.get(API + "recovery-codes/").status_code == 200
    assert verified.get(API + "browsers/").status_code == 200

    stepped = step_up(verified, "totp", totp_code(secret))
    assert stepped.status_code == 200, stepped.content
    until = parse_datetime(stepped.json()["step_up_until"])
    assert until.timestamp() == pytest.approx(time.time() + app_settings.STEP_UP_WINDOW, abs=1)
    assert verified.get(API + "methods/").json()["step_up_until"] == stepped.json()["step_up_until"]
    made = api_post(verified, "recovery-codes/")
    assert made.status_code == 201
    assert not set(made.json()["codes"]) & set(codes)
    enrolled = api_post(verified, "devices/", {"phone": NEW_PHONE})
    assert enrolled.status_code == 202
    assert verified.delete(f"{API}devices/{enrolled.json()['device']['id']}/").status_code == 204
    assert verified.delete(API + "totp/").status_code == 204


def test_an_old_verified_at_in_the_session_asks_for_a_step_up(verified, user, phone):
    make_stale(verified)
    stale_changes_are_refused(verified, user, phone)


def test_step_up_with_the_phone(verified, user, phone, outbox):
    make_stale(verified)
    sent = api_post(verified, "step-up/challenge/")
    assert sent.status_code == 202
    challenge = sent.json()
    assert challenge["purpose"] == "login" and PHONE not in json.dumps(challenge)
    code = outbox[-1].code
    assert_error(step_up(verified, "phone", code), 404, "challenge_not_found")
    assert_error(step_up(verified, "phone", code, str(uuid.uuid4())), 404, "challenge_not_found")
    stepped = step_up(verified, "phone", code, challenge["id"])
    assert stepped.status_code == 200, stepped.content
    assert api_post(verified, "recovery-codes/").status_code == 201
    # Used: it does not step up twice.
    assert_error(step_up(verified, "phone", code, challenge["id"]), 404, "challenge_not_found")


def test_step_up_takes_only_the_challenge_it_sent_last(verified, user, phone, outbox):
    make_stale(verified)
    first = api_post(verified, "step-up/challenge/").json()
    first_code = outbox[-1].code
    api_post(verified, "step-up/challenge/")
    assert_error(step_up(verified, "phone", first_code, first["id"]), 404, "challenge_not_found")
    # A login challenge of the same user is no step-up challenge either.
    pending = Client()
    login_challenge = login(pending).json()["challenge"]["id"]
    response = step_up(verified, "phone", outbox[-1].code, login_challenge)
    assert_error(response, 404, "challenge_not_found")
    assert_error(api_post(verified, "recovery-codes/"), 403, "step_up_required")


def test_step_up_with_a_recovery_code(verified, user, phone):
    codes = methods.generate_recovery_codes(user)
    make_stale(verified)
    assert step_up(verified, "recovery", codes[3]).status_code == 200
    assert verified.get(API + "recovery-codes/").json() == {"left": len(codes) - 1}


def test_step_up_with_a_method_the_user_lacks(verified):
    make_stale(verified)
    assert_error(step_up(verified, "totp", "123456"), 400, "method_unavailable")
    assert_error(step_up(verified, "recovery", "abcde-fghjk"), 400, "method_unavailable")


def test_a_passwordless_session_cannot_step_up(client, user, phone, outbox, clock):
    secret = add_totp(user)
    clock.shift(30)
    sent = api_post(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"}).json()
    code = outbox[-1].code
    assert api_post(client, f"challenges/{sent['id']}/verify/", {"code": code}).status_code == 200
    outbox.clear()
    assert_error(step_up(client, "totp", totp_code(secret)), 403, "second_factor_required")
    assert_error(api_post(client, "step-up/challenge/"), 403, "second_factor_required")
    assert outbox == []
    assert_error(api_post(client, "recovery-codes/"), 403, "second_factor_required")
    assert_error(api_post(client, "totp/"), 403, "second_factor_required")
    assert DEVICE_ID_SESSION_KEY not in client.session


def test_wrong_step_up_codes_count_toward_the_shared_lockout(
    verified, user, phone, outbox, clock, caplog
):
    caplog.set_level(logging.DEBUG)
    secret = add_totp(user)
    make_stale(verified)
    threshold = app_settings.LOCKOUT_THRESHOLD
    tried = set()
    for _ in range(threshold):
        clock.shift(30)
        guess = wrong_totp(secret)
        tried.add(guess)
        response = step_up(verified, "totp", guess)
        assert_error(response, 400, "incorrect_code")
        assert guess not in response.content.decode()
    clock.shift(30)
    right = totp_code(secret)
    assert_error(step_up(verified, "totp", right), 429, "verification_locked")
    # The phone's codes are locked too: no login code is sent.
    outbox.clear()
    # (The phone is the default method here: it proved the last login.)
    assert methods.user_methods(user)[0] == "phone"
    assert_error(login(Client()), 429, "verification_locked")
    assert outbox == []
    assert_error(api_post(verified, "step-up/challenge/"), 429, "verification_locked")
    for code in [*tried, right, secret]:
        assert code not in caplog.text


# ---------------------------------------------------------- recovery codes


def test_new_recovery_codes_replace_the_old_ones(verified, user, phone):
    first = api_post(verified, "recovery-codes/")
    assert first.status_code == 201 and "no-store" in first["Cache-Control"]
    old = first.json()["codes"]
    second = api_post(verified, "recovery-codes/").json()["codes"]
    assert len(second) == app_settings.RECOVERY_CODE_COUNT
    assert not set(old) & set(second)
    assert verified.get(API + "recovery-codes/").json() == {"left": len(second)}
    make_stale(verified)
    assert_error(step_up(verified, "recovery", old[0]), 400, "incorrect_code")
    assert step_up(verified, "recovery", second[0]).status_code == 200


def test_recovery_codes_need_another_method_first(client, user):
    # Codes alone would be the account's only second factor.
    client.force_login(user)
    assert_error(api_post(client, "recovery-codes/"), 400, "method_unavailable")
    assert not RecoveryCode.objects.exists()
    assert client.get(API + "recovery-codes/").json() == {"left": 0}


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "path, payload",
    [
        ("totp/confirm/", {"code": 123456}),
        ("totp/confirm/", {"code": None}),
        ("totp/confirm/", {"code": ["123456"]}),
        ("totp/confirm/", {"code": "123456", "id": "first"}),
        ("totp/confirm/", {"code": "123456", "id": True}),
        ("totp/confirm/", {"code": "123456", "id": 0}),
        ("totp/confirm/", {}),
        ("totp/confirm/", []),
        ("totp/confirm/", "123456"),
        ("step-up/", {"method": "pager", "code": "123456"}),
        ("step-up/", {"method": 1, "code": "123456"}),
        ("step-up/", {"method": ["totp"], "code": "123456"}),
        ("step-up/", {"method": "totp", "code": {"a": 1}}),
        ("step-up/", {"method": "phone", "code": "123456", "challenge": 5}),
        ("step-up/", {"method": "phone", "code": "123456", "challenge": False}),
        ("step-up/", {"method": "phone", "code": "123456", "challenge": "x" * 40}),
        ("step-up/", {"method": "totp", "code": "9" * 33}),
        ("step-up/", None),
        ("step-up/challenge/", {"channel": "pigeon"}),
        ("step-up/challenge/", {"channel": 7}),
        ("step-up/challenge/", [1, 2]),
    ],
)
def test_bad_json_types_are_400_invalid(verified, path, payload):
    response = verified.post(API + path, json.dumps(payload), content_type="application/json")
    error = assert_error(response, 400, "invalid")
    for echoed in ["pigeon", "first", "pager", "x" * 40, "9" * 33]:
        assert echoed not in response.content.decode()
    assert error["fields"]


@pytest.mark.parametrize("path", ["totp/confirm/", "step-up/", "step-up/challenge/"])
def test_malformed_json_is_parse_error(verified, path):
    response = verified.post(API + path, '{"code": "1', content_type="application/json")
    assert_error(response, 400, "parse_error")


@pytest.mark.parametrize("path", ["totp/confirm/", "step-up/"])
def test_form_bodies_are_refused(verified, path):
    response = verified.post(API + path, {"code": "123456", "method": "totp"})
    assert_error(response, 415, "unsupported_media_type")


def test_codes_of_the_wrong_shape_are_invalid_code_and_not_counted(verified, user, phone, clock):
    secret = add_totp(user)
    make_stale(verified)
    for _ in range(app_settings.LOCKOUT_THRESHOLD + 2):
        assert_error(step_up(verified, "totp", "12ab56"), 400, "invalid_code")
        assert_error(step_up(verified, "recovery", "0000"), 400, "invalid_code")
    clock.shift(30)
    assert step_up(verified, "totp", totp_code(secret)).status_code == 200


@pytest.mark.parametrize("value", [0, 1, "true", "yes", None])
def test_remember_takes_only_a_json_boolean(client, value):
    answer = client.post(
        "/api/2fa/login/verify/",
        {"code": "123456", "remember": value},
        content_type="application/json",
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid"
    assert "remember" in answer.json()["error"]["fields"]
