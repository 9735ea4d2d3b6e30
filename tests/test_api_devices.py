"""REST contract of devices/: list, enrol, confirm, replace, remove a phone."""

from __future__ import annotations

import base64
import uuid

import pytest
from django_otp import DEVICE_ID_SESSION_KEY

from django.test import Client

from django_sms2fa.adapter import DefaultSms2faAdapter
from django_sms2fa.exceptions import ProviderUnavailable
from django_sms2fa.models import Challenge, PhoneDevice
from django_sms2fa.providers import locmem

from .api_support import API, api_post, assert_error

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
NEW_PHONE = "+46709876543"
THIRD_PHONE = "+46731112233"
PASSWORD = "correct horse"  # the `user` fixture's
DEVICE_FIELDS = {"id", "name", "phone", "confirmed", "created_at", "last_used_at"}
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
ADDED = "A new phone number was added"
REPLACED = "Your phone number was replaced"


class PasswordOnlyAdapter(DefaultSms2faAdapter):
    """A site whose middleware does not demand the phone (to reach the flows' own guard)."""

    def has_second_factor(self, user):
        return False


# ------------------------------------------------------------------ helpers


def enrol(client, phone, **extra):
    return api_post(client, "devices/", {"phone": phone, **extra})


def confirm(client, device_id, challenge_id, code):
    return api_post(
        client, f"devices/{device_id}/confirm/", {"challenge": str(challenge_id), "code": code}
    )


def remove(client, device_id):
    return client.delete(f"{API}devices/{device_id}/")


def wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


def sms_to(outbox, phone):
    return [sms for sms in outbox if sms.to == phone]


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)


@pytest.fixture
def verified(client, user, device, outbox):
    """A client logged in through login/ + login/verify/ (a verified session)."""
    challenge_id = api_post(client, "login/", {"username": "alice", "password": PASSWORD}).json()[
        "challenge"
    ]["id"]
    response = api_post(
        client, "login/verify/", {"challenge": challenge_id, "code": outbox[-1].code}
    )
    assert response.status_code == 200
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    outbox.clear()
    return client


# ---------------------------------------------------------------- anonymous


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "devices/"),
        ("post", "devices/"),
        ("post", "devices/1/confirm/"),
        ("delete", "devices/1/"),
    ],
)
def test_anonymous_is_403_in_the_error_shape(client, method, path):
    response = getattr(client, method)(API + path, {}, content_type="application/json")
    assert_error(response, 403, "not_authenticated")


def test_http_basic_is_not_accepted(user, device):
    # A password alone must not act for a user: the API drops HTTP Basic.
    auth = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    response = Client().get(API + "devices/", HTTP_AUTHORIZATION=auth)
    assert_error(response, 403, "not_authenticated")


def test_http_basic_is_not_accepted_even_without_a_phone(user):
    auth = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    response = Client().get(API + "devices/", HTTP_AUTHORIZATION=auth)
    assert_error(response, 403, "not_authenticated")


def test_a_password_only_session_of_a_user_with_a_phone_is_anonymous(client, user, device):
    # Logged in by another door (force_login, the admin, django's LoginView) without
    # a code: the SecondFactorMiddleware makes the request anonymous.
    client.force_login(user)
    assert client.session["_auth_user_id"] == str(user.pk)
    assert_error(client.get(API + "devices/"), 403, "not_authenticated")
    assert_error(enrol(client, NEW_PHONE), 403, "not_authenticated")
    assert_error(remove(client, device.pk), 403, "not_authenticated")
    assert PhoneDevice.objects.count() == 1


