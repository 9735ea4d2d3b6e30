"""django-allauth, end to end: its phone codes arrive through this app's
locmem provider, under this app's limits and audit.

Run by tests/test_integrations.py in a process of its own (these settings)."""

from __future__ import annotations

import pytest

from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client

from django_sms2fa.contrib.allauth.adapter import Sms2faAccountAdapter
from django_sms2fa.models import Message, PhoneDevice, Refusal
from django_sms2fa.providers import locmem

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
OTHER_PHONE = "+46701234568"


@pytest.fixture
def alice():
    user = get_user_model().objects.create_user(username="alice", password="allauth-alice-pw")
    Sms2faAccountAdapter().set_phone(user, PHONE, True)
    locmem.reset()  # the binding's notices, if any
    return user


@pytest.fixture
def one_a_minute(settings):
    settings.SMS2FA = {**settings.SMS2FA, "LIMITS": {"phone": ["1/60s"]}}


def logged_in_as(client: Client):
    return client.session.get("_auth_user_id")


def assert_masked(code: str) -> None:
    assert Message.objects.exists()
    for message in Message.objects.all():
        assert message.challenge_id is None
        assert code not in message.text_masked
        assert "•" * len(code) in message.text_masked


def test_login_by_phone_with_a_code_sent_through_sms2fa(alice):
    client = Client()
    response = client.post("/accounts/login/code/", {"phone": "070-123 45 67"})
    assert response.status_code == 302, response.content
    assert response["Location"].startswith("/accounts/login/code/confirm/")
    [sms] = locmem.outbox
    assert sms.to == PHONE and sms.code in sms.text
    assert logged_in_as(client) is None
    response = client.post("/accounts/login/code/confirm/", {"code": sms.code})
    assert response.status_code == 302 and response["Location"] == "/"
    assert logged_in_as(client) == str(alice.pk)
    assert_masked(sms.code)
    assert Message.objects.get().phone == PHONE


def test_a_wrong_code_does_not_log_in(alice):
    client = Client()
    client.post("/accounts/login/code/", {"phone": PHONE})
    [sms] = locmem.outbox
    wrong = "AAAA-AAAA" if sms.code != "AAAA-AAAA" else "BBBB-BBBB"
    response = client.post("/accounts/login/code/confirm/", {"code": wrong})
    assert response.status_code == 200 and logged_in_as(client) is None


def test_signup_with_a_phone_verified_by_a_code_sent_through_sms2fa():
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {"username": "bob", "phone": PHONE, "password1": "allauth-bob-pw-8271"},
    )
    assert response.status_code == 302, response.content
    assert response["Location"] == "/accounts/phone/verify/"
    bob = get_user_model().objects.get(username="bob")
    assert PhoneDevice.objects.get(user=bob).confirmed is False  # not yet proved
    [sms] = locmem.outbox
    response = client.post("/accounts/phone/verify/", {"code": sms.code})
    assert response.status_code == 302, response.content
    assert logged_in_as(client) == str(bob.pk)
    assert PhoneDevice.objects.get(user=bob, number=PHONE).confirmed is True
    assert_masked(sms.code)


def test_an_unknown_number_gets_no_sms_and_the_same_answer(alice):
    client = Client()
    known = client.post("/accounts/login/code/", {"phone": PHONE})
    unknown = Client().post("/accounts/login/code/", {"phone": OTHER_PHONE})
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert [sms.to for sms in locmem.outbox] == [PHONE]


def test_the_send_limits_refuse_login_codes_alike_for_every_number(alice, one_a_minute):
    for phone in (PHONE, OTHER_PHONE):
        first = Client().post("/accounts/login/code/", {"phone": phone})
        second = Client().post("/accounts/login/code/", {"phone": phone})
        # allauth says "code sent" both times, with an account or without:
        # the refusal must not tell which numbers have one.
        assert first.status_code == second.status_code == 302
    assert [sms.to for sms in locmem.outbox] == [PHONE]
    assert Message.objects.count() == 1
    assert Refusal.objects.filter(reason="rate_limited").count() == 2


def test_a_refused_resend_is_allauths_rate_limit_message(one_a_minute):
    client = Client()
    client.post(
        "/accounts/signup/",
        {"username": "carol", "phone": PHONE, "password1": "allauth-carol-pw-5512"},
    )
    assert len(locmem.outbox) == 1
    response = client.post("/accounts/phone/verify/", {"action": "resend"})
    assert response.status_code == 302
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("too many" in text.lower() for text in texts), texts
    assert len(locmem.outbox) == 1 and Message.objects.count() == 1
    # The code that did arrive still works: allauth kept it.
    response = client.post("/accounts/phone/verify/", {"code": locmem.outbox[0].code})
    assert response.status_code == 302 and logged_in_as(client) is not None


def test_a_refused_first_send_is_allauths_429_page_not_a_500(one_a_minute):
    Client().post(
        "/accounts/signup/",
        {"username": "dave", "phone": PHONE, "password1": "allauth-dave-pw-7301"},
    )
    response = Client().post(
        "/accounts/signup/",
        {"username": "erin", "phone": PHONE, "password1": "allauth-erin-pw-4420"},
    )
    assert response.status_code == 429
    assert len(locmem.outbox) == 1


def test_a_region_this_site_does_not_send_to_is_a_form_error(alice):
    response = Client().post("/accounts/login/code/", {"phone": "+12025550143"})
    assert response.status_code == 200
    assert "cannot be sent to this phone number" in response.content.decode()
    assert locmem.outbox == []


def test_the_phone_storage_is_sms2fas_devices(alice):
    adapter = Sms2faAccountAdapter()
    assert adapter.get_phone(alice) == (PHONE, True)
    assert adapter.get_user_by_phone("070-123 45 67") == alice
    assert adapter.get_user_by_phone(OTHER_PHONE) is None
    assert adapter.get_user_by_phone("garbage") is None
    # allauth's "change phone": the new number, once verified, replaces the old.
    adapter.set_phone(alice, OTHER_PHONE, False)
    assert adapter.get_user_by_phone(OTHER_PHONE) is None  # not proved yet
    adapter.set_phone_verified(alice, OTHER_PHONE)
    assert adapter.get_phone(alice) == (OTHER_PHONE, True)
    assert list(PhoneDevice.objects.filter(user=alice).values_list("number", flat=True)) == [
        OTHER_PHONE
    ]
    assert adapter.get_user_by_phone(PHONE) is None


def test_a_login_with_a_confirmed_phone_keeps_the_other_phones(alice):
    from django_sms2fa import device_flows

    device_flows.bind_verified_phone(alice, OTHER_PHONE)
    Sms2faAccountAdapter().set_phone_verified(alice, PHONE)  # allauth after a login by code
    assert PhoneDevice.objects.filter(user=alice, confirmed=True).count() == 2
