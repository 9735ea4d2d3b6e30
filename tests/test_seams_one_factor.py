"""One factor never becomes two: attack tests.

The attacker holds the owner's phone (or reads its SMS) but not the password.
They log in with the phone's code alone (passwordless), then try every way a
Django site offers to turn that one factor into a "verified" session: the
login code of the *same* phone, entered through

* django-otp's own ``LoginView`` (``OTPTokenForm``: ask for a challenge, enter
  the code),
* a third-party view that calls ``django_otp.verify_token`` and
  ``django_otp.login`` (checked inside that same request, too),
* a third-party passwordless login (``authenticate(challenge=, code=)`` then
  ``login()``) that marks the session verified with the phone that logged in,
* ``django_otp.login`` stored in the session behind the app's back,
* this app's own pages and API.

After each, the session must stay unverified: ``is_verified()`` false,
``@otp_required`` closed, ``OTPAdminSite`` closed, and ``devices/`` with
``replaces`` (swapping the owner's phone for the attacker's) answers 403.

The positive controls show the checks can fail: a password plus the code
(this app's login, or django-otp's full form) does give a verified session,
also when it starts from a passwordless one.

This module is its own URLconf (``pytest.mark.urls``).
"""

from __future__ import annotations

import pytest
from django_otp import DEVICE_ID_SESSION_KEY, verify_token
from django_otp import login as otp_login
from django_otp.admin import OTPAdminSite
from django_otp.decorators import otp_required
from django_otp.views import LoginView as OTPLoginView

from django.contrib.auth import authenticate, login
from django.http import HttpResponse, JsonResponse
from django.urls import include, path

from django_sms2fa import flows
from django_sms2fa.models import Challenge, PhoneDevice, Purpose

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PHONE = "+46701234567"
ATTACKER_PHONE = "+46709876543"
PASSWORD = "correct horse"


# ------------------------------------------------------------------ URLconf

seams_admin = OTPAdminSite(name="seams_otpadmin")


class OTPLogin(OTPLoginView):
    """django-otp's LoginView as a site mounts it; an invalid form answers 400
    (the test settings have no ``registration/login.html`` to render)."""

    def form_invalid(self, form):  # noqa: ANN001, ANN201
        return JsonResponse({"errors": form.errors}, status=400)


def whoami(request):
    user = request.user
    return JsonResponse(
        {
            "authenticated": user.is_authenticated,
            "verified": user.is_verified(),
            "username": user.get_username(),
        }
    )


async def async_whoami(request):
    user = await request.auser()
    return JsonResponse({"verified": user.is_verified()})


@otp_required
def otp_protected(request):
    return HttpResponse(f"hello {request.user.get_username()}")


def third_party_challenge(request):
    """A third-party 2FA page: 'send me a code' for the session user's phone."""
    device = PhoneDevice.objects.get(pk=request.POST["device"], user=request.user)
    return JsonResponse({"message": device.generate_challenge()})


def third_party_verify(request):
    """A third-party 2FA page: verify_token + django_otp.login, then act at once."""
    device = PhoneDevice.objects.get(pk=request.POST["device"], user=request.user)
    verified = verify_token(request.user, device.persistent_id, request.POST["token"])
    if verified is not None:
        otp_login(request, verified)
    return JsonResponse(
        {"accepted": verified is not None, "verified_now": request.user.is_verified()}
    )


def third_party_phone_login(request):
    """A third-party passwordless login that also marks the session verified
    with the phone that logged in (a naive integration)."""
    user = authenticate(request, challenge=request.POST["challenge"], code=request.POST["code"])
    if user is None:
        return JsonResponse({"ok": False}, status=400)
    login(request, user)
    device = PhoneDevice.objects.filter(user=user, confirmed=True).first()
    otp_login(request, device)
    return JsonResponse({"ok": True})


urlpatterns = [
    path("whoami/", whoami),
    path("async-whoami/", async_whoami),
    path("otp-protected/", otp_protected),
    path("otp-login/", OTPLogin.as_view()),
    path("third-party/challenge/", third_party_challenge),
    path("third-party/verify/", third_party_verify),
    path("third-party/phone-login/", third_party_phone_login),
    path("otpadmin/", seams_admin.urls),
    path("api/2fa/", include("django_sms2fa.api.urls")),
    path("2fa/", include("django_sms2fa.urls")),
]


# ------------------------------------------------------------------ helpers


@pytest.fixture
def owner(django_user_model):
    # Staff, so that OTPAdminSite would open for a verified session.
    return django_user_model.objects.create_user(
        username="owner", password=PASSWORD, is_staff=True, is_superuser=True
    )


@pytest.fixture
def phone(owner):
    return PhoneDevice.objects.create(user=owner, number=PHONE, name="Phone", confirmed=True)


def api(client, path: str, data: dict | None = None):
    return client.post(f"/api/2fa/{path}", data or {}, content_type="application/json")


