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

import pytest

from django.core import mail
from django.test import Client
from django.utils.log import AdminEmailHandler
from django.views.debug import ExceptionReporter

from django_sms2fa import codes, login_flows
from django_sms2fa.exceptions import Sms2faConfigurationError
from django_sms2fa.models import Challenge, PhoneDevice
from django_sms2fa.providers.locmem import LocmemProvider

from .api_support import API

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
    fail_in(monkeypatch, "django_sms2fa.login_flows.start_second_factor")
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
    fail_in(monkeypatch, "django_sms2fa.login_flows.start_second_factor")
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
