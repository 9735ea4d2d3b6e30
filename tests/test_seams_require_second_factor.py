"""``REQUIRE_SECOND_FACTOR`` is enforced, not advisory: attack tests.

With it on, a user without a confirmed phone who logs in with a password
reaches only the app's own pages and API (to enrol a phone) and logout. Any
other view: HTML redirects to the phone-add page, JSON answers 403
``second_factor_required`` in the error shape. Once a phone is confirmed, the
site opens. With it off, nothing changes.

This module is its own URLconf (``pytest.mark.urls``).
"""

from __future__ import annotations

import pytest
from rest_framework.response import Response
from rest_framework.views import APIView

from django.contrib.auth import SESSION_KEY
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LogoutView
from django.http import HttpResponse
from django.urls import include, path

from django_sms2fa.middleware import allowed_without_phone

from .api_support import assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PHONE = "+46701234567"
PASSWORD = "correct horse"  # the `user` fixture's
PHONE_ADD = "/2fa/phones/add/"


@login_required
def private(request):
    return HttpResponse("private")


@allowed_without_phone
@login_required
def help_page(request):
    return HttpResponse("help")


class PrivateAPI(APIView):
    def get(self, request):
        return Response({"private": True})


urlpatterns = [
    path("private/", private),
    path("help/", help_page),
    path("private-api/", PrivateAPI.as_view()),
    path("logout/", LogoutView.as_view(next_page="/private/")),
    path("api/2fa/", include("django_sms2fa.api.urls")),
    path("2fa/", include("django_sms2fa.urls")),
]


@pytest.fixture
def required(sms2fa_settings):
    sms2fa_settings(REQUIRE_SECOND_FACTOR=True)


def password_login(client):
    answer = client.post("/2fa/login/", {"username": "alice", "password": PASSWORD})
    assert answer.status_code == 302
    assert answer["Location"].startswith(PHONE_ADD)
    assert client.session[SESSION_KEY]


def test_a_phoneless_session_is_sent_to_enrol(client, user, required):
    password_login(client)
    page = client.get("/private/")
    assert page.status_code == 302
    assert page["Location"] == f"{PHONE_ADD}?next=%2Fprivate%2F"
    api = client.get("/private-api/", HTTP_ACCEPT="application/json")
    assert_error(api, 403, "second_factor_required")
    api = client.get("/private-api/")  # a DRF view answers JSON whatever Accept says
    assert_error(api, 403, "second_factor_required")


def test_a_phoneless_session_reaches_enrolment_and_logout(client, user, required, outbox):
    password_login(client)
    assert client.get("/2fa/phones/").status_code == 200
    assert client.get(PHONE_ADD).status_code == 200
    assert client.get("/api/2fa/devices/").status_code == 200
    assert client.get("/help/").status_code == 200  # allowed_without_phone

    enrolled = client.post(
        "/api/2fa/devices/", {"phone": PHONE}, content_type="application/json"
    ).json()
    confirmed = client.post(
        f"/api/2fa/devices/{enrolled['device']['id']}/confirm/",
        {"challenge": enrolled["challenge"]["id"], "code": outbox[-1].code},
        content_type="application/json",
    )
    assert confirmed.status_code == 200
    # Enrolled (and verified with the new phone): the site opens.
    assert client.get("/private/").status_code == 200
    assert client.get("/private-api/").status_code == 200

    assert client.post("/logout/").status_code == 302
    assert SESSION_KEY not in client.session


def test_logout_works_before_enrolling(client, user, required):
    password_login(client)
    assert client.post("/logout/").status_code == 302
    assert SESSION_KEY not in client.session


def test_a_session_made_elsewhere_is_held_too(client, user, required):
    """Not only the app's login: any password login (here force_login)."""
    client.force_login(user)
    assert client.get("/private/").status_code == 302
    assert_error(client.get("/private-api/"), 403, "second_factor_required")


def test_control_off_the_phoneless_session_is_let_through(client, user):
    client.force_login(user)
    assert client.get("/private/").status_code == 200
    assert client.get("/private-api/").status_code == 200