def passwordless_login(client, outbox) -> None:
    """Log in with the phone's code alone, through the app's API."""
    created = api(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    assert created.status_code == 202, created.content
    answer = api(client, f"challenges/{created.json()['id']}/verify/", {"code": outbox[-1].code})
    assert answer.status_code == 200, answer.content
    seen = client.get("/whoami/").json()
    assert (seen["authenticated"], seen["verified"]) == (True, False)


def assert_one_factor(client, phone: PhoneDevice) -> None:
    """Every door that needs two factors stays shut, and the owner keeps the phone."""
    seen = client.get("/whoami/").json()
    assert seen["verified"] is False, seen
    assert DEVICE_ID_SESSION_KEY not in client.session
    assert client.get("/otp-protected/").status_code == 302
    admin = client.get("/otpadmin/")
    assert admin.status_code == 302 and "/otpadmin/login/" in admin["Location"]
    swap = api(client, "devices/", {"phone": ATTACKER_PHONE, "replaces": phone.pk})
    assert swap.status_code == 403, swap.content
    assert swap.json()["error"]["code"] in ("second_factor_required", "not_authenticated")
    assert not PhoneDevice.objects.filter(number=ATTACKER_PHONE).exists()
    assert PhoneDevice.objects.filter(pk=phone.pk, confirmed=True).exists()


# ------------------------------------------------------------------ attacks


def test_django_otp_login_view_does_not_verify_a_passwordless_session(
    client, phone, outbox, django_capture_on_commit_callbacks
):
    passwordless_login(client, outbox)
    # OTPTokenForm: ask for a challenge on the same phone...
    with django_capture_on_commit_callbacks(execute=True):
        asked = client.post(
            "/otp-login/", {"otp_device": phone.persistent_id, "otp_challenge": "1"}
        )
    assert asked.status_code == 400  # django-otp shows its message as a form error
    # generate_challenge() sends nothing to a one-factor session...
    assert [sms.purpose for sms in outbox] == [Purpose.PASSWORDLESS]
    # ...but a login code for the phone may be live all the same (sent when
    # someone typed the password elsewhere): it must not count either.
    with django_capture_on_commit_callbacks(execute=True):
        flows.request_challenge(
            phone=phone.number, purpose=Purpose.LOGIN, user=phone.user, device=phone
        )
    code = outbox[-1].code
    assert outbox[-1].purpose == Purpose.LOGIN
    # ...and enter its code.
    client.post("/otp-login/", {"otp_device": phone.persistent_id, "otp_token": code})
    assert_one_factor(client, phone)


def test_third_party_verify_token_and_otp_login_give_nothing(
    client, phone, outbox, django_capture_on_commit_callbacks
):
    passwordless_login(client, outbox)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/third-party/challenge/", {"device": phone.pk})
    assert [sms.purpose for sms in outbox] == [Purpose.PASSWORDLESS]  # nothing sent
    with django_capture_on_commit_callbacks(execute=True):
        flows.request_challenge(
            phone=phone.number, purpose=Purpose.LOGIN, user=phone.user, device=phone
        )
    answer = client.post("/third-party/verify/", {"device": phone.pk, "token": outbox[-1].code})
    # Refused inside the very request, so the view cannot act on it either.
    assert answer.json() == {"accepted": False, "verified_now": False}
    assert_one_factor(client, phone)


def test_a_third_party_passwordless_login_marked_verified_stays_one_factor(client, phone, outbox):
    challenge = api(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"}).json()
    answer = client.post(
        "/third-party/phone-login/", {"challenge": challenge["id"], "code": outbox[-1].code}
    )
    assert answer.json() == {"ok": True}
    assert client.get("/whoami/").json()["authenticated"] is True
    assert_one_factor(client, phone)


def test_a_device_key_planted_in_a_passwordless_session_is_dropped(client, phone, outbox):
    passwordless_login(client, outbox)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = phone.persistent_id  # what django_otp.login stores
    session.save()
    assert client.get("/async-whoami/").json() == {"verified": False}  # async views too
    assert_one_factor(client, phone)


def test_the_apps_own_pages_and_api_refuse_the_swap(client, phone, outbox):
    passwordless_login(client, outbox)
    page = client.post(f"/2fa/phones/{phone.pk}/change/", {"phone": ATTACKER_PHONE})
    assert page.status_code == 403
    removed = client.delete(f"/api/2fa/devices/{phone.pk}/")
    assert removed.status_code == 403
    assert client.post(f"/2fa/phones/{phone.pk}/remove/").status_code == 403
    # A login code asked through the API cannot be verified there either.
    login_code = Challenge.objects.filter(purpose=Purpose.LOGIN).count()
    assert login_code == 0
    assert_one_factor(client, phone)


# ----------------------------------------------------------- positive controls


def test_control_password_and_code_from_a_passwordless_session_verify(client, phone, outbox):
    """The documented way to two factors: log in with password + code (the
    app's own login works from a passwordless session)."""
    passwordless_login(client, outbox)
    started = api(client, "login/", {"username": "owner", "password": PASSWORD})
    assert started.json()["mfa_required"] is True
    done = api(
        client,
        "login/verify/",
        {"challenge": started.json()["challenge"]["id"], "code": outbox[-1].code},
    )
    assert done.status_code == 200, done.content
    assert client.get("/whoami/").json()["verified"] is True
    assert client.get("/otp-protected/").status_code == 200
    assert client.get("/otpadmin/").status_code == 200
    # Now a swap is allowed: the checks of assert_one_factor can fail.
    swap = api(client, "devices/", {"phone": ATTACKER_PHONE, "replaces": phone.pk})
    assert swap.status_code == 202, swap.content


def test_control_django_otp_full_form_verifies_a_password_session(
    client, phone, outbox, django_capture_on_commit_callbacks
):
    """django-otp's LoginView with username + password + code still works:
    the refusal is for passwordless sessions only."""
    credentials = {"username": "owner", "password": PASSWORD, "otp_device": phone.persistent_id}
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/otp-login/", {**credentials, "otp_challenge": "1"})
    done = client.post("/otp-login/", {**credentials, "otp_token": outbox[-1].code})
    assert done.status_code == 302, done.content
    assert client.get("/whoami/").json()["verified"] is True
    assert client.get("/otp-protected/").status_code == 200
