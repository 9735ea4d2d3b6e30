"""A session ends with the phone that opened it: attack tests.

The story: a thief has the owner's phone and logs in with its code alone
(passwordless). The owner, from their own session (password + code), replaces
or removes that phone. The thief's session must be logged out on its next
request — through the API, the HTML pages, or a third-party passwordless login.
The same holds when the phone is unconfirmed or renumbered behind the app's
back, and for a session with no record of its phone.

Also shown: a password-and-code (verified) session loses its verification when
its phone is replaced or removed.

This module is its own URLconf (``pytest.mark.urls``).
"""

from __future__ import annotations

import pytest
from django_otp import DEVICE_ID_SESSION_KEY

from django.contrib.auth import SESSION_KEY, authenticate, login
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.urls import include, path

from django_sms2fa.models import PhoneDevice
from django_sms2fa.session_keys import METHOD_KEY, PASSWORDLESS, PHONE_BINDING_KEY

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PHONE = "+46701234567"
SECOND_PHONE = "+46701112233"
NEW_PHONE = "+46709876543"
PASSWORD = "correct horse"
PHONE_BACKEND = "django_sms2fa.backends.PhoneCodeBackend"


def whoami(request):
    user = request.user
    return JsonResponse({"authenticated": user.is_authenticated, "verified": user.is_verified()})


@login_required
def private(request):
    return HttpResponse(f"hello {request.user.get_username()}")


def third_party_phone_login(request):
    user = authenticate(request, challenge=request.POST["challenge"], code=request.POST["code"])
    if user is None:
        return JsonResponse({"ok": False}, status=400)
    login(request, user)
    return JsonResponse({"ok": True})


urlpatterns = [
    path("whoami/", whoami),
    path("private/", private),
    path("third-party/phone-login/", third_party_phone_login),
    path("api/2fa/", include("django_sms2fa.api.urls")),
    path("2fa/", include("django_sms2fa.urls")),
]


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(username="owner", password=PASSWORD)


@pytest.fixture
def phone(owner):
    return PhoneDevice.objects.create(user=owner, number=PHONE, name="Phone", confirmed=True)


def api(client, path: str, data: dict | None = None):
    return client.post(f"/api/2fa/{path}", data or {}, content_type="application/json")


def passwordless_via_api(client, outbox, number: str = PHONE) -> None:
    created = api(client, "challenges/", {"phone": number, "purpose": "passwordless"})
    answer = api(client, f"challenges/{created.json()['id']}/verify/", {"code": outbox[-1].code})
    assert answer.status_code == 200, answer.content


def passwordless_via_pages(client, outbox) -> None:
    client.post("/2fa/phone-login/", {"phone": PHONE})
    answer = client.post("/2fa/phone-login/code/", {"code": outbox[-1].code})
    assert answer.status_code == 302, answer.content