def test_a_logged_in_session_needs_the_csrf_token(user, device, outbox):
    browser = Client(enforce_csrf_checks=True)
    # Logging in is anonymous, so it needs no token.
    body = api_post(browser, "login/", {"username": "alice", "password": PASSWORD}).json()
    code = outbox[-1].code
    response = api_post(
        browser, "login/verify/", {"challenge": body["challenge"]["id"], "code": code}
    )
    assert response.status_code == 200
    extra = PhoneDevice.objects.create(user=user, number=NEW_PHONE, confirmed=True)
    response = remove(browser, extra.pk)
    error = assert_error(response, 403, "permission_denied")
    assert "CSRF" in error["message"]
    assert_error(enrol(browser, THIRD_PHONE), 403, "permission_denied")
    assert PhoneDevice.objects.filter(pk=extra.pk).exists()
    token = "a" * 32
    browser.cookies["csrftoken"] = token
    response = browser.delete(f"{API}devices/{extra.pk}/", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 204


# --------------------------------------------------------------- enrolment


def test_first_enrolment_confirms_and_verifies_the_session(client, user, outbox):
    client.force_login(user)
    response = enrol(client, "070-987 65 43")
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"device", "challenge"}
    assert set(body["device"]) == DEVICE_FIELDS
    assert set(body["challenge"]) == CHALLENGE_FIELDS
    assert body["device"]["confirmed"] is False
    assert body["device"]["phone"] == body["challenge"]["phone"] == "+46•••••••43"
    assert body["challenge"]["purpose"] == "verify_phone"
    assert "709876543" not in response.content.decode()
    assert len(outbox) == 1 and outbox[0].to == NEW_PHONE
    assert DEVICE_ID_SESSION_KEY not in client.session

    response = confirm(client, body["device"]["id"], body["challenge"]["id"], outbox[-1].code)
    assert response.status_code == 200
    confirmed = response.json()
    # The first sign-in method: its recovery codes come with it, shown once.
    assert set(confirmed) == DEVICE_FIELDS | {"recovery_codes"}
    assert len(confirmed["recovery_codes"]) == 10
    assert "no-store" in response["Cache-Control"]
    assert confirmed["confirmed"] is True
    assert confirmed["last_used_at"] is not None
    device = PhoneDevice.objects.get()
    assert device.confirmed and device.number == NEW_PHONE and device.user_id == user.pk
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert len(outbox) == 1  # no other phone to tell
    # The session stays usable now that the user has a second factor.
    assert client.get(API + "devices/").status_code == 200


def test_an_unconfirmed_phone_is_no_second_factor(client, user, outbox):
    client.force_login(user)
    assert enrol(client, NEW_PHONE).status_code == 202
    # Enrolment alone changes nothing: the session is still usable, the user
    # still logs in by password alone.
    assert client.get(API + "devices/").status_code == 200
    response = api_post(Client(), "login/", {"username": "alice", "password": PASSWORD})
    assert response.json()["mfa_required"] is False


def test_a_verified_session_adds_a_second_phone_and_the_first_is_told(
    verified, user, device, outbox
):
    response = enrol(verified, NEW_PHONE)
    assert response.status_code == 202
    body = response.json()
    assert body["challenge"]["purpose"] == "verify_phone"
    new_code = outbox[-1].code
    response = confirm(verified, body["device"]["id"], body["challenge"]["id"], new_code)
    assert response.status_code == 200
    assert response.json()["confirmed"] is True
    notices = sms_to(outbox, PHONE)
    assert len(notices) == 1
    assert ADDED in notices[0].text
    assert notices[0].code == ""
    assert NEW_PHONE not in notices[0].text and "709876543" not in notices[0].text
    assert [sms.purpose for sms in sms_to(outbox, NEW_PHONE)] == ["verify_phone"]
    assert PhoneDevice.objects.filter(user=user, confirmed=True).count() == 2
    assert verified.get(API + "devices/").status_code == 200


def test_replacing_a_phone_retires_it_and_tells_the_old_number(verified, user, device, outbox):
    other = PhoneDevice.objects.create(user=user, number=THIRD_PHONE, name="Work", confirmed=True)
    response = enrol(verified, NEW_PHONE, replaces=device.pk)
    assert response.status_code == 202
    body = response.json()
    assert body["challenge"]["purpose"] == "change_phone"
    # Until the new number proves itself, the old one stays.
    assert PhoneDevice.objects.get(pk=device.pk).confirmed
    response = confirm(verified, body["device"]["id"], body["challenge"]["id"], outbox[-1].code)
    assert response.status_code == 200
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()
    assert set(PhoneDevice.objects.filter(user=user).values_list("number", flat=True)) == {
        NEW_PHONE,
        THIRD_PHONE,
    }
    old_notices = sms_to(outbox, PHONE)
    assert len(old_notices) == 1 and old_notices[0].code == ""
    other_notices = sms_to(outbox, THIRD_PHONE)
    assert len(other_notices) == 1 and ADDED in other_notices[0].text
    new = PhoneDevice.objects.get(number=NEW_PHONE)
    assert new.confirmed and new.replaces_id is None
    assert other.pk != new.pk


def test_the_old_number_is_told_it_was_replaced(verified, user, device, outbox):
    body = enrol(verified, NEW_PHONE, replaces=device.pk).json()
    response = confirm(verified, body["device"]["id"], body["challenge"]["id"], outbox[-1].code)
    assert response.status_code == 200
    old_notices = sms_to(outbox, PHONE)
    assert len(old_notices) == 1
    assert REPLACED in old_notices[0].text
    assert ADDED not in old_notices[0].text


