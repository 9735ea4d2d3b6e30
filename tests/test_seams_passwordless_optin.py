"""Passwordless login is opt-in: attack tests.

Off (the default: ``PASSWORDLESS_LOGIN`` False), or on without
``PhoneCodeBackend`` in ``AUTHENTICATION_BACKENDS``, every passwordless door
answers 404 (``passwordless_disabled`` in the API's error shape), sends
nothing, creates no challenge and logs nobody in — also for a passwordless
challenge made while it was on. A passwordless login is never recorded as
another backend (the old fallback to ``AUTHENTICATION_BACKENDS[0]`` made it
pass for a password login). System checks explain a half-done setup.
"""

from __future__ import annotations

import pytest

from django.contrib.auth import SESSION_KEY, authenticate
from django.core import checks
from django.test import RequestFactory, override_settings

from django_sms2fa import checks as sms2fa_checks
from django_sms2fa.conf import Sms2faSettings
from django_sms2fa.exceptions import Sms2faConfigurationError
from django_sms2fa.models import Challenge, ChallengeStatus, PhoneDevice

from .api_support import api_post, assert_error

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
PHONE_BACKEND = "django_sms2fa.backends.PhoneCodeBackend"


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="Phone", confirmed=True)


@pytest.fixture
def off(sms2fa_settings):
    sms2fa_settings(PASSWORDLESS_LOGIN=False)


@pytest.fixture
def no_backend(settings):
    settings.AUTHENTICATION_BACKENDS = [MODEL_BACKEND]


def test_the_default_is_off(settings):
    with override_settings(SMS2FA={}):
        assert Sms2faSettings().PASSWORDLESS_LOGIN is False


@pytest.mark.parametrize("setup", ["off", "no_backend"])
def test_every_passwordless_door_is_closed(client, device, outbox, setup, request):
    request.getfixturevalue(setup)
    answer = api_post(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    assert_error(answer, 404, "passwordless_disabled")
    assert client.get("/2fa/phone-login/").status_code == 404
    assert client.post("/2fa/phone-login/", {"phone": PHONE}).status_code == 404
    assert client.post("/2fa/phone-login/code/", {"code": "123456"}).status_code == 404
    assert outbox == []
    assert not Challenge.objects.exists()
    assert SESSION_KEY not in client.session


@pytest.mark.parametrize("setup", ["off", "no_backend"])
def test_a_challenge_from_when_it_was_on_logs_nobody_in(client, device, outbox, setup, request):
    created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    assert created.status_code == 202
    code, sent = outbox[-1].code, len(outbox)
    request.getfixturevalue(setup)

    resent = api_post(client, f"challenges/{created.json()['id']}/resend/")
    assert_error(resent, 404, "passwordless_disabled")
    verified = api_post(client, f"challenges/{created.json()['id']}/verify/", {"code": code})
    assert_error(verified, 404, "passwordless_disabled")
    assert len(outbox) == sent
    assert SESSION_KEY not in client.session
    by_backend = authenticate(RequestFactory().post("/"), challenge=created.json()["id"], code=code)
    assert by_backend is None
    # Not even an attempt was used: the code would still work if it were on.
    assert Challenge.objects.get().status == ChallengeStatus.PENDING


def test_the_pages_send_nothing_when_off(client, device, outbox, off):
    client.post("/2fa/phone-login/", {"phone": PHONE})
    assert outbox == []


def test_a_passwordless_login_is_never_recorded_as_another_backend(device, outbox, no_backend):
    from django_sms2fa.session import phone_login_backend

    with pytest.raises(Sms2faConfigurationError):
        phone_login_backend()


def test_the_login_flow_itself_still_works_when_on(client, device, outbox):
    """The control: with the setting and the backend, the same doors open."""
    created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    assert created.status_code == 202
    verified = api_post(
        client, f"challenges/{created.json()['id']}/verify/", {"code": outbox[-1].code}
    )
    assert verified.status_code == 200
    assert client.session[SESSION_KEY] == str(device.user_id)
    assert client.session["_auth_user_backend"] == PHONE_BACKEND


# ------------------------------------------------------------------- checks


def _ids() -> set[str]:
    return {message.id for message in sms2fa_checks.check_middleware_and_backends(None)}


def test_check_setting_on_without_the_backend_is_an_error(settings, no_backend):
    assert "sms2fa.E023" in _ids()
    errors = [m for m in sms2fa_checks.check_middleware_and_backends(None) if m.id == "sms2fa.E023"]
    assert errors[0].level == checks.ERROR


def test_check_backend_listed_with_the_setting_off_is_a_warning(off):
    messages = [
        m for m in sms2fa_checks.check_middleware_and_backends(None) if m.id == "sms2fa.W020"
    ]
    assert messages and messages[0].level == checks.WARNING


def test_check_a_complete_setup_and_a_complete_opt_out_are_quiet(settings, sms2fa_settings):
    assert not {"sms2fa.E023", "sms2fa.W020"} & _ids()
    sms2fa_settings(PASSWORDLESS_LOGIN=False)
    settings.AUTHENTICATION_BACKENDS = [MODEL_BACKEND]
    assert not {"sms2fa.E023", "sms2fa.W020"} & _ids()


def test_check_a_wrong_type_is_e009(sms2fa_settings):
    sms2fa_settings(PASSWORDLESS_LOGIN="yes")
    assert "sms2fa.E009" in {m.id for m in sms2fa_checks.check_settings(None)}
