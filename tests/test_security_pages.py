"""The security pages (django_sms2fa.urls, mounted at /2fa/ in tests/urls.py):
the list of sign-in methods, adding an authenticator app, recovery codes,
remembered browsers, and the step-up that every change of a sign-in method
asks for.

Driven with Django's test client, as a browser without JavaScript would.
"""

from __future__ import annotations

import base64
import re
import time
from html.parser import HTMLParser

import pytest
import time_machine
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from django.test import Client
from django.utils import timezone

from django_sms2fa import methods
from django_sms2fa.exceptions import IncorrectCode
from django_sms2fa.methods import BROWSER_COOKIE
from django_sms2fa.models import PhoneDevice, RecoveryCode, RememberedBrowser
from django_sms2fa.session_keys import VERIFIED_AT_KEY

PHONE = "+46701234567"
NEW_PHONE = "+46709876543"
PASSWORD = "correct horse"  # tests/conftest.py's user

LOGIN = "/2fa/login/"
LOGIN_CODE = "/2fa/login/code/"
PASSWORDLESS_URL = "/2fa/phone-login/"
PASSWORDLESS_CODE = "/2fa/phone-login/code/"
PHONES = "/2fa/phones/"
PHONE_ADD = "/2fa/phones/add/"
SECURITY = "/2fa/security/"
STEP_UP = "/2fa/security/confirm/"
TOTP_ADD = "/2fa/security/app/"
TOTP_REMOVE = "/2fa/security/app/remove/"
RECOVERY = "/2fa/security/recovery-codes/"
FORGET_ALL = "/2fa/security/browsers/forget-all/"

AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="Phone")


@pytest.fixture
def app(user):
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def html(response) -> str:
    return response.content.decode()