def test_the_session_survives_replacing_the_phone_it_was_verified_with(
    verified, user, device, outbox
):
    body = enrol(verified, NEW_PHONE, replaces=device.pk).json()
    response = confirm(verified, body["device"]["id"], body["challenge"]["id"], outbox[-1].code)
    assert response.status_code == 200
    assert verified.get(API + "devices/").status_code == 200


def test_second_factor_required_default_setup_answers_not_authenticated(client, user, device):
    # A user with a confirmed phone whose session is not verified is anonymous to
    # the API (SecondFactorMiddleware): the answer is 403 not_authenticated.
    client.force_login(user)
    assert_error(enrol(client, NEW_PHONE), 403, "not_authenticated")
    assert PhoneDevice.objects.count() == 1


def test_second_factor_required_when_the_middleware_lets_the_session_through(
    client, user, device, outbox, sms2fa_settings
):
    # With a site adapter that does not count the phone for the middleware,
    # the flows' own guard answers: 403 second_factor_required.
    sms2fa_settings(ADAPTER="tests.test_api_devices.PasswordOnlyAdapter")
    client.force_login(user)
    assert client.get(API + "devices/").status_code == 200
    assert_error(enrol(client, NEW_PHONE), 403, "second_factor_required")
    assert_error(remove(client, device.pk), 403, "second_factor_required")
    assert list(PhoneDevice.objects.values_list("number", flat=True)) == [PHONE]
    assert outbox == []


def test_a_phone_still_being_enrolled_can_be_removed_without_a_second_factor(client, user, outbox):
    # It is not an authenticator yet: dropping it weakens nothing.
    client.force_login(user)
    device_id = enrol(client, NEW_PHONE).json()["device"]["id"]
    assert remove(client, device_id).status_code == 204
    assert not PhoneDevice.objects.filter(pk=device_id).exists()


def test_confirming_with_another_devices_challenge_is_404(client, user, outbox):
    client.force_login(user)
    first = enrol(client, NEW_PHONE).json()
    first_code = outbox[-1].code
    second = enrol(client, THIRD_PHONE).json()
    response = confirm(client, second["device"]["id"], first["challenge"]["id"], first_code)
    assert_error(response, 404, "challenge_not_found")
    assert not PhoneDevice.objects.filter(confirmed=True).exists()
    assert Challenge.objects.get(pk=first["challenge"]["id"]).attempts == 0
    # A stand-alone verify_phone challenge for the same number does not confirm it either.
    loose = api_post(client, "challenges/", {"phone": NEW_PHONE, "purpose": "verify_phone"})
    response = confirm(client, first["device"]["id"], loose.json()["id"], outbox[-1].code)
    assert_error(response, 404, "challenge_not_found")
    # Nor a random id.
    response = confirm(client, first["device"]["id"], uuid.uuid4(), first_code)
    assert_error(response, 404, "challenge_not_found")
    assert (
        confirm(client, first["device"]["id"], first["challenge"]["id"], first_code).status_code
        == 200
    )


def test_confirming_with_a_wrong_code_is_400(client, user, outbox):
    client.force_login(user)
    body = enrol(client, NEW_PHONE).json()
    code = outbox[-1].code
    response = confirm(client, body["device"]["id"], body["challenge"]["id"], wrong(code))
    error = assert_error(response, 400, "incorrect_code")
    assert error["attempts_left"] == 4
    assert not PhoneDevice.objects.get().confirmed
    assert DEVICE_ID_SESSION_KEY not in client.session
    response = confirm(client, body["device"]["id"], body["challenge"]["id"], code)
    assert response.status_code == 200


def test_a_confirmation_cannot_be_replayed(client, user, outbox):
    client.force_login(user)
    body = enrol(client, NEW_PHONE).json()
    code = outbox[-1].code
    assert confirm(client, body["device"]["id"], body["challenge"]["id"], code).status_code == 200
    response = confirm(client, body["device"]["id"], body["challenge"]["id"], code)
    assert_error(response, 410, "challenge_used")


@pytest.mark.parametrize(
    "payload",
    [{}, {"challenge": "nope", "code": "123456"}, {"challenge": str(uuid.uuid4())}],
    ids=["empty", "not a uuid", "no code"],
)
def test_malformed_confirmations_are_400_invalid(client, user, payload):
    client.force_login(user)
    assert_error(api_post(client, "devices/1/confirm/", payload), 400, "invalid")