def passwordless_via_third_party(client, outbox) -> None:
    created = api(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    answer = client.post(
        "/third-party/phone-login/", {"challenge": created.json()["id"], "code": outbox[-1].code}
    )
    assert answer.json() == {"ok": True}


def verified_owner_session(client, outbox):
    started = api(client, "login/", {"username": "owner", "password": PASSWORD})
    done = api(
        client,
        "login/verify/",
        {"challenge": started.json()["challenge"]["id"], "code": outbox[-1].code},
    )
    assert done.status_code == 200, done.content
    assert client.get("/whoami/").json() == {"authenticated": True, "verified": True}


def owner_replaces(client, outbox, old: PhoneDevice) -> None:
    enrolled = api(client, "devices/", {"phone": NEW_PHONE, "replaces": old.pk})
    assert enrolled.status_code == 202, enrolled.content
    body = enrolled.json()
    confirmed = api(
        client,
        f"devices/{body['device']['id']}/confirm/",
        {"challenge": body["challenge"]["id"], "code": outbox[-1].code},
    )
    assert confirmed.status_code == 200, confirmed.content


def assert_logged_in(client) -> None:
    assert client.get("/whoami/").json()["authenticated"] is True
    assert client.get("/private/").status_code == 200


def assert_logged_out(client) -> None:
    assert client.get("/whoami/").json() == {"authenticated": False, "verified": False}
    assert client.get("/private/").status_code == 302
    assert SESSION_KEY not in client.session


LOGINS = {
    "api": passwordless_via_api,
    "pages": passwordless_via_pages,
    "third-party": passwordless_via_third_party,
}


@pytest.mark.parametrize("how", LOGINS)
def test_replacing_the_phone_ends_the_passwordless_session(
    client, phone, outbox, how, django_user_model
):
    from django.test import Client

    thief = client
    LOGINS[how](thief, outbox)
    assert_logged_in(thief)

    owner = Client()
    verified_owner_session(owner, outbox)
    owner_replaces(owner, outbox, phone)

    assert_logged_out(thief)
    assert_logged_in(owner)  # the owner's own session goes on, verified with the new phone
    assert owner.get("/whoami/").json()["verified"] is True


@pytest.mark.parametrize("how", LOGINS)
def test_removing_the_phone_ends_the_passwordless_session(client, phone, owner, outbox, how):
    from django.test import Client

    PhoneDevice.objects.create(user=owner, number=SECOND_PHONE, name="Spare", confirmed=True)
    LOGINS[how](client, outbox)
    assert_logged_in(client)

    other = Client()
    started = api(other, "login/", {"username": "owner", "password": PASSWORD})
    api(
        other,
        "login/verify/",
        {"challenge": started.json()["challenge"]["id"], "code": outbox[-1].code},
    )
    assert other.delete(f"/api/2fa/devices/{phone.pk}/").status_code == 204

    assert_logged_out(client)


def test_the_last_phone_gone_ends_the_passwordless_session(client, phone, outbox):
    passwordless_via_api(client, outbox)
    phone.delete()  # e.g. from the admin
    assert_logged_out(client)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"confirmed": False}, id="unconfirmed"),
        pytest.param({"number": NEW_PHONE}, id="renumbered"),
    ],
)
def test_a_changed_phone_ends_the_passwordless_session(client, phone, outbox, change):
    passwordless_via_api(client, outbox)
    PhoneDevice.objects.filter(pk=phone.pk).update(**change)
    assert_logged_out(client)


def test_a_passwordless_session_with_no_record_of_its_phone_is_logged_out(client, owner, phone):
    """A session marked passwordless (or logged in through PhoneCodeBackend)
    that does not say which phone opened it cannot be tied to one: it ends."""
    client.force_login(owner, backend=PHONE_BACKEND)
    session = client.session
    session[METHOD_KEY] = PASSWORDLESS
    session.save()
    assert_logged_out(client)


def test_control_the_passwordless_session_lives_while_its_phone_does(client, phone, outbox):
    passwordless_via_api(client, outbox)
    assert client.session[PHONE_BINDING_KEY] == {"device_id": phone.pk, "number": PHONE}
    for _ in range(3):
        assert_logged_in(client)
    # Another phone of the account changing does not matter.
    PhoneDevice.objects.create(user=phone.user, number=SECOND_PHONE, confirmed=True)
    PhoneDevice.objects.filter(number=SECOND_PHONE).delete()
    assert_logged_in(client)


# ------------------------------------------------- verified sessions (control)


def test_a_verified_session_loses_verification_when_its_phone_is_replaced(client, phone, outbox):
    from django.test import Client

    verified_owner_session(client, outbox)
    other = Client()
    verified_owner_session(other, outbox)
    owner_replaces(other, outbox, phone)
    seen = client.get("/whoami/").json()
    assert seen["verified"] is False
    assert client.get("/private/").status_code == 302  # a phone, unproved: anonymous
    assert DEVICE_ID_SESSION_KEY not in client.session


def test_a_verified_session_loses_verification_when_its_phone_is_removed(client, phone, outbox):
    verified_owner_session(client, outbox)
    phone.delete()
    assert client.get("/whoami/").json()["verified"] is False
    assert DEVICE_ID_SESSION_KEY not in client.session
