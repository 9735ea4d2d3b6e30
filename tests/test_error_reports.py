"""A 500 inside a view that receives a password or a code: the error report
shows neither.

On an unhandled exception Django logs the request to ``django.request`` and
``AdminEmailHandler`` mails the report (text, and HTML when asked) built by
``ExceptionReporter``; with ``DEBUG = False`` its filter hides the POST
parameters a view marks with ``sensitive_post_parameters`` and the local
variables a function marks with ``sensitive_variables`` — and nothing else.

Each test below makes one view fail deep inside, where the secret is live (the
password after ``authenticate``; the code while it is being hashed for the
comparison), and reads every report that failure produced: the mails (text and
HTML) and the reports rendered from the logged record (text and HTML). The
password, the code, the challenge's stored hash and the raw JSON body appear
in none of them, escaped or not.
"""

from __future__ import annotations

import html
import json
import logging
import time

import pytest
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from django.core import mail
from django.test import Client
from django.utils.log import AdminEmailHandler
from django.views.debug import ExceptionReporter

from django_sms2fa import codes, login_flows, methods
from django_sms2fa.exceptions import Sms2faConfigurationError
from django_sms2fa.models import Challenge, PhoneDevice, RecoveryCode
from django_sms2fa.providers.locmem import LocmemProvider
from django_sms2fa.session_keys import VERIFIED_AT_KEY

from .api_support import API
from .methods_support import totp_code

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
NEW_PHONE = "+46709876543"
# Long and distinctive: it cannot turn up in a report by chance.
PASSWORD = "zebra-quartz-hunter2-Tr0ub4dor"


class Boom(Exception):
    """The unexpected failure (a cache or database gone away)."""


@pytest.fixture
def victim(django_user_model):
    return django_user_model.objects.create_user(username="victim", password=PASSWORD)


@pytest.fixture
def phone(victim):
    return PhoneDevice.objects.create(user=victim, number=PHONE, confirmed=True, name="Phone")


@pytest.fixture(autouse=True)
def long_codes(sms2fa_settings):
    # Ten digits: a six-digit code could occur in a report by chance (an
    # address, a port); ten cannot, so a match is the code.
    sms2fa_settings(CODE_LENGTH=10)


@pytest.fixture
def reports(settings):
    """Every report of an unhandled exception: (kind, text).

    ADMINS set: Django's own ``mail_admins`` handler (text) mails, and one with
    ``include_html=True`` is added; the logged records are rendered too.
    """
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.DEBUG = False
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("django.request")
    handlers = [AdminEmailHandler(include_html=True), Keep()]
    for handler in handlers:
        logger.addHandler(handler)
    mail.outbox = []

    def collect() -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for message in mail.outbox:
            found.append(("mail subject", message.subject))
            found.append(("mail text", message.body))
            for content, _mimetype in getattr(message, "alternatives", []):
                found.append(("mail html", content))
        for record in records:
            if not record.exc_info:
                continue
            request = getattr(record, "request", None)
            reporter = ExceptionReporter(request, *record.exc_info)
            found.append(("report text", reporter.get_traceback_text()))
            found.append(("report html", reporter.get_traceback_html()))
        return found

    yield collect
    for handler in handlers:
        logger.removeHandler(handler)


def fail_in(monkeypatch, target: str) -> None:
    """Make ``target`` (``module.attribute``) raise :class:`Boom`."""
    module, name = target.rsplit(".", 1)

    def broken(*args, **kwargs):
        raise Boom("the cache is down")

    monkeypatch.setattr(f"{module}.{name}", broken)


def hash_fails(monkeypatch) -> None:
    # The innermost step that holds the code: hashing it for the comparison.
    fail_in(monkeypatch, "django_sms2fa.codes.salted_hmac")


def assert_no_secret(response, collect, *secrets: str) -> None:
    assert response.status_code == 500, response.content[:300]
    found = collect()
    kinds = {kind for kind, _text in found}
    # Proof the reports exist and are about this failure (no vacuous pass).
    assert {"mail text", "mail html", "report text", "report html"} <= kinds, kinds
    assert any(
        "Boom" in text or "Sms2faConfigurationError" in text
        for kind, text in found
        if kind == "mail text"
    )
    leaks = sorted(
        {
            (kind, secret)
            for kind, text in found
            for secret in secrets
            for form in {secret, html.escape(secret), json.dumps(secret)}
            if form in text
        }
    )
    assert leaks == []