class Page(HTMLParser):
    """Ids, inputs, labels, and the text of elements by class or id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.classes: dict[str, list[str]] = {}
        self.inputs: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self._open: list[tuple[str, str | None, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input":
            self.inputs.append(attrs)
        if tag == "label" and attrs.get("for"):
            self.labels.add(attrs["for"])
        if tag in ("input", "br", "meta"):
            return
        self._open.append((tag, attrs.get("id"), (attrs.get("class") or "").split()))
        if attrs.get("id"):
            self.ids[attrs["id"]] = ""
        for name in (attrs.get("class") or "").split():
            self.classes.setdefault(name, []).append("")

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data):
        for _tag, ident, classes in self._open:
            if ident:
                self.ids[ident] += data
            for name in classes:
                self.classes[name][-1] += data

    def visible_inputs(self):
        return [i for i in self.inputs if i.get("type") not in ("hidden", "checkbox")]

    def token(self) -> str:
        return next(i for i in self.inputs if i["name"] == "csrfmiddlewaretoken")["value"]


def totp_code(secret: str, *, step_offset: int = 0) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key, step=30, t0=0, digits=6)
    totp.time = time.time() + 30 * step_offset
    return f"{totp.token():06d}"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def app_code(app_device: TOTPDevice, *, step_offset: int = 0) -> str:
    return totp_code(methods.totp_secret(app_device), step_offset=step_offset)


def after_throttle():
    """A few seconds on: django-otp holds an authenticator app back for a
    moment after a wrong code."""
    return time_machine.travel(time.time() + 5, tick=False)


def log_in(client, outbox) -> None:
    """Password and the SMS code: a verified, fresh session."""
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 302
    assert client.post(LOGIN_CODE, {"code": outbox[-1].code}).status_code == 302
    assert client.session.get(DEVICE_ID_SESSION_KEY)


def verified(client, user, device, *, proved_ago: float = 0) -> None:
    """A session logged in and verified with ``device``, which proved a second
    factor ``proved_ago`` seconds ago."""
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[VERIFIED_AT_KEY] = time.time() - proved_ago
    session.save()


def go_stale(client) -> None:
    session = client.session
    session[VERIFIED_AT_KEY] = time.time() - 301  # STEP_UP_WINDOW is 300 s
    session.save()


def step_up_to(path: str) -> str:
    from urllib.parse import urlencode

    return f"{STEP_UP}?{urlencode({'next': path})}"


def shown_codes(response) -> list[str]:
    page = Page(html(response))
    assert "sms2fa-recovery-codes" in page.ids
    return [code.strip() for code in page.classes.get("sms2fa-recovery-code", [])]


# ---------------------------------------------------------------- access


ALL_PAGES = (SECURITY, STEP_UP, TOTP_ADD, RECOVERY)
ALL_POSTS = (
    TOTP_ADD,
    TOTP_REMOVE,
    RECOVERY,
    STEP_UP,
    FORGET_ALL,
    "/2fa/security/browsers/00000000-0000-0000-0000-000000000000/forget/",
)


def test_anonymous_is_sent_to_the_login(client, db):
    for url in ALL_PAGES:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url
    for url in ALL_POSTS:
        response = client.post(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_password_alone_does_not_reach_the_pages(client, user, device, outbox):
    client.post(LOGIN, {"username": "alice", "password": PASSWORD})  # the code not yet
    response = client.get(SECURITY)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_every_page_answers_a_verified_user(client, user, device, outbox, sms2fa_settings):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)
    log_in(client, outbox)
    for url in ALL_PAGES:
        response = client.get(url)
        assert response.status_code == 200, url
        page = Page(html(response))
        for field in page.visible_inputs():
            assert field.get("id") in page.labels, (url, field)
        assert response["Cache-Control"].startswith("max-age=0")
        assert response["X-Frame-Options"] == "DENY"
    page = html(client.get(SECURITY))
    for anchor in ("sms2fa-phones-link", "sms2fa-totp-add", "sms2fa-recovery-make"):
        assert f'id="{anchor}"' in page
    assert "+46•••••••67" in page and PHONE not in page
    assert "Remembered browsers" in page
    # The phones page and the security page link to each other.
    assert f'href="{SECURITY}"' in html(client.get(PHONES))
    assert f'href="{PHONES}"' in page


def test_browsers_section_only_when_remembering_or_remembered(client, user, device, outbox):
    log_in(client, outbox)
    assert "Remembered browsers" not in html(client.get(SECURITY))


# ------------------------------------------------------ authenticator app


def test_enrol_an_app_from_the_page(client, user, device, outbox):
    log_in(client, outbox)
    page = client.get(TOTP_ADD)
    assert page.status_code == 200
    text = html(page)
    assert "<svg" in text and 'id="sms2fa-totp-qr"' in text
    secret = Page(text).ids["sms2fa-totp-secret"].strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    pending = TOTPDevice.objects.get(user=user)
    assert not pending.confirmed and methods.totp_secret(pending) == secret
    # A reload keeps the secret the user may already have scanned.
    assert Page(html(client.get(TOTP_ADD))).ids["sms2fa-totp-secret"].strip() == secret

    response = client.post(TOTP_ADD, {"code": wrong(totp_code(secret))})
    assert response.status_code == 200
    field = next(i for i in Page(html(response)).inputs if i["name"] == "code")
    assert field["aria-invalid"] == "true" and not field.get("value")
    assert not TOTPDevice.objects.get(user=user).confirmed

    with after_throttle():
        response = client.post(TOTP_ADD, {"code": totp_code(secret)})
    # No recovery codes yet: they are made now and shown this once.
    assert response.status_code == 200
    assert "Your authenticator app is set up." in html(response)
    assert len(shown_codes(response)) == 10
    assert TOTPDevice.objects.get(user=user).confirmed
    page = html(client.get(SECURITY))
    assert 'id="sms2fa-totp-remove"' in page and secret not in page


def test_an_app_when_recovery_codes_exist_goes_back_to_the_security_page(
    client, user, device, outbox
):
    methods.generate_recovery_codes(user)
    log_in(client, outbox)
    secret = Page(html(client.get(TOTP_ADD))).ids["sms2fa-totp-secret"].strip()
    response = client.post(TOTP_ADD, {"code": totp_code(secret)})
    assert response.status_code == 302 and response["Location"] == SECURITY
    assert "Your authenticator app is set up." in html(client.get(SECURITY))


def test_a_first_app_for_a_user_without_any_method(client, user):
    client.force_login(user)  # no second factor: nothing to step up from
    secret = Page(html(client.get(TOTP_ADD))).ids["sms2fa-totp-secret"].strip()
    response = client.post(TOTP_ADD, {"code": totp_code(secret)})
    assert len(shown_codes(response)) == 10
    # The session has just proved the app: it stays logged in, verified.
    assert client.session[DEVICE_ID_SESSION_KEY].startswith("otp_totp.totpdevice/")
    assert client.get(SECURITY).status_code == 200


def test_confirming_without_a_started_app_is_refused(client, user, device, outbox):
    log_in(client, outbox)
    response = client.post(TOTP_ADD, {"code": "123456"})
    assert response.status_code == 404
    assert "No authenticator app is being added." in html(response)
    assert not TOTPDevice.objects.filter(user=user).exists()


def test_a_second_app_is_refused(client, user, device, app, outbox):
    log_in(client, outbox)
    response = client.get(TOTP_ADD)
    assert response.status_code == 409
    assert "already set up" in html(response)
    assert TOTPDevice.objects.filter(user=user).count() == 1


def test_remove_the_app(client, user, device, app, outbox, sms2fa_settings):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)
    remembered = methods.remember_browser(user, device)
    assert remembered
    log_in(client, outbox)
    response = client.post(TOTP_REMOVE)
    assert response.status_code == 302 and response["Location"] == SECURITY
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert "The authenticator app was removed." in html(client.get(SECURITY))
    assert not methods.browsers_of(user).exists()  # every remembered browser forgotten


def test_a_user_with_only_an_app_must_use_it_at_login(client, user, app):
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == LOGIN_CODE
    # The password alone logs nobody in.
    assert "_auth_user_id" not in client.session
    assert client.get(SECURITY)["Location"].startswith("/accounts/login/")
    page = client.get(LOGIN_CODE)
    assert "Enter the 6-digit code your authenticator app shows." in html(page)
    response = client.post(LOGIN_CODE, {"code": wrong(app_code(app))})
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    with after_throttle():
        response = client.post(LOGIN_CODE, {"code": app_code(app)})
    assert response.status_code == 302
    assert client.session[DEVICE_ID_SESSION_KEY] == app.persistent_id
    assert client.get(SECURITY).status_code == 200


# -------------------------------------------------------- recovery codes


def test_recovery_codes_are_shown_once_and_new_ones_void_the_old(client, user, device, outbox):
    log_in(client, outbox)
    page = html(client.get(RECOVERY))
    assert "You have 0 unused recovery codes." in page
    response = client.post(RECOVERY)
    assert response.status_code == 200
    first = shown_codes(response)
    assert len(first) == 10 and len(set(first)) == 10
    assert 'id="sms2fa-recovery-saved"' in html(response)
    # Never again: not on the pages, not in the session.
    session_data = str(dict(client.session.items()))
    for url in (RECOVERY, SECURITY):
        text = html(client.get(url))
        assert not any(code in text for code in first), url
    assert not any(code in session_data or code.replace("-", "") in session_data for code in first)
    assert "You have 10 unused recovery codes." in html(client.get(RECOVERY))
    stored = list(RecoveryCode.objects.values_list("code_hash", flat=True))
    assert not any(code.replace("-", "") in h for h in stored for code in first)

    second = shown_codes(client.post(RECOVERY))
    assert len(second) == 10 and not set(first) & set(second)
    with pytest.raises(IncorrectCode):
        methods.use_recovery_code(user, first[0])
    assert methods.use_recovery_code(user, second[0])
    assert methods.recovery_codes_left(user) == 9


def test_the_first_phone_brings_recovery_codes(client, user, outbox):
    client.force_login(user)
    client.post(PHONE_ADD, {"phone": PHONE})
    response = client.post("/2fa/phones/confirm/", {"code": outbox[-1].code})
    assert len(shown_codes(response)) == 10
    assert methods.recovery_codes_left(user) == 10
    # The first method was the session's second factor: no step-up before
    # the next change. A second phone does not make new codes.
    assert client.post(PHONE_ADD, {"phone": NEW_PHONE})["Location"] == "/2fa/phones/confirm/"
    response = client.post("/2fa/phones/confirm/", {"code": outbox[-1].code})
    assert response.status_code == 302 and response["Location"] == PHONES


def test_no_recovery_codes_without_another_method(client, user):
    client.force_login(user)
    response = client.post(RECOVERY)
    assert response.status_code == 400
    assert "Add a phone or an authenticator app first" in html(response)
    assert methods.recovery_codes_left(user) == 0


# ----------------------------------------------------------------- step-up


def test_changes_within_the_window_need_no_step_up(client, user, device, app, outbox):
    log_in(client, outbox)
    assert client.get(PHONE_ADD).status_code == 200
    assert client.post(RECOVERY).status_code == 200
    assert client.post(TOTP_REMOVE)["Location"] == SECURITY
    assert client.get(TOTP_ADD).status_code == 200
    response = client.post(f"/2fa/phones/{device.pk}/remove/")
    assert response.status_code == 302 and response["Location"] == PHONES
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()


@pytest.mark.parametrize(
    ("method", "url", "back"),
    [
        ("post", "phone_remove", PHONES),
        ("get", PHONE_ADD, PHONE_ADD),
        ("post", PHONE_ADD, PHONE_ADD),
        ("get", "phone_change", "phone_change"),
        ("get", TOTP_ADD, TOTP_ADD),
        ("post", TOTP_ADD, TOTP_ADD),
        ("post", TOTP_REMOVE, SECURITY),
        ("post", RECOVERY, RECOVERY),
    ],
)
def test_every_change_needs_a_step_up_after_the_window(
    client, user, device, app, outbox, method, url, back
):
    methods.generate_recovery_codes(user)
    log_in(client, outbox)
    named = {
        "phone_remove": f"/2fa/phones/{device.pk}/remove/",
        "phone_change": f"/2fa/phones/{device.pk}/change/",
    }
    url, back = named.get(url, url), named.get(back, back)
    hashes = set(RecoveryCode.objects.values_list("code_hash", flat=True))
    sent = len(outbox)
    with time_machine.travel(time.time() + 301, tick=False):
        data = {"phone": NEW_PHONE, "code": "123456"} if method == "post" else None
        response = getattr(client, method)(url, data)
        assert response.status_code == 302
        assert response["Location"] == step_up_to(back)
    # Nothing changed, nothing was sent.
    assert PhoneDevice.objects.filter(pk=device.pk, number=PHONE, confirmed=True).exists()
    assert not PhoneDevice.objects.filter(number=NEW_PHONE).exists()
    assert TOTPDevice.objects.filter(pk=app.pk, confirmed=True).exists()
    assert set(RecoveryCode.objects.values_list("code_hash", flat=True)) == hashes
    assert len(outbox) == sent


def test_step_up_with_the_phone_then_the_change(client, user, device, outbox):
    log_in(client, outbox)
    go_stale(client)
    response = client.post(f"/2fa/phones/{device.pk}/remove/")
    assert response["Location"] == step_up_to(PHONES)

    page = client.get(response["Location"])
    assert page.status_code == 200 and 'id="sms2fa-step-up-send"' in html(page)
    assert "+46•••••••67" in html(page)
    sent = len(outbox)
    assert page.status_code == 200 and len(outbox) == sent  # a GET sends nothing
    response = client.post(STEP_UP, {"method": "phone", "send": "1", "next": PHONES})
    assert response.status_code == 302 and len(outbox) == sent + 1
    page = client.get(response["Location"])
    assert "We sent a code by SMS to +46•••••••67." in html(page)
    code = outbox[-1].code
    assert code not in html(page)

    response = client.post(STEP_UP, {"method": "phone", "resend": "1", "next": PHONES})
    assert response.status_code == 302 and len(outbox) == sent + 2
    response = client.post(STEP_UP, {"method": "phone", "code": wrong(outbox[-1].code)})
    assert response.status_code == 200 and "Wrong code" in html(response)
    response = client.post(STEP_UP, {"method": "phone", "code": outbox[-1].code, "next": PHONES})
    assert response.status_code == 302 and response["Location"] == PHONES

    response = client.post(f"/2fa/phones/{device.pk}/remove/")
    assert response.status_code == 302 and response["Location"] == PHONES
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()


def test_step_up_with_the_app_or_a_recovery_code(client, user, device, app, outbox):
    codes = methods.generate_recovery_codes(user)
    log_in(client, outbox)
    go_stale(client)
    page = html(client.get(step_up_to(RECOVERY)))
    assert "Use my authenticator app instead" in page and "Use a recovery code instead" in page

    page = client.get(f"{STEP_UP}?method=totp&next={RECOVERY}")
    assert Page(html(page)).visible_inputs()[0]["name"] == "code"
    response = client.post(STEP_UP, {"method": "totp", "code": app_code(app), "next": RECOVERY})
    assert response.status_code == 302 and response["Location"] == RECOVERY
    new = shown_codes(client.post(RECOVERY))
    assert len(new) == 10

    go_stale(client)
    response = client.post(STEP_UP, {"method": "recovery", "code": codes[0], "next": SECURITY})
    assert response.status_code == 200  # the old codes were replaced just now
    assert "The code is not correct." in html(response) and codes[0] not in html(response)
    response = client.post(STEP_UP, {"method": "recovery", "code": new[0], "next": SECURITY})
    assert response.status_code == 302 and response["Location"] == SECURITY
    assert methods.recovery_codes_left(user) == 9
    assert client.post(TOTP_REMOVE)["Location"] == SECURITY  # fresh again
    assert not TOTPDevice.objects.filter(pk=app.pk).exists()


def test_step_up_goes_only_to_a_safe_next(client, user, device, app, outbox):
    log_in(client, outbox)
    go_stale(client)
    response = client.post(
        STEP_UP,
        {"method": "totp", "code": app_code(app), "next": "https://evil.example/"},
    )
    assert response.status_code == 302 and response["Location"] == SECURITY


def test_step_up_errors_are_pages_not_500s(client, user, device, app, outbox):
    log_in(client, outbox)
    go_stale(client)
    response = client.post(STEP_UP, {"method": "nonsense", "code": "123456"})
    assert response.status_code == 404
    response = client.post(STEP_UP, {"method": "phone", "code": "123456"})  # no code sent
    assert response.status_code == 410 and 'id="sms2fa-step-up-send"' in html(response)
    response = client.post(STEP_UP, {"method": "totp", "code": "12"})
    assert response.status_code == 200 and 'aria-invalid="true"' in html(response)
    assert client.get(f"{STEP_UP}?method=recovery").status_code == 404  # none made


def test_a_passwordless_session_cannot_step_up(client, user, device, app, outbox):
    codes = methods.generate_recovery_codes(user)
    client.post(PASSWORDLESS_URL, {"phone": PHONE})
    client.post(PASSWORDLESS_CODE, {"code": outbox[-1].code})  # one factor only
    assert client.session.get("_auth_user_id")
    response = client.get(STEP_UP)
    assert response.status_code == 403 and 'href="/2fa/login/?next=' in html(response)
    for data in (
        {"method": "totp", "code": app_code(app)},
        {"method": "recovery", "code": codes[0]},
        {"method": "phone", "send": "1"},
    ):
        response = client.post(STEP_UP, data)
        assert response.status_code == 403
    assert not client.session.get(DEVICE_ID_SESSION_KEY)
    assert VERIFIED_AT_KEY not in client.session
    assert methods.recovery_codes_left(user) == 10  # nothing was spent
    # And it cannot change a method either.
    assert client.post(RECOVERY).status_code == 403
    assert client.post(TOTP_REMOVE).status_code == 403
    assert client.get(TOTP_ADD).status_code == 403
    assert TOTPDevice.objects.filter(pk=app.pk).exists()


# ---------------------------------------------------------------- browsers


def remembered_login(client, outbox) -> None:
    client.post(LOGIN, {"username": "alice", "password": PASSWORD}, HTTP_USER_AGENT=AGENT)
    response = client.post(
        LOGIN_CODE, {"code": outbox[-1].code, "remember": "1"}, HTTP_USER_AGENT=AGENT
    )
    assert response.status_code == 302 and client.cookies[BROWSER_COOKIE].value


def test_forget_one_browser(client, user, device, outbox, sms2fa_settings):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)
    remembered_login(client, outbox)
    other = RememberedBrowser.objects.create(
        user=user,
        device_id=device.persistent_id,
        auth_fingerprint="x",
        created_at=timezone.now(),
        expires_at=timezone.now() + timezone.timedelta(days=1),
    )
    browser = RememberedBrowser.objects.get(user_agent=AGENT)
    go_stale(client)  # forgetting needs no step-up
    page = html(client.get(SECURITY))
    assert AGENT in page and f'id="sms2fa-browser-{browser.pk}"' in page
    response = client.post(f"/2fa/security/browsers/{browser.pk}/forget/")
    assert response.status_code == 302 and response["Location"] == SECURITY
    browser.refresh_from_db()
    assert browser.revoked_at is not None
    other.refresh_from_db()
    assert other.revoked_at is None
    assert "The browser was forgotten" in html(client.get(SECURITY))
    # Again, or someone else's: not found.
    assert client.post(f"/2fa/security/browsers/{browser.pk}/forget/").status_code == 404


def test_forget_someone_elses_browser_is_404(client, user, other_user, device, sms2fa_settings):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)
    theirs = RememberedBrowser.objects.create(
        user=other_user,
        device_id="x",
        auth_fingerprint="x",
        created_at=timezone.now(),
        expires_at=timezone.now() + timezone.timedelta(days=1),
    )
    verified(client, user, device)
    assert client.post(f"/2fa/security/browsers/{theirs.pk}/forget/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_forget_all_browsers_deletes_this_ones_cookie(
    client, user, device, outbox, sms2fa_settings
):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)
    remembered_login(client, outbox)
    methods.remember_browser(user, device)
    go_stale(client)
    response = client.post(FORGET_ALL)
    assert response.status_code == 302 and response["Location"] == SECURITY
    assert response.cookies[BROWSER_COOKIE]["max-age"] == 0
    assert not RememberedBrowser.objects.filter(user=user, revoked_at=None).exists()
    assert "2 browsers were forgotten." in html(client.get(SECURITY))
    # The next login asks for a code again.
    client.post("/2fa/logout/")
    sent = len(outbox)
    client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert len(outbox) == sent + 1 and "_auth_user_id" not in client.session


# -------------------------------------------------------------------- CSRF


def test_csrf_is_enforced(user, device, app):
    methods.generate_recovery_codes(user)
    client = Client(enforce_csrf_checks=True)
    verified(client, user, device)
    for url in (RECOVERY, TOTP_REMOVE, FORGET_ALL, STEP_UP, TOTP_ADD):
        assert client.post(url, {"method": "totp", "code": app_code(app)}).status_code == 403, url
    assert TOTPDevice.objects.filter(pk=app.pk).exists()
    token = Page(html(client.get(SECURITY))).token()
    response = client.post(TOTP_REMOVE, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(pk=app.pk).exists()
