"""The HTML pages protect themselves, whatever the site's middleware.

An API-first project may drop ``CsrfViewMiddleware`` (and few add
``XFrameOptionsMiddleware``). Django's own ``LoginView`` still refuses a
cross-site form then, because it carries ``csrf_protect``, ``never_cache`` and
``sensitive_post_parameters`` itself; the app's pages carry the same, plus
``xframe_options_deny`` (the phones page has one-click buttons).

Attack: with neither middleware, a cross-site form posted by the visitor's
browser (the visitor's cookies, no CSRF token, a foreign ``Origin``) to every
page that posts answers 403, sends no SMS and changes nothing. Every page,
and every answer a page gives (the 403 included), refuses framing and caching.
"""

from __future__ import annotations

import time
import uuid

import pytest
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from django.test import Client
from django.urls import resolve
from django.utils import timezone

from django_sms2fa import methods
from django_sms2fa.models import Challenge, PhoneDevice, RecoveryCode, RememberedBrowser
from django_sms2fa.session_keys import VERIFIED_AT_KEY

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
ATTACKER_PHONE = "+46709999999"
PASSWORD = "correct horse"  # the `user` fixture's
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
XFRAME = "django.middleware.clickjacking.XFrameOptionsMiddleware"
NEVER_CACHE = {"no-cache", "no-store", "must-revalidate", "private"}
EVIL = "https://evil.example"


@pytest.fixture(autouse=True)
def bare_middleware(settings):
    """A site without the CSRF and framing middleware."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m not in (CSRF, XFRAME)]
    assert CSRF not in settings.MIDDLEWARE


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="Phone")


def attacker_form(victim: Client) -> Client:
    """The visitor's browser, posting a form from another site: it sends the
    visitor's cookies (CSRF cookie included, if any) but knows no token."""
    browser = Client(enforce_csrf_checks=True, HTTP_ORIGIN=EVIL, HTTP_REFERER=EVIL + "/")
    browser.cookies = victim.cookies
    return browser


def assert_protected_headers(response) -> None:
    assert response["X-Frame-Options"] == "DENY", response.status_code
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    assert NEVER_CACHE <= directives, response.get("Cache-Control")


# The states a visitor can be in, each with its pages and the forms posted there.


def anonymous(user, device) -> Client:
    return Client()