def secrets_of(code: str, challenge_id=None) -> list[str]:
    found = [code, PASSWORD]
    if challenge_id is not None:
        code_hash = Challenge.objects.get(pk=challenge_id).code_hash
        if code_hash:
            found.append(code_hash)
    return found


def client() -> Client:
    return Client(raise_request_exception=False)


# ----------------------------------------------------------------- HTML pages


def test_page_login_password(phone, reports, monkeypatch):
    browser = client()
    # What the login calls once the password is right (it picks the method).
    fail_in(monkeypatch, "django_sms2fa.login_flows.begin_second_factor")
    response = browser.post("/2fa/login/", {"username": "victim", "password": PASSWORD})
    assert_no_secret(response, reports, PASSWORD)


def test_page_login_code(phone, reports, monkeypatch, outbox):
    browser = client()
    assert (
        browser.post("/2fa/login/", {"username": "victim", "password": PASSWORD}).status_code == 302
    )
    sms = outbox[-1]
    challenge = Challenge.objects.get(phone=PHONE, purpose="login")
    hash_fails(monkeypatch)
    response = browser.post("/2fa/login/code/", {"code": sms.code})
    assert_no_secret(response, reports, *secrets_of(sms.code, challenge.pk))


def test_page_passwordless_code(phone, reports, monkeypatch, outbox):
    browser = client()
    assert browser.post("/2fa/phone-login/", {"phone": PHONE}).status_code == 302
    sms = outbox[-1]
    challenge = Challenge.objects.get(phone=PHONE, purpose="passwordless")
    hash_fails(monkeypatch)
    response = browser.post("/2fa/phone-login/code/", {"code": sms.code})
    assert_no_secret(response, reports, *secrets_of(sms.code, challenge.pk))


def test_page_phone_confirm(victim, reports, monkeypatch, outbox):
    browser = client()
    browser.force_login(victim)
    assert browser.post("/2fa/phones/add/", {"phone": NEW_PHONE}).status_code == 302
    sms = outbox[-1]
    challenge = Challenge.objects.get(phone=NEW_PHONE)
    hash_fails(monkeypatch)
    response = browser.post("/2fa/phones/confirm/", {"code": sms.code})
    assert_no_secret(response, reports, *secrets_of(sms.code, challenge.pk))


# ------------------------------------------------------------------------ API


def post_json(browser: Client, path: str, data: dict):
    return browser.post(API + path, json.dumps(data), content_type="application/json")


def test_api_login_password(phone, reports, monkeypatch):
    browser = client()
    fail_in(monkeypatch, "django_sms2fa.login_flows.begin_second_factor")
    response = post_json(browser, "login/", {"username": "victim", "password": PASSWORD})
    assert_no_secret(response, reports, PASSWORD)


@pytest.mark.parametrize("path", ["/2fa/login/", API + "login/"])
def test_a_failure_inside_djangos_model_backend(phone, reports, monkeypatch, path):
    # Django's authenticate() marks only `credentials`, which un-hides the
    # backend's frames below it: the password reaches them as a MaskedStr.
    fail_in(monkeypatch, "django.contrib.auth.backends.ModelBackend.user_can_authenticate")
    data = {"username": "victim", "password": PASSWORD}
    if path.startswith(API):
        response = client().post(path, json.dumps(data), content_type="application/json")
    else:
        response = client().post(path, data)
    assert_no_secret(response, reports, PASSWORD)


def test_api_login_verify(phone, reports, monkeypatch, outbox):
    browser = client()
    answer = post_json(browser, "login/", {"username": "victim", "password": PASSWORD})
    challenge_id = answer.json()["challenge"]["id"]
    sms = outbox[-1]
    hash_fails(monkeypatch)
    response = post_json(browser, "login/verify/", {"challenge": challenge_id, "code": sms.code})
    assert_no_secret(response, reports, *secrets_of(sms.code, challenge_id))


