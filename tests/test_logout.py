"""``logout/`` (page) and ``POST logout/`` (API): the session really ends,
also one the middleware shows as anonymous (password given, code not yet),
and another site cannot end it (CSRF)."""

from __future__ import annotations

from importlib import import_module

import pytest

from django.conf import settings as dj_settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.signals import user_logged_out
from django.test import Client

from django_sms2fa.models import PhoneDevice

pytestmark = pytest.mark.django_db

PAGE = "/2fa/logout/"
API = "/api/2fa/logout/"
PHONE = "+46701234567"


def session_exists(key: str) -> bool:
    store = import_module(dj_settings.SESSION_ENGINE).SessionStore
    return store().exists(key)


@pytest.fixture
def with_phone(user):
    """``user`` with a confirmed phone: a password-only session is then shown
    as anonymous by SecondFactorMiddleware."""
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True)
    return user


@pytest.fixture
def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def logged_out():
    seen: list = []

    def receiver(sender, request, user, **kwargs):
        seen.append(user)

    user_logged_out.connect(receiver)
    yield seen
    user_logged_out.disconnect(receiver)


def csrf_token(client: Client) -> str:
    client.get(PAGE)  # the page renders a form: the csrftoken cookie is set
    return client.cookies["csrftoken"].value


# ------------------------------------------------------------------- the page


def test_get_asks_and_does_not_log_out(client, user):
    client.force_login(user)
    response = client.get(PAGE)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'method="post"' in body and 'name="csrfmiddlewaretoken"' in body
    assert SESSION_KEY in client.session


def test_post_logs_out_and_goes_to_the_login_page(client, user, logged_out):
    client.force_login(user)
    key = client.session.session_key
    response = client.post(PAGE)
    assert response.status_code == 302 and response["Location"] == "/2fa/login/"
    assert not session_exists(key) and SESSION_KEY not in client.session
    assert logged_out == [user]
    assert "You are signed out." in client.get(PAGE).content.decode()


def test_logout_redirect_url_and_a_safe_next(client, user, settings):
    settings.LOGOUT_REDIRECT_URL = "/bye/"
    client.force_login(user)
    assert client.post(PAGE)["Location"] == "/bye/"
    client.force_login(user)
    assert client.post(PAGE, {"next": "https://evil.example/"})["Location"] == "/bye/"
    client.force_login(user)
    assert client.post(PAGE, {"next": "/2fa/phones/"})["Location"] == "/2fa/phones/"


def test_a_half_logged_in_session_ends_too(client, with_phone, logged_out):
    client.force_login(with_phone)  # the password step only: no code yet
    key = client.session.session_key
    page = client.get(PAGE)
    assert page.wsgi_request.user.is_anonymous  # SecondFactorMiddleware's view of it
    assert 'method="post"' in page.content.decode()  # still offered: there is a session
    assert client.post(PAGE).status_code == 302
    assert not session_exists(key) and SESSION_KEY not in client.session
    assert logged_out == [with_phone]  # the audit names who it was


def test_the_page_needs_a_csrf_token(csrf_client, user):
    csrf_client.force_login(user)
    key = csrf_client.session.session_key
    assert csrf_client.post(PAGE).status_code == 403
    assert session_exists(key)
    token = csrf_token(csrf_client)
    assert csrf_client.post(PAGE, {"csrfmiddlewaretoken": token}).status_code == 302
    assert not session_exists(key)


# -------------------------------------------------------------------- the API


def test_api_logout_answers_204_and_ends_the_session(client, user, logged_out):
    client.force_login(user)
    key = client.session.session_key
    response = client.post(API, content_type="application/json")
    assert response.status_code == 204 and response.content == b""
    assert not session_exists(key) and SESSION_KEY not in client.session
    assert logged_out == [user]


def test_api_logout_without_a_session_is_204(client):
    assert client.post(API).status_code == 204


@pytest.mark.parametrize("who", ["logged in", "half logged in"])
def test_api_logout_needs_the_csrf_header_for_a_session(csrf_client, user, with_phone, who):
    """DRF checks CSRF for a session it authenticates; the half-logged-in one
    (anonymous to DRF) is checked by the view itself."""
    if who == "logged in":
        PhoneDevice.objects.all().delete()  # no phone: the password alone logs in
    csrf_client.force_login(user)
    key = csrf_client.session.session_key
    refused = csrf_client.post(API, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert session_exists(key)
    wrong = csrf_client.post(API, content_type="application/json", HTTP_X_CSRFTOKEN="x" * 32)
    assert wrong.status_code == 403 and session_exists(key)
    token = csrf_token(csrf_client)
    done = csrf_client.post(API, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert done.status_code == 204
    assert not session_exists(key)


def test_api_logout_ends_a_half_logged_in_session(client, with_phone, logged_out):
    client.force_login(with_phone)
    key = client.session.session_key
    assert client.post(API, content_type="application/json").status_code == 204
    assert not session_exists(key)
    assert logged_out == [with_phone]
    # Nothing of the login is left to complete.
    assert client.get("/api/2fa/devices/").status_code == 403