def test_confirming_another_users_device_is_404(client, user, other_user, outbox):
    stranger = Client()
    stranger.force_login(other_user)
    body = enrol(stranger, NEW_PHONE).json()
    client.force_login(user)
    response = confirm(client, body["device"]["id"], body["challenge"]["id"], outbox[-1].code)
    assert_error(response, 404, "device_not_found")
    assert not PhoneDevice.objects.get().confirmed


def test_the_same_number_twice_is_409(verified, device, outbox):
    assert_error(enrol(verified, "070-123 45 67"), 409, "phone_already_enrolled")
    assert outbox == []
    assert PhoneDevice.objects.count() == 1


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({"phone": "12345"}, 400, "invalid_phone"),
        ({"phone": "x" * 10_000}, 400, "invalid"),
        ({}, 400, "invalid"),
        ({"phone": NEW_PHONE, "replaces": "abc"}, 400, "invalid"),
        ({"phone": NEW_PHONE, "replaces": 0}, 400, "invalid"),
        ({"phone": NEW_PHONE, "replaces": 10**30}, 404, "device_not_found"),
        ({"phone": NEW_PHONE, "replaces": 999_999}, 404, "device_not_found"),
    ],
    ids=[
        "bad phone",
        "10k phone",
        "empty",
        "replaces text",
        "replaces 0",
        "replaces huge",
        "replaces unknown",
    ],
)
def test_bad_enrolments_are_refused(verified, device, outbox, payload, status, code):
    assert_error(api_post(verified, "devices/", payload), status, code)
    assert outbox == []


def test_replacing_someone_elses_or_an_unconfirmed_phone_is_404(verified, user, other_user, outbox):
    foreign = PhoneDevice.objects.create(user=other_user, number=THIRD_PHONE, confirmed=True)
    pending = PhoneDevice.objects.create(user=user, number="+46735554433", confirmed=False)
    for target in (foreign, pending):
        response = enrol(verified, NEW_PHONE, replaces=target.pk)
        assert_error(response, 404, "device_not_found")
    assert outbox == []


def test_an_outage_during_enrolment_is_503(client, user, outbox):
    client.force_login(user)
    locmem.fail_next(ProviderUnavailable("down", provider_text="SECRET"))
    response = enrol(client, NEW_PHONE)
    assert_error(response, 503, "delivery_failed")
    assert "SECRET" not in response.content.decode()


# ------------------------------------------------------------------ removal


def test_removing_in_a_verified_session_is_204(verified, user, device, outbox):
    extra = PhoneDevice.objects.create(user=user, number=NEW_PHONE, confirmed=True)
    response = remove(verified, extra.pk)
    assert response.status_code == 204
    assert response.content == b""
    assert not PhoneDevice.objects.filter(pk=extra.pk).exists()
    assert PhoneDevice.objects.filter(pk=device.pk).exists()


def test_removing_another_users_device_is_404(verified, other_user):
    foreign = PhoneDevice.objects.create(user=other_user, number=NEW_PHONE, confirmed=True)
    assert_error(remove(verified, foreign.pk), 404, "device_not_found")
    assert_error(remove(verified, 999_999), 404, "device_not_found")
    assert_error(remove(verified, 10**30), 404, "device_not_found")  # beyond any integer column
    response = confirm(verified, 10**30, uuid.uuid4(), "123456")
    assert_error(response, 404, "device_not_found")
    assert PhoneDevice.objects.filter(pk=foreign.pk).exists()


# ------------------------------------------------------------------ listing


def test_the_list_holds_only_the_users_own_devices_masked(verified, user, other_user, device):
    PhoneDevice.objects.create(user=other_user, number=THIRD_PHONE, confirmed=True)
    pending = PhoneDevice.objects.create(user=user, number=NEW_PHONE, name="New", confirmed=False)
    response = verified.get(API + "devices/")
    assert response.status_code == 200
    items = response.json()
    assert [item["id"] for item in items] == [device.pk, pending.pk]
    assert all(set(item) == DEVICE_FIELDS for item in items)
    assert [item["phone"] for item in items] == ["+46•••••••67", "+46•••••••43"]
    assert [item["confirmed"] for item in items] == [True, False]
    text = response.content.decode()
    for number in (PHONE, NEW_PHONE, THIRD_PHONE):
        assert number[3:] not in text