@pytest.mark.parametrize("purpose", ["verify_phone", "passwordless"])
def test_api_challenge_verify(phone, reports, monkeypatch, outbox, purpose):
    browser = client()
    answer = post_json(browser, "challenges/", {"phone": PHONE, "purpose": purpose})
    assert answer.status_code == 202, answer.content
    challenge_id = answer.json()["id"]
    sms = outbox[-1]
    hash_fails(monkeypatch)
    response = post_json(browser, f"challenges/{challenge_id}/verify/", {"code": sms.code})
    assert_no_secret(response, reports, *secrets_of(sms.code, challenge_id))


def test_api_device_confirm(victim, reports, monkeypatch, outbox):
    browser = client()
    browser.force_login(victim)
    answer = post_json(browser, "devices/", {"phone": NEW_PHONE})
    assert answer.status_code == 202, answer.content
    device_id = answer.json()["device"]["id"]
    challenge_id = answer.json()["challenge"]["id"]
    sms = outbox[-1]
    hash_fails(monkeypatch)
    response = post_json(
        browser, f"devices/{device_id}/confirm/", {"challenge": challenge_id, "code": sms.code}
    )
    assert_no_secret(response, reports, *secrets_of(sms.code, challenge_id))


# ------------------------------------------- authenticator apps, recovery codes
#
# An app's code is live in django-otp's TOTP.verify (called by the app's
# check); a recovery code while it is hashed (codes.salted_hmac, as a phone's).
# The apps here show eight digits: a code that long cannot turn up in a
# report by chance either.


@pytest.fixture
def app(victim):
    return TOTPDevice.objects.create(user=victim, name="App", confirmed=True, digits=8)


def totp_fails(monkeypatch) -> None:
    fail_in(monkeypatch, "django_otp.oath.TOTP.verify")


def app_secrets(device: TOTPDevice) -> list[str]:
    """The app's key, in the forms a user or a report could see it."""
    return [device.key, methods.totp_secret(device)]


def verified_client(victim, device) -> Client:
    """Logged in and verified with ``device``, the step-up window open."""
    browser = client()
    browser.force_login(victim)
    session = browser.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[VERIFIED_AT_KEY] = time.time()
    session.save()
    return browser


def recovery_secrets(victim, code: str) -> list[str]:
    """The code as shown, as typed without its dash, and the stored hashes."""
    hashes = RecoveryCode.objects.filter(device__user=victim).values_list("code_hash", flat=True)
    return [code, code.replace("-", ""), *hashes, PASSWORD]


def pending_app(victim, pk: int) -> TOTPDevice:
    """The app being added, made to show eight digits (see above)."""
    TOTPDevice.objects.filter(pk=pk, user=victim, confirmed=False).update(digits=8)
    return TOTPDevice.objects.get(pk=pk)


def test_api_step_up_with_the_app(phone, app, reports, monkeypatch):
    browser = verified_client(phone.user, phone)
    code = totp_code(app)
    totp_fails(monkeypatch)
    response = post_json(browser, "step-up/", {"method": "totp", "code": code})
    assert_no_secret(response, reports, code, *app_secrets(app))


def test_api_step_up_with_a_recovery_code(phone, reports, monkeypatch):
    code = methods.generate_recovery_codes(phone.user)[0]
    browser = verified_client(phone.user, phone)
    secrets = recovery_secrets(phone.user, code)
    hash_fails(monkeypatch)
    response = post_json(browser, "step-up/", {"method": "recovery", "code": code})
    assert_no_secret(response, reports, *secrets)


def test_api_totp_confirm(phone, reports, monkeypatch):
    browser = verified_client(phone.user, phone)
    started = browser.post(API + "totp/")
    assert started.status_code == 201, started.content
    device = pending_app(phone.user, started.json()["id"])
    code = totp_code(device)
    totp_fails(monkeypatch)
    response = post_json(browser, "totp/confirm/", {"id": device.pk, "code": code})
    assert_no_secret(response, reports, code, *app_secrets(device))


