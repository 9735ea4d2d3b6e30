"""django-two-factor-auth, end to end: its phone tokens arrive through this
app's locmem provider (Sms2faGateway), under this app's limits and audit.

Run by tests/test_integrations.py in a process of its own (these settings)."""

from __future__ import annotations

import pytest
from two_factor.plugins.phonenumber.models import PhoneDevice as TwoFactorPhone

from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client

from django_sms2fa.models import Message, Refusal
from django_sms2fa.providers import locmem

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
PASSWORD = "two-factor-alice-pw"


@pytest.fixture
def alice():
    return get_user_model().objects.create_user(username="alice", password=PASSWORD)


def phone_of(user, method="sms"):
    return TwoFactorPhone.objects.create(
        user=user, name="default", number=PHONE, method=method, confirmed=True
    )


def password_step(client: Client):
    return client.post(
        "/account/login/",
        {
            "auth-username": "alice",
            "auth-password": PASSWORD,
            "login_view-current_step": "auth",
        },
    )


def token_step(client: Client, token: str):
    return client.post(
        "/account/login/", {"token-otp_token": token, "login_view-current_step": "token"}
    )


def logged_in_as(client: Client):
    return client.session.get("_auth_user_id")


@pytest.mark.parametrize("method", ["sms", "call"])
def test_login_with_a_token_sent_through_sms2fa(alice, method):
    phone_of(alice, method)
    client = Client()
    response = password_step(client)
    assert response.status_code == 200, response.content
    [sent] = locmem.outbox
    assert (sent.to, sent.channel) == (PHONE, method)
    assert sent.code.isdigit() and sent.code in sent.text
    assert logged_in_as(client) is None
    response = token_step(client, sent.code)
    assert response.status_code == 302 and response["Location"] == "/"
    assert logged_in_as(client) == str(alice.pk)
    message = Message.objects.get()
    assert (message.phone, message.channel, message.status) == (PHONE, method, "sent")
    assert message.challenge_id is None
    assert sent.code not in message.text_masked and "•" * 6 in message.text_masked


def test_a_wrong_token_does_not_log_in(alice):
    phone_of(alice)
    client = Client()
    password_step(client)
    [sent] = locmem.outbox
    wrong = f"{(int(sent.code) + 1) % 10**6:06d}"
    response = token_step(client, wrong)
    assert response.status_code == 200 and logged_in_as(client) is None


def test_the_send_limits_hold_and_the_page_does_not_break(alice, settings):
    settings.SMS2FA = {**settings.SMS2FA, "LIMITS": {"phone": ["1/60s"]}}
    phone_of(alice)
    first = Client()
    password_step(first)
    second = Client()
    response = password_step(second)
    # two_factor sends while it renders its page: a refusal is a message on
    # that page, never a server error, and no second SMS goes out.
    assert response.status_code == 200
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["Too many requests. Try again later."]
    assert len(locmem.outbox) == 1 and Message.objects.count() == 1
    assert Refusal.objects.get().reason == "rate_limited"
    # The token that did arrive still logs in (two_factor's TOTP window).
    response = token_step(second, locmem.outbox[0].code)
    assert response.status_code == 302 and logged_in_as(second) == str(alice.pk)


def test_a_call_without_a_provider_that_calls_is_a_message(alice, settings):
    settings.SMS2FA = {
        **settings.SMS2FA,
        "PROVIDERS": {"default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"}},
    }
    phone_of(alice, "call")
    response = password_step(Client())
    assert response.status_code == 200
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["Codes cannot be sent this way to this phone number."]
    assert locmem.outbox == []


def test_two_factors_reverse_accessor_is_its_own(alice):
    """Both apps name their device PhoneDevice; two_factor's backup-phone
    pages read user.phonedevice_set, which must be two_factor's."""
    phone_of(alice)
    assert alice.phonedevice_set.model is TwoFactorPhone
    assert alice.sms2fa_phones.model is not TwoFactorPhone