def pending_login(user, device) -> Client:
    victim = Client()
    assert (
        victim.post("/2fa/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    )
    return victim


def pending_passwordless(user, device) -> Client:
    victim = Client()
    assert victim.post("/2fa/phone-login/", {"phone": PHONE}).status_code == 302
    return victim


def logged_in(user, device) -> Client:
    victim = Client()
    victim.force_login(user)
    return victim


def enrolling(user, device) -> Client:
    victim = logged_in(user, device)
    device.delete()  # a phone-less user adds one (no second factor needed)
    assert victim.post("/2fa/phones/add/", {"phone": "+46701112233"}).status_code == 302
    return victim


def verified(user, device) -> Client:
    """Logged in with the phone's code just now: the security pages take
    changes without a step-up."""
    victim = logged_in(user, device)
    session = victim.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[VERIFIED_AT_KEY] = time.time()
    session.save()
    return victim


def verified_with_methods(user, device) -> Client:
    """:func:`verified`, for a user with an authenticator app, recovery codes
    and a remembered browser: what the cross-site forms would remove."""
    TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    methods.generate_recovery_codes(user)
    RememberedBrowser.objects.create(
        user=user,
        device_id=device.persistent_id,
        auth_fingerprint="fingerprint",
        created_at=timezone.now(),
        expires_at=timezone.now() + timezone.timedelta(days=30),
    )
    return verified(user, device)


def fill(path: str, device: PhoneDevice) -> str:
    browser = RememberedBrowser.objects.filter(user_id=device.user_id).first()
    return path.format(pk=device.pk, browser=browser.pk if browser else uuid.UUID(int=0))


def sign_in_methods(user) -> list:
    """Everything a security page could add, change or remove."""
    return [
        sorted(PhoneDevice.objects.values_list("pk", "number", "confirmed")),
        sorted(TOTPDevice.objects.values_list("pk", "key", "confirmed")),
        sorted(RecoveryCode.objects.values_list("code_hash", "used_at")),
        sorted(RememberedBrowser.objects.values_list("pk", "revoked_at")),
    ]


CROSS_SITE_POSTS = [
    # (state, path, form): what a foreign page makes the visitor's browser send
    (anonymous, "/2fa/login/", {"username": "alice", "password": PASSWORD}),
    (anonymous, "/2fa/phone-login/", {"phone": ATTACKER_PHONE}),
    (pending_login, "/2fa/login/code/", {"resend": "1"}),
    (pending_login, "/2fa/login/code/", {"code": "000000"}),
    (pending_passwordless, "/2fa/phone-login/code/", {"resend": "1"}),
    (pending_passwordless, "/2fa/phone-login/code/", {"code": "000000"}),
    (logged_in, "/2fa/phones/add/", {"phone": ATTACKER_PHONE}),
    (logged_in, "/2fa/phones/{pk}/change/", {"phone": ATTACKER_PHONE}),
    (logged_in, "/2fa/phones/{pk}/remove/", {}),
    (enrolling, "/2fa/phones/confirm/", {"resend": "1"}),
    (enrolling, "/2fa/phones/confirm/", {"code": "000000"}),
    (verified_with_methods, "/2fa/security/confirm/", {"method": "phone", "send": "1"}),
    (verified_with_methods, "/2fa/security/confirm/", {"method": "totp", "code": "000000"}),
    (verified, "/2fa/security/app/", {"code": "000000"}),
    (verified_with_methods, "/2fa/security/app/remove/", {}),
    (verified_with_methods, "/2fa/security/recovery-codes/", {}),
    (verified_with_methods, "/2fa/security/browsers/{browser}/forget/", {}),
    (verified_with_methods, "/2fa/security/browsers/forget-all/", {}),
    (verified, "/2fa/logout/", {}),
    (pending_login, "/2fa/logout/", {}),
]


@pytest.mark.parametrize(
    "state,path,form",
    CROSS_SITE_POSTS,
    ids=[
        f"{state.__name__}:{path}:{'+'.join(form) or 'post'}"
        for state, path, form in CROSS_SITE_POSTS
    ],
)
def test_cross_site_post_is_refused_without_the_middleware(user, device, outbox, state, path, form):
    victim = state(user, device)
    sent_before = len(outbox)
    challenges_before = Challenge.objects.count()
    methods_before = sign_in_methods(user)
    session_before = dict(victim.session.items())

    response = attacker_form(victim).post(fill(path, device), form)

    assert response.status_code == 403
    assert_protected_headers(response)
    assert len(outbox) == sent_before  # no SMS to anyone
    assert Challenge.objects.count() == challenges_before
    assert sign_in_methods(user) == methods_before
    assert dict(victim.session.items()) == session_before


def test_the_same_forms_work_with_a_token(user, device, outbox):
    """The refusal is CSRF, not a broken page: with the token it goes through."""
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/2fa/phone-login/")
    assert page.status_code == 200
    token = browser.cookies["csrftoken"].value  # set by the page's own csrf_protect
    response = browser.post("/2fa/phone-login/", {"phone": PHONE, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert len(outbox) == 1 and outbox[0].to == PHONE


# The security forms the cross-site posts above would make effective.
EFFECTIVE_POSTS = [
    (state, path, form)
    for state, path, form in CROSS_SITE_POSTS
    if state in (verified, verified_with_methods) and "code" not in form
]


@pytest.mark.parametrize(
    "state,path,form",
    EFFECTIVE_POSTS,
    ids=[f"{state.__name__}:{path}" for state, path, _form in EFFECTIVE_POSTS],
)
def test_the_security_forms_work_with_a_token(user, device, outbox, state, path, form):
    """The refusals above are CSRF, not a session the page would have refused
    anyway: the visitor's own browser, with the token, changes something."""
    victim = state(user, device)
    browser = Client(enforce_csrf_checks=True)
    browser.cookies = victim.cookies
    assert browser.get("/2fa/security/").status_code == 200  # verified: the page itself
    token = browser.cookies["csrftoken"].value
    before = (sign_in_methods(user), len(outbox), dict(browser.session.items()))
    response = browser.post(fill(path, device), {**form, "csrfmiddlewaretoken": token})
    assert response.status_code in (200, 302), response.status_code
    assert (sign_in_methods(user), len(outbox), dict(browser.session.items())) != before


PAGES = [
    # (state, path): every page of django_sms2fa.urls, by GET
    (anonymous, "/2fa/login/"),
    (anonymous, "/2fa/phone-login/"),
    (anonymous, "/2fa/phones/"),  # redirected to the login page: also protected
    (pending_login, "/2fa/login/code/"),
    (pending_passwordless, "/2fa/phone-login/code/"),
    (logged_in, "/2fa/phones/"),
    (logged_in, "/2fa/phones/add/"),
    (logged_in, "/2fa/phones/{pk}/change/"),
    (logged_in, "/2fa/phones/{pk}/remove/"),  # POST only: the 405 too
    (enrolling, "/2fa/phones/confirm/"),
    (anonymous, "/2fa/login/code/"),  # no pending login: the "start again" page
    (anonymous, "/2fa/security/"),  # redirected to the login page
    (verified, "/2fa/security/"),
    (verified, "/2fa/security/confirm/"),
    (verified, "/2fa/security/app/"),
    (verified_with_methods, "/2fa/security/app/remove/"),  # POST only
    (verified, "/2fa/security/recovery-codes/"),
    (verified_with_methods, "/2fa/security/browsers/{browser}/forget/"),  # POST only
    (verified_with_methods, "/2fa/security/browsers/forget-all/"),  # POST only
    (verified, "/2fa/logout/"),
    (pending_login, "/2fa/logout/"),
]


@pytest.mark.parametrize(
    "state,path", PAGES, ids=[f"{state.__name__}:{path}" for state, path in PAGES]
)
def test_every_page_refuses_framing_and_caching(user, device, state, path):
    victim = state(user, device)
    response = victim.get(fill(path, device))
    assert response.status_code in (200, 302, 405, 410), response.status_code
    assert_protected_headers(response)


def test_answers_to_posts_refuse_framing_and_caching(user, device, outbox):
    victim = Client()
    answer = victim.post("/2fa/login/", {"username": "alice", "password": "wrong"})
    assert answer.status_code == 200  # the form again, with its error
    assert_protected_headers(answer)
    answer = victim.post("/2fa/login/", {"username": "alice", "password": PASSWORD})
    assert answer.status_code == 302
    assert_protected_headers(answer)
    answer = victim.post("/2fa/login/code/", {"code": outbox[-1].code})
    assert answer.status_code == 302
    assert_protected_headers(answer)


def test_every_routed_page_is_covered():
    """A page added to urls.py must be added here too: to PAGES, and to
    CROSS_SITE_POSTS when it takes a POST."""
    from django_sms2fa import urls

    routed = {pattern.name for pattern in urls.urlpatterns}
    posting = {p.name for p in urls.urlpatterns if hasattr(p.callback.view_class, "post")}

    def name(path: str) -> str:
        return resolve(path.format(pk=1, browser=uuid.UUID(int=0))).url_name

    assert {name(path) for _state, path in PAGES} == routed
    assert {name(path) for _state, path, _form in CROSS_SITE_POSTS} == posting
    assert {
        "security",
        "step_up",
        "totp_add",
        "totp_remove",
        "recovery_codes",
        "browser_forget",
        "browsers_forget_all",
        "logout",
    } < routed