def test_api_login_verify_with_a_recovery_code(phone, reports, monkeypatch):
    code = methods.generate_recovery_codes(phone.user)[0]
    secrets = recovery_secrets(phone.user, code)
    browser = client()
    answer = post_json(browser, "login/", {"username": "victim", "password": PASSWORD})
    assert answer.json()["mfa_required"] is True
    switched = post_json(browser, "login/method/", {"method": "recovery"})
    assert switched.status_code == 200, switched.content
    hash_fails(monkeypatch)
    response = post_json(browser, "login/verify/", {"code": code})
    assert_no_secret(response, reports, *secrets)


def test_page_step_up_with_the_app(phone, app, reports, monkeypatch):
    browser = verified_client(phone.user, phone)
    code = totp_code(app)
    totp_fails(monkeypatch)
    response = browser.post("/2fa/security/confirm/", {"method": "totp", "code": code})
    assert_no_secret(response, reports, code, *app_secrets(app))


def test_page_totp_add(phone, reports, monkeypatch):
    browser = verified_client(phone.user, phone)
    assert browser.get("/2fa/security/app/").status_code == 200
    device = pending_app(phone.user, TOTPDevice.objects.get(user=phone.user).pk)
    code = totp_code(device)
    totp_fails(monkeypatch)
    response = browser.post("/2fa/security/app/", {"code": code})
    assert_no_secret(response, reports, code, *app_secrets(device))


def test_page_login_with_a_recovery_code(phone, reports, monkeypatch):
    code = methods.generate_recovery_codes(phone.user)[0]
    secrets = recovery_secrets(phone.user, code)
    browser = client()
    answer = browser.post("/2fa/login/", {"username": "victim", "password": PASSWORD})
    assert answer.status_code == 302
    assert browser.post("/2fa/login/code/", {"method": "recovery"}).status_code == 302
    hash_fails(monkeypatch)
    response = browser.post("/2fa/login/code/", {"code": code})
    assert_no_secret(response, reports, *secrets)


# ------------------------------------------------- a send that fails loudly

PROVIDER_SECRET = "sk_live_provider-secret-7Hq2Zx"


def send_then_fail(monkeypatch) -> list[str]:
    """The provider builds its request (the code in the text, its key in a
    header), then a broken option read at send time surfaces as a 500."""
    codes_sent: list[str] = []

    def send(self, sms):
        headers = {"Authorization": f"Bearer {PROVIDER_SECRET}"}
        payload = {"to": sms.to, "message": sms.text, "code": sms.code}
        codes_sent.append(sms.code)
        assert headers and payload
        raise Sms2faConfigurationError("the provider's URL option is malformed")

    monkeypatch.setattr(LocmemProvider, "_send", send)
    return codes_sent


def sends_login_page(browser, victim):
    return browser.post("/2fa/login/", {"username": "victim", "password": PASSWORD})


def sends_passwordless_page(browser, victim):
    return browser.post("/2fa/phone-login/", {"phone": PHONE})


def sends_phone_add_page(browser, victim):
    browser.force_login(victim)
    PhoneDevice.objects.filter(user=victim).delete()
    return browser.post("/2fa/phones/add/", {"phone": NEW_PHONE})


def sends_api_login(browser, victim):
    return post_json(browser, "login/", {"username": "victim", "password": PASSWORD})


def sends_api_challenge(browser, victim):
    return post_json(browser, "challenges/", {"phone": NEW_PHONE, "purpose": "verify_phone"})


def sends_api_device(browser, victim):
    browser.force_login(victim)
    PhoneDevice.objects.filter(user=victim).delete()
    return post_json(browser, "devices/", {"phone": NEW_PHONE})


@pytest.mark.parametrize(
    "sends",
    [
        sends_login_page,
        sends_passwordless_page,
        sends_phone_add_page,
        sends_api_login,
        sends_api_challenge,
        sends_api_device,
    ],
    ids=lambda f: f.__name__.removeprefix("sends_"),
)
def test_a_failed_send_shows_no_code_and_no_provider_secret(phone, reports, monkeypatch, sends):
    codes_sent = send_then_fail(monkeypatch)
    response = sends(client(), phone.user)
    assert len(codes_sent) == 1
    assert_no_secret(response, reports, codes_sent[0], PROVIDER_SECRET, PASSWORD)


