"""PhoneDevice as a django-otp device: OTPMiddleware, otp_required, django_otp.login
and OTPAdminSite work with it unchanged."""

from __future__ import annotations

import re

import pytest
from django_otp import DEVICE_ID_SESSION_KEY, devices_for_user, match_token
from django_otp.forms import OTPTokenForm

from django.urls import reverse

from django_sms2fa.models import Challenge, ChallengeStatus, PhoneDevice, Purpose

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        username="carol", password="hunter2-but-longer", is_staff=True, is_superuser=True
    )


@pytest.fixture
def device(staff):
    return PhoneDevice.objects.create(
        user=staff, number="+46701234567", name="Work phone", confirmed=True
    )


def test_generate_challenge_sends_a_login_code(device, outbox):
    message = device.generate_challenge()
    assert "+46" in message and "4567" not in message  # masked
    assert len(outbox) == 1
    challenge = Challenge.objects.get()
    assert (challenge.device_id, challenge.user_id, challenge.purpose) == (
        device.pk,
        device.user_id,
        Purpose.LOGIN,
    )


def test_verify_token_accepts_the_newest_code_once(device, outbox):
    device.generate_challenge()
    device.generate_challenge()
    first, second = outbox[0].code, outbox[1].code
    if first != second:
        assert device.verify_token(first) is False  # only the newest counts
    assert device.verify_token(second) is True
    assert device.verify_token(second) is False  # single use
    device.refresh_from_db()
    assert device.last_used_at is not None


def test_verify_token_refuses_garbage_without_crashing(device, outbox):
    device.generate_challenge()
    for token in ["", None, "１２３４５６", "x" * 1000, 123456]:
        assert device.verify_token(token) is False
    assert Challenge.objects.get().attempts == 0
    assert device.verify_token("999999" if outbox[0].code != "999999" else "000000") is False
    assert Challenge.objects.get().attempts == 1


def test_verify_token_without_a_challenge_is_false(device):
    assert device.verify_token("123456") is False


def test_devices_for_user_and_match_token(device, outbox, staff):
    assert list(devices_for_user(staff)) == [device]
    device.generate_challenge()
    assert match_token(staff, outbox[0].code) == device


def test_otp_token_form(device, outbox, staff, django_capture_on_commit_callbacks):
    """django-otp's own form, which wraps generate_challenge() in a transaction."""
    form = OTPTokenForm(staff, data={"otp_device": device.persistent_id, "otp_challenge": "1"})
    with django_capture_on_commit_callbacks(execute=True):
        assert not form.is_valid()
    assert "sent by SMS" in str(form.errors)
    assert len(outbox) == 1 and outbox[0].in_transaction is False
    form = OTPTokenForm(
        staff, data={"otp_device": device.persistent_id, "otp_token": outbox[0].code}
    )
    assert form.is_valid(), form.errors
    assert staff.otp_device == device


def test_otp_admin_site_login_with_a_phone_device(
    client, device, outbox, staff, django_capture_on_commit_callbacks
):
    login_url = reverse("otpadmin:login")
    credentials = {"username": "carol", "password": "hunter2-but-longer"}

    # Step 1: password plus "get challenge" sends the SMS; not logged in yet.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            login_url,
            {**credentials, "otp_device": device.persistent_id, "otp_challenge": "1"},
        )
    assert response.status_code == 200
    assert len(outbox) == 1
    assert "_auth_user_id" not in client.session
    code = outbox[0].code
    assert code not in response.content.decode()

    # A wrong code keeps the user out.
    wrong = "".join(str((int(d) + 1) % 10) for d in code)
    response = client.post(
        login_url, {**credentials, "otp_device": device.persistent_id, "otp_token": wrong}
    )
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session

    # Step 2: the right code logs in with the device verified.
    response = client.post(
        login_url,
        {
            **credentials,
            "otp_device": device.persistent_id,
            "otp_token": code,
            "next": reverse("otpadmin:index"),
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("otpadmin:index")
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.get(reverse("otpadmin:index")).status_code == 200
    assert Challenge.objects.get().status == ChallengeStatus.VERIFIED


def test_otp_required_needs_a_verified_phone(client, device, outbox, staff):
    protected = reverse("protected")
    client.force_login(staff)
    response = client.get(protected)
    assert response.status_code == 302  # logged in, but no second factor

    from django_otp import login as otp_login

    from django.test import RequestFactory

    device.generate_challenge()
    assert device.verify_token(outbox[0].code)
    # django_otp.login marks the session; do it through a real request cycle.
    request = RequestFactory().get("/")
    request.session = client.session
    request.user = staff
    otp_login(request, device)
    request.session.save()
    response = client.get(protected)
    assert response.status_code == 200
    assert re.search(r"hello carol", response.content.decode())
