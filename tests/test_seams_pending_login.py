"""A pending login (between the password and the code) dies with what made it:
attack tests.

The story: an attacker knows the old password and holds the phone (or reads
its SMS). They type the password; the owner, alarmed, changes the password.
The code that then arrives must not finish the login. The same for a
deactivated user, any change of the session auth hash, and the phone the code
went to being removed — even when the account has another phone the login
could fall back to. Through the API and the HTML pages alike.
"""

from __future__ import annotations

import pytest

from django.contrib.auth import SESSION_KEY, get_user_model

from django_sms2fa.models import PhoneDevice

from .api_support import api_post

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
SPARE = "+46701112233"
PASSWORD = "correct horse"  # the `user` fixture's


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="Phone", confirmed=True)


def api_password(client):
    answer = api_post(client, "login/", {"username": "alice", "password": PASSWORD})
    assert answer.json()["mfa_required"] is True
    return answer.json()["challenge"]["id"]


def api_code(client, challenge_id, code):
    return api_post(client, "login/verify/", {"challenge": challenge_id, "code": code})


def page_password(client):
    answer = client.post("/2fa/login/", {"username": "alice", "password": PASSWORD})
    assert answer.status_code == 302


def page_code(client, _challenge_id, code):
    return client.post("/2fa/login/code/", {"code": code})


EDGES = {
    "api": (api_password, api_code),
    "pages": (lambda client: page_password(client), page_code),
}


def change_password(user):
    user.set_password("a brand new password")
    user.save()


def deactivate(user):
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)


def change_auth_hash(user, monkeypatch):
    # Anything that changes get_session_auth_hash() (a custom user model may
    # mix more than the password into it) ends the pending login.
    cls = type(user)
    original = cls.get_session_auth_hash
    monkeypatch.setattr(cls, "get_session_auth_hash", lambda self: original(self) + "x")


def remove_the_phone(user):
    # Another phone stays: the login must not fall back to it.
    PhoneDevice.objects.create(user=user, number=SPARE, name="Spare", confirmed=True)
    PhoneDevice.objects.filter(user=user, number=PHONE).delete()


CHANGES = {
    "password change": lambda user, mp: change_password(user),
    "deactivation": lambda user, mp: deactivate(user),
    "auth hash change": change_auth_hash,
    "phone removed": lambda user, mp: remove_the_phone(user),
}


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("change", CHANGES)
def test_the_pending_login_dies(client, user, device, outbox, edge, change, monkeypatch):
    password_step, code_step = EDGES[edge]
    challenge_id = password_step(client)
    code = outbox[-1].code
    CHANGES[change](user, monkeypatch)
    answer = code_step(client, challenge_id, code)
    assert answer.status_code in (404, 410), answer.content
    assert SESSION_KEY not in client.session
    if edge == "api":
        assert answer.json()["error"]["code"] in (
            "login_expired",
            "challenge_not_found",
            "challenge_cancelled",
        )


@pytest.mark.parametrize("edge", EDGES)
def test_control_an_unchanged_pending_login_finishes(client, user, device, outbox, edge):
    password_step, code_step = EDGES[edge]
    challenge_id = password_step(client)
    answer = code_step(client, challenge_id, outbox[-1].code)
    assert answer.status_code in (200, 302), answer.content
    assert client.session[SESSION_KEY] == str(user.pk)


def test_the_pending_login_never_holds_the_hash_in_clear_text_of_the_password(
    client, user, device, outbox
):
    from django_sms2fa.session import PENDING_KEY

    api_password(client)
    pending = client.session[PENDING_KEY]
    assert PASSWORD not in str(pending)
    assert user.password not in str(pending)  # the stored hash is not copied either