# ------------------------------------------------------ the delivery webhook


@pytest.mark.urls("tests.test_webhooks")  # the webhooks, mounted as the example site does
def test_webhook_failure_shows_no_webhook_secret(reports, sms2fa_settings, monkeypatch):
    """A 500 while a delivery report is recorded: the secret the provider
    presented (and the one it is compared with) is in no report."""
    secret = "whsec-ip1-webhook-secret-9Rk4"
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "ip1": {
                "BACKEND": "django_sms2fa.providers.ip1.IP1Provider",
                "OPTIONS": {"account_id": "ip1-12345", "api_key": "ip1-api-key"},
            },
        },
        WEBHOOK_SECRETS={"ip1": secret},
    )
    fail_in(monkeypatch, "django_sms2fa.delivery.receive_webhook")
    response = client().post(
        "/webhooks/sms2fa/ip1/",
        json.dumps({"id": "5c613848879973045cf39ac4", "code": 201}),
        content_type="application/json",
        HTTP_X_SMS2FA_SECRET=secret,
    )
    assert_no_secret(response, reports, secret)


# ------------------------------------------------- the flows, called directly


def test_flow_frames_hide_the_code(phone, reports, monkeypatch, outbox):
    """A site's own view (or django-otp's ``verify_token``) calling the flows:
    their frames and those of codes.py hide the code with no marked view above."""
    challenge = login_flows.flows.request_challenge(
        phone=PHONE, purpose="login", user=phone.user, device=phone
    )
    sms = outbox[-1]
    secrets = secrets_of(sms.code, challenge.pk)
    hash_fails(monkeypatch)
    with pytest.raises(Boom) as caught:
        login_flows.finish_second_factor(challenge.pk, sms.code, user=phone.user)
    # From the flow's frame down: this test's own frame holds the secrets.
    reporter = ExceptionReporter(None, caught.type, caught.value, caught.tb.tb_next)
    texts = [reporter.get_traceback_text(), reporter.get_traceback_html()]
    assert all("finish_second_factor" in text and "Boom" in text for text in texts)
    assert [secret for text in texts for secret in secrets if secret in text] == []


def test_flow_send_frames_hide_code_and_provider_secret(phone, monkeypatch, settings):
    """flows.request_challenge called by a site's own code: a send that fails
    loudly shows neither the code nor the provider's key, from the flow down."""
    settings.DEBUG = False
    codes_sent = send_then_fail(monkeypatch)
    with pytest.raises(Sms2faConfigurationError) as caught:
        login_flows.flows.request_challenge(
            phone=PHONE, purpose="login", user=phone.user, device=phone
        )
    reporter = ExceptionReporter(None, caught.type, caught.value, caught.tb.tb_next)
    texts = [reporter.get_traceback_text(), reporter.get_traceback_html()]
    assert all("request_challenge" in text for text in texts)
    secrets = [codes_sent[0], PROVIDER_SECRET]
    assert [secret for text in texts for secret in secrets if secret in text] == []


@pytest.mark.parametrize(
    "call",
    [
        lambda code: codes.clean_submitted_code(code + "x"),
        lambda code: codes.code_matches(code, "0" * 64, challenge_id="c", purpose="p", phone="1"),
        lambda code: codes.hash_code(code, challenge_id="c", purpose="p", phone="1"),
    ],
    ids=["clean_submitted_code", "code_matches", "hash_code"],
)
def test_codes_frames_hide_the_code(monkeypatch, settings, call):
    settings.DEBUG = False
    code = "4815162342"
    hash_fails(monkeypatch)
    try:
        call(code)
    except Exception as exc:  # noqa: BLE001 - any failure: its report is read
        tb = exc.__traceback__
        while tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next  # from the first frame outside this test down
        reporter = ExceptionReporter(None, type(exc), exc, tb)
    else:  # pragma: no cover
        pytest.fail("no failure")
    texts = [reporter.get_traceback_text(), reporter.get_traceback_html()]
    assert all("codes.py" in text for text in texts)
    leaks = [s for text in texts for s in (code, settings.SECRET_KEY) if s in text]
    assert leaks == []
