"""The HTML pages (django_sms2fa.urls, mounted at /2fa/ in tests/urls.py).

Driven with Django's test client: each page's happy path and error paths,
the session rules (new key, verified only with password and code), the
accessibility contract (labels, aria-invalid/aria-describedby, one-time-code
input), no code in any page, CSRF, the WebOTP line, and the example site's
development outbox.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import time_machine
from django_otp import DEVICE_ID_SESSION_KEY

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_sms2fa import views
from django_sms2fa.exceptions import ProviderUnavailable
from django_sms2fa.models import (
    Challenge,
    ChallengeStatus,
    DeviceAction,
    DeviceEvent,
    Message,
    PhoneDevice,
)
from django_sms2fa.providers import locmem
from django_sms2fa.session import PENDING_KEY
from django_sms2fa.session_keys import METHOD_KEY, PASSWORD_AND_SMS, PASSWORDLESS

PHONE = "+46701234567"
NEW_PHONE = "+46709876543"
PASSWORD = "correct horse"

LOGIN = "/2fa/login/"
LOGIN_CODE = "/2fa/login/code/"
PASSWORDLESS_URL = "/2fa/phone-login/"
PASSWORDLESS_CODE = "/2fa/phone-login/code/"
PHONES = "/2fa/phones/"
PHONE_ADD = "/2fa/phones/add/"
PHONE_CONFIRM = "/2fa/phones/confirm/"

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_project"


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="Phone")


def html(response) -> str:
    return response.content.decode()


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def logged_in_user_id(client) -> str | None:
    return client.session.get("_auth_user_id")


def is_verified(client) -> bool:
    return bool(client.session.get(DEVICE_ID_SESSION_KEY))


def password_step(client, *, next_url: str | None = None):
    data = {"username": "alice", "password": PASSWORD}
    if next_url:
        data["next"] = next_url
    return client.post(LOGIN, data)


def log_in_with_code(client, outbox) -> None:
    """The full password-then-code login; the session ends up verified."""
    assert password_step(client).status_code == 302
    response = client.post(LOGIN_CODE, {"code": outbox[-1].code})
    assert response.status_code == 302
    assert is_verified(client)


class Form(HTMLParser):
    """The inputs, labels and buttons of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.buttons: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self._button: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "input":
            self.inputs.append(attrs)
        elif tag == "label" and attrs.get("for"):
            self.labels.add(attrs["for"])
        elif tag == "button":
            self._button = {**attrs, "text": ""}
            self.buttons.append(self._button)

    def handle_endtag(self, tag):
        if tag == "button":
            self._button = None

    def handle_data(self, data):
        if self._button is not None:
            self._button["text"] = (self._button["text"] or "") + data

    def visible_inputs(self) -> list[dict[str, str | None]]:
        return [i for i in self.inputs if i.get("type") != "hidden"]

    def button(self, text: str) -> dict[str, str | None]:
        found = [b for b in self.buttons if (b["text"] or "").strip().startswith(text)]
        assert len(found) == 1, f"{len(found)} buttons {text!r}"
        return found[0]

    def field(self, name: str) -> dict[str, str | None]:
        (found,) = [i for i in self.inputs if i.get("name") == name]
        return found


def parse(response) -> Form:
    form = Form()
    form.feed(html(response))
    return form


# ------------------------------------------------------- password, then code


def test_password_then_code_logs_in_verified_with_a_new_session_key(client, user, device, outbox):
    page = parse(client.get(LOGIN))
    assert {i["name"] for i in page.visible_inputs()} == {"username", "password"}
    page.button("Log in")

    response = password_step(client, next_url="/protected/")
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN_CODE}?next=%2Fprotected%2F"
    assert logged_in_user_id(client) is None  # nothing logged in between the steps
    assert len(outbox) == 1 and outbox[0].to == PHONE
    key_before = client.session.session_key

    page = parse(client.get(response["Location"]))
    code_input = page.field("code")
    assert code_input["id"] == "id_code"
    assert code_input["autocomplete"] == "one-time-code"
    assert code_input["inputmode"] == "numeric"
    page.button("Verify")
    assert "disabled" not in page.button("Send a new code")  # RESEND_INTERVAL is 0 here

    response = client.post(response["Location"], {"code": outbox[0].code, "next": "/protected/"})
    assert response.status_code == 302 and response["Location"] == "/protected/"
    assert logged_in_user_id(client) == str(user.pk)
    assert client.session.session_key != key_before
    assert is_verified(client)
    assert client.session[METHOD_KEY] == PASSWORD_AND_SMS
    assert PENDING_KEY not in client.session
    assert client.get("/protected/").content == b"hello alice"


def test_a_wrong_password_shows_an_error_and_sends_nothing(client, user, device, outbox):
    response = client.post(LOGIN, {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "The username or password is not correct." in html(response)
    assert 'role="alert"' in html(response)
    assert outbox == [] and logged_in_user_id(client) is None


def test_an_empty_login_form_marks_its_fields(client, db):
    page = parse(client.post(LOGIN, {"username": "", "password": ""}))
    for name in ("username", "password"):
        field = page.field(name)
        assert field["aria-invalid"] == "true"
        assert f"id_{name}_error" in field["aria-describedby"].split()
        assert f"id_{name}_error" in page.ids


def test_a_user_without_a_phone_is_logged_in_by_the_password(client, user, outbox):
    response = password_step(client, next_url="/protected/")
    assert response.status_code == 302 and response["Location"] == "/protected/"
    assert logged_in_user_id(client) == str(user.pk)
    assert not is_verified(client) and outbox == []


def test_require_second_factor_sends_a_user_without_a_phone_to_add_one(
    client, user, sms2fa_settings
):
    sms2fa_settings(REQUIRE_SECOND_FACTOR=True)
    response = password_step(client)
    assert response.status_code == 302 and response["Location"] == PHONE_ADD


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"]
)
def test_an_unsafe_next_is_ignored(client, user, target, settings):
    settings.LOGIN_REDIRECT_URL = "/home/"
    response = password_step(client, next_url=target)
    assert response.status_code == 302 and response["Location"] == "/home/"


def test_a_wrong_code_shows_attempts_left_tied_to_the_field_and_stays_logged_out(
    client, user, device, outbox
):
    password_step(client)
    code = outbox[-1].code
    response = client.post(LOGIN_CODE, {"code": wrong(code)})
    assert response.status_code == 200
    assert "Wrong code. You have 4 attempts left." in html(response)
    page = parse(response)
    field = page.field("code")
    assert field["aria-invalid"] == "true"
    assert "id_code_error" in field["aria-describedby"].split()
    assert "id_code_error" in page.ids
    assert not field.get("value")  # what was typed is not echoed
    assert wrong(code) not in html(response)
    assert logged_in_user_id(client) is None
    assert client.get("/protected/").status_code == 302
    # The right code still works afterwards.
    assert client.post(LOGIN_CODE, {"code": code}).status_code == 302
    assert is_verified(client)


def test_a_non_digit_code_is_refused_without_using_an_attempt(client, user, device, outbox):
    password_step(client)
    response = client.post(LOGIN_CODE, {"code": "abc"})
    assert "Enter the code from the SMS, digits only." in html(response)
    assert Challenge.objects.get().attempts == 0


def test_the_last_wrong_code_says_start_again(client, user, device, outbox):
    password_step(client)
    code = outbox[-1].code
    for _ in range(4):
        client.post(LOGIN_CODE, {"code": wrong(code)})
    response = client.post(LOGIN_CODE, {"code": wrong(code)})
    assert response.status_code == 410
    assert "no attempts are left" in html(response)
    assert f'href="{LOGIN}"' in html(response)
    assert 'name="code"' not in html(response)  # nothing left to type a code into
    response = client.post(LOGIN_CODE, {"code": code})
    assert response.status_code == 410
    assert "Too many wrong codes. Request a new one." in html(response)
    assert logged_in_user_id(client) is None


def test_resend_is_disabled_while_waiting_then_allowed(
    client, user, device, outbox, sms2fa_settings
):
    sms2fa_settings(RESEND_INTERVAL=30)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        password_step(client)
        first = outbox[-1].code
        page = client.get(LOGIN_CODE)
        assert "disabled" in parse(page).button("Send a new code")
        assert "You can ask for a new code in 30 s." in html(page)

        traveller.shift(10)
        response = client.post(LOGIN_CODE, {"resend": "1"})
        assert response.status_code == 429 and response["Retry-After"] == "20"
        assert "You can ask for a new code in 20 seconds." in html(response)
        assert len(outbox) == 1

        traveller.shift(21)
        page = client.get(LOGIN_CODE)
        assert "disabled" not in parse(page).button("Send a new code")
        response = client.post(LOGIN_CODE, {"resend": "1"})
        assert response.status_code == 302 and response["Location"] == LOGIN_CODE
        assert len(outbox) == 2
        page = client.get(LOGIN_CODE)
        assert "We sent you a new code." in html(page)
        assert "disabled" in parse(page).button("Send a new code")

        response = client.post(LOGIN_CODE, {"code": first})
        assert "Wrong code" in html(response)
        assert client.post(LOGIN_CODE, {"code": outbox[-1].code}).status_code == 302
        assert is_verified(client)


def test_an_expired_login_says_log_in_again(client, user, device, outbox):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        password_step(client)
        traveller.shift(301)
        for response in (
            client.get(LOGIN_CODE),
            client.post(LOGIN_CODE, {"code": outbox[-1].code}),
        ):
            assert response.status_code == 410
            assert "The login has expired. Log in again." in html(response)
            assert f'href="{LOGIN}"' in html(response)
    assert logged_in_user_id(client) is None


def test_the_code_page_without_a_pending_login_says_log_in_again(client, db):
    response = client.get(LOGIN_CODE)
    assert response.status_code == 410
    assert "The login has expired. Log in again." in html(response)


def test_a_send_limit_shows_the_wait_in_seconds(client, user, device, outbox, send_limits):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        password_step(client)
        response = password_step(client)  # the phone limit: 1 per 30 s
    assert response.status_code == 429
    assert response["Retry-After"] == "30"
    assert "Too many requests. Try again in 30 seconds." in html(response)
    assert len(outbox) == 1


def test_a_provider_outage_at_login_is_a_clear_503(client, user, device, outbox):
    locmem.fail_next(ProviderUnavailable("down"))
    response = password_step(client)
    assert response.status_code == 503
    assert "The SMS could not be sent right now." in html(response)
    assert "down" not in html(response)
    assert logged_in_user_id(client) is None


# ------------------------------------------------------------- passwordless


def test_passwordless_login_is_logged_in_but_not_verified(client, user, device, outbox):
    page = parse(client.get(PASSWORDLESS_URL))
    assert page.field("phone")["type"] == "tel"
    page.button("Send code")
    response = client.post(PASSWORDLESS_URL, {"phone": "070-123 45 67", "next": "/x/"})
    assert response.status_code == 302
    assert response["Location"] == f"{PASSWORDLESS_CODE}?next=%2Fx%2F"
    page = client.get(response["Location"])
    assert parse(page).field("code")["autocomplete"] == "one-time-code"
    parse(page).button("Verify")
    key_before = client.session.session_key

    response = client.post(PASSWORDLESS_CODE, {"code": outbox[-1].code, "next": "/x/"})
    assert response.status_code == 302 and response["Location"] == "/x/"
    assert logged_in_user_id(client) == str(user.pk)
    assert client.session.session_key != key_before
    assert client.session[METHOD_KEY] == PASSWORDLESS
    assert not is_verified(client)
    assert client.get("/protected/").status_code == 302  # one factor is not two
    assert views.PASSWORDLESS_KEY not in client.session


def test_passwordless_answers_alike_for_a_number_without_an_account(client, user, device, outbox):
    def visible(response) -> str:
        text = html(response)
        start = text.index("<h1>")
        return text[start : text.index('name="csrfmiddlewaretoken"', start)]

    known = client.post(PASSWORDLESS_URL, {"phone": PHONE})
    known_page = visible(client.get(known["Location"]))
    other = Client()
    unknown = other.post(PASSWORDLESS_URL, {"phone": "+46701234599"})
    unknown_page = visible(other.get(unknown["Location"]))
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    # The pages differ only in the masked number's last digits.
    assert known_page.replace("67", "99") == unknown_page
    assert len(outbox) == 1  # no SMS to the number without an account
    response = other.post(PASSWORDLESS_CODE, {"code": "123456"})
    assert "Wrong code" in html(response) and logged_in_user_id(other) is None


def test_passwordless_with_a_bad_number_is_a_field_error(client, db, outbox):
    page = parse(client.post(PASSWORDLESS_URL, {"phone": "12"}))
    field = page.field("phone")
    assert field["aria-invalid"] == "true"
    assert "id_phone_error" in page.ids
    assert field["aria-describedby"].split() == ["id_phone_helptext", "id_phone_error"]
    assert outbox == []


def test_passwordless_code_page_without_a_request_says_start_again(client, db):
    response = client.get(PASSWORDLESS_CODE)
    assert response.status_code == 410
    assert f'href="{PASSWORDLESS_URL}"' in html(response)


def test_passwordless_expired_code(client, user, device, outbox):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        client.post(PASSWORDLESS_URL, {"phone": PHONE})
        traveller.shift(301)
        response = client.post(PASSWORDLESS_CODE, {"code": outbox[-1].code})
    assert response.status_code == 410
    assert "The code has expired. Request a new one." in html(response)
    assert f'href="{PASSWORDLESS_URL}"' in html(response)
    assert logged_in_user_id(client) is None


def test_passwordless_rate_limit(client, user, device, outbox, send_limits):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client.post(PASSWORDLESS_URL, {"phone": PHONE})
        response = client.post(PASSWORDLESS_URL, {"phone": PHONE})
    assert response.status_code == 429
    assert "Try again in 30 seconds." in html(response)


def test_passwordless_resend(client, user, device, outbox):
    client.post(PASSWORDLESS_URL, {"phone": PHONE})
    assert client.post(PASSWORDLESS_CODE, {"resend": "1"}).status_code == 302
    assert len(outbox) == 2
    assert client.post(PASSWORDLESS_CODE, {"code": outbox[-1].code}).status_code == 302


# -------------------------------------------------------------------- phones


def test_phone_pages_need_a_login(client, db):
    for url in (PHONES, PHONE_ADD, PHONE_CONFIRM, "/2fa/phones/1/change/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_add_and_confirm_a_first_phone(client, user, outbox):
    client.force_login(user)
    page = client.get(PHONES)
    assert "You have no phone yet." in html(page)
    assert f'href="{PHONE_ADD}"' in html(page)
    parse(client.get(PHONE_ADD)).button("Send code")

    response = client.post(PHONE_ADD, {"phone": "070 123 45 67"})
    assert response.status_code == 302 and response["Location"] == PHONE_CONFIRM
    page = parse(client.get(PHONE_CONFIRM))
    page.button("Confirm")
    assert page.field("code")["inputmode"] == "numeric"
    code = outbox[-1].code
    response = client.post(PHONE_CONFIRM, {"code": wrong(code)})
    assert "Wrong code. You have 4 attempts left." in html(response)
    assert not PhoneDevice.objects.get(user=user).confirmed

    response = client.post(PHONE_CONFIRM, {"code": code})
    # The first method: the recovery codes come with it, shown this once
    # (tests/test_security_pages.py tests them).
    assert response.status_code == 200 and 'id="sms2fa-recovery-codes"' in html(response)
    assert "is confirmed" in html(response) and "+46•••••••67" in html(response)
    assert PhoneDevice.objects.get(user=user, number=PHONE).confirmed
    assert is_verified(client)  # the session has just proved this phone
    page = client.get(PHONES)
    assert PHONE not in html(page)


def test_adding_a_phone_already_confirmed_is_a_field_error(client, user, device, outbox):
    log_in_with_code(client, outbox)
    page = parse(client.post(PHONE_ADD, {"phone": PHONE}))
    assert page.field("phone")["aria-invalid"] == "true"
    assert len(outbox) == 1


def test_adding_a_phone_needs_a_verified_session_once_there_is_one(client, user, device, outbox):
    client.post(PASSWORDLESS_URL, {"phone": PHONE})
    client.post(PASSWORDLESS_CODE, {"code": outbox[-1].code})  # one factor only
    response = client.post(PHONE_ADD, {"phone": NEW_PHONE})
    assert response.status_code == 403
    assert "Confirm it is you with a code from your phone first." in html(response)
    assert not PhoneDevice.objects.filter(number=NEW_PHONE).exists()


def test_change_a_phone(client, user, device, outbox):
    log_in_with_code(client, outbox)
    page = parse(client.get(PHONES))
    page.button("Change")
    page = client.get(f"/2fa/phones/{device.pk}/change/")
    assert "+46•••••••67" in html(page)
    response = client.post(f"/2fa/phones/{device.pk}/change/", {"phone": NEW_PHONE})
    assert response.status_code == 302 and response["Location"] == PHONE_CONFIRM
    assert outbox[-1].to == NEW_PHONE
    response = client.post(PHONE_CONFIRM, {"code": outbox[-1].code})
    assert response.status_code == 302
    assert list(PhoneDevice.objects.filter(user=user).values_list("number", "confirmed")) == [
        (NEW_PHONE, True)
    ]
    assert outbox[-1].to == PHONE  # the old number is told
    assert is_verified(client)
    # The audit records each step with who and from where.
    events = DeviceEvent.objects.order_by("pk").values_list("action", "actor", "client_ip")
    assert list(events) == [
        (DeviceAction.ADDED, user.pk, "127.0.0.1"),
        (DeviceAction.CONFIRMED, user.pk, "127.0.0.1"),
        (DeviceAction.REPLACED, user.pk, "127.0.0.1"),
    ]


def test_change_someone_elses_phone_is_404(client, user, other_user, outbox):
    theirs = PhoneDevice.objects.create(user=other_user, number=NEW_PHONE, confirmed=True)
    client.force_login(user)
    assert client.get(f"/2fa/phones/{theirs.pk}/change/").status_code == 404
    assert client.post(f"/2fa/phones/{theirs.pk}/change/", {"phone": PHONE}).status_code == 404


def test_remove_a_phone_from_a_verified_session(client, user, device, outbox):
    log_in_with_code(client, outbox)
    parse(client.get(PHONES)).button("Remove")
    response = client.post(f"/2fa/phones/{device.pk}/remove/")
    assert response.status_code == 302 and response["Location"] == PHONES
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()
    assert "The phone was removed." in html(client.get(PHONES))
    event = DeviceEvent.objects.get(action=DeviceAction.REMOVED)
    assert (event.actor_id, event.client_ip) == (user.pk, "127.0.0.1")


def test_remove_needs_a_verified_session(client, user, device, outbox):
    client.post(PASSWORDLESS_URL, {"phone": PHONE})
    client.post(PASSWORDLESS_CODE, {"code": outbox[-1].code})
    response = client.post(f"/2fa/phones/{device.pk}/remove/")
    assert response.status_code == 403
    assert "Confirm it is you with a code from your phone first." in html(response)
    assert 'href="/2fa/login/?next=/2fa/phones/"' in html(response)
    assert PhoneDevice.objects.filter(pk=device.pk).exists()


def test_remove_someone_elses_phone_is_404(client, user, other_user):
    theirs = PhoneDevice.objects.create(user=other_user, number=NEW_PHONE, confirmed=True)
    client.force_login(user)
    response = client.post(f"/2fa/phones/{theirs.pk}/remove/")
    assert response.status_code == 404
    assert "This phone does not exist." in html(response)
    assert PhoneDevice.objects.filter(pk=theirs.pk).exists()


def test_confirm_page_without_an_enrolment_says_start_again(client, user):
    client.force_login(user)
    response = client.get(PHONE_CONFIRM)
    assert response.status_code == 410
    assert f'href="{PHONE_ADD}"' in html(response)


# ------------------------------------------------------ every page, at once


def _every_page(client, user, device, outbox) -> list:
    """Walk every page (GET and the main POSTs); returns all responses."""
    seen = [client.get(LOGIN), password_step(client)]
    seen += [client.get(LOGIN_CODE), client.post(LOGIN_CODE, {"code": wrong(outbox[-1].code)})]
    seen += [client.post(LOGIN_CODE, {"code": outbox[-1].code})]
    seen += [
        client.get(PHONES),
        client.get(PHONE_ADD),
        client.post(PHONE_ADD, {"phone": NEW_PHONE}),
    ]
    seen += [
        client.get(PHONE_CONFIRM),
        client.post(PHONE_CONFIRM, {"code": wrong(outbox[-1].code)}),
    ]
    seen += [client.get(f"/2fa/phones/{device.pk}/change/")]
    anonymous = Client()
    seen += [anonymous.get(PASSWORDLESS_URL), anonymous.post(PASSWORDLESS_URL, {"phone": PHONE})]
    seen += [anonymous.get(PASSWORDLESS_CODE)]
    seen += [anonymous.post(PASSWORDLESS_CODE, {"code": wrong(outbox[-1].code)})]
    return seen


def test_every_input_has_a_label_and_no_page_holds_a_code(client, user, device, outbox):
    responses = _every_page(client, user, device, outbox)
    codes = {sms.code for sms in outbox}
    assert len(codes) >= 3
    pages = [r for r in responses if r.status_code != 302]
    assert len(pages) >= 10
    for response in pages:
        text = html(response)
        for code in codes:
            assert code not in text, response.request["PATH_INFO"]
        page = parse(response)
        for field in page.visible_inputs():
            assert field.get("id") in page.labels, (response.request["PATH_INFO"], field)
        for field in page.inputs:
            if field.get("name") == "code":
                assert field["autocomplete"] == "one-time-code"
                assert field["inputmode"] == "numeric"


def test_csrf_is_enforced(user, device, outbox):
    client = Client(enforce_csrf_checks=True)
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 403
    assert outbox == []
    page = client.get(LOGIN)
    token = parse(page).field("csrfmiddlewaretoken")["value"]
    response = client.post(
        LOGIN, {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert client.post(LOGIN_CODE, {"code": outbox[-1].code}).status_code == 403
    page = client.get(LOGIN_CODE)
    token = next(i for i in parse(page).inputs if i["name"] == "csrfmiddlewaretoken")["value"]
    secret_before = client.cookies["csrftoken"].value
    response = client.post(LOGIN_CODE, {"code": outbox[-1].code, "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and is_verified(client)
    # Logging in rotates the CSRF secret (security.md item 28): a token read
    # before the login, by a page or by someone else, no longer works.
    assert client.cookies["csrftoken"].value != secret_before
    stale = client.post(PHONE_ADD, {"phone": NEW_PHONE, "csrfmiddlewaretoken": token})
    assert stale.status_code == 403
    fresh = parse(client.get(PHONE_ADD)).field("csrfmiddlewaretoken")["value"]
    assert (
        client.post(PHONE_ADD, {"phone": NEW_PHONE, "csrfmiddlewaretoken": fresh}).status_code
        == 302
    )


# ------------------------------------------------------------------- WebOTP


def test_the_webotp_line_is_added_only_with_the_setting(
    client, user, device, outbox, sms2fa_settings
):
    password_step(client)
    assert "@" not in outbox[-1].text
    assert "@" not in Message.objects.get().text_masked

    sms2fa_settings(WEBOTP_DOMAIN="Example.COM")
    client.post(LOGIN_CODE, {"resend": "1"})
    sms = outbox[-1]
    assert sms.text.endswith(f"\n\n@example.com #{sms.code}")
    assert sms.text.splitlines()[-1] == f"@example.com #{sms.code}"
    masked = Message.objects.order_by("-created_at", "-pk").first().text_masked
    assert masked.endswith("\n\n@example.com #••••••")
    assert sms.code not in masked


def test_a_site_sms_template_without_the_webotp_line_gets_it(
    user, device, outbox, sms2fa_settings, settings, tmp_path
):
    (tmp_path / "site_sms.txt").write_text("Code: {{ code }}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    sms2fa_settings(WEBOTP_DOMAIN="example.com", SMS_TEMPLATE="site_sms.txt")
    password_step(Client())
    sms = outbox[-1]
    assert sms.text == f"Code: {sms.code}\n\n@example.com #{sms.code}"


# ---------------------------------------------------------- the example site


@pytest.fixture
def example_site(settings):
    """The example project's URLs, templates and outbox provider."""
    if str(EXAMPLE_DIR) not in sys.path:
        sys.path.insert(0, str(EXAMPLE_DIR))
    settings.ROOT_URLCONF = "example.urls"
    settings.TEMPLATES = [
        {
            **settings.TEMPLATES[0],
            "DIRS": [EXAMPLE_DIR / "templates", EXAMPLE_DIR / "example" / "templates"],
        }
    ]
    settings.SMS2FA = {
        **settings.SMS2FA,
        "PROVIDERS": {"default": {"BACKEND": "example.sms.ConsoleOutboxProvider"}},
    }
    from example import sms

    sms.outbox.clear()
    yield settings
    sms.outbox.clear()


def test_dev_outbox_is_404_without_debug(client, example_site, db):
    example_site.DEBUG = False
    assert client.get("/dev/outbox/").status_code == 404
    assert reverse("dev_outbox") == "/dev/outbox/"


def test_a_newcomer_logs_in_from_the_browser_alone(client, example_site, user, device, capsys):
    example_site.DEBUG = True
    home = html(client.get("/"))
    for url in (LOGIN, PASSWORDLESS_URL, PHONES, PHONE_ADD, "/dev/outbox/", "/admin/"):
        assert f'href="{url}"' in home, url
    assert "No SMS sent yet." in html(client.get("/dev/outbox/"))

    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response["Location"] == LOGIN_CODE
    outbox_page = html(client.get("/dev/outbox/"))
    code = outbox_page.split("Your verification code is ")[1][:6]
    assert code.isdigit()
    assert code in capsys.readouterr().out  # printed in the terminal too
    page = html(client.get(LOGIN_CODE))
    assert 'href="/">django-sms2fa example: home</a>' in page  # the site's layout
    assert client.post(LOGIN_CODE, {"code": code}).status_code == 302
    assert is_verified(client)
    assert "with a verified second factor" in html(client.get("/"))


def test_the_example_plain_admin_logs_in_through_the_pages(example_site, rf, user):
    from example.admin_site import PlainAdminSite

    site = PlainAdminSite()
    request = rf.get("/plain-admin/login/", {"next": "/plain-admin/"})
    response = site.login(request)
    assert response["Location"] == f"{LOGIN}?next=%2Fplain-admin%2F"

    user.is_staff = True
    request = rf.get("/plain-admin/")
    request.user = user
    request.session = {}
    assert site.has_permission(request)
    request.session = {METHOD_KEY: PASSWORDLESS}  # the phone alone: one factor
    assert not site.has_permission(request)


def test_challenge_is_closed_state_is_reported(client, user, device, outbox):
    """A challenge cancelled behind the page's back: start again."""
    password_step(client)
    Challenge.objects.update(status=ChallengeStatus.CANCELLED, closed_at=timezone.now())
    response = client.post(LOGIN_CODE, {"code": outbox[-1].code})
    assert response.status_code == 410
    assert "This verification request was cancelled." in html(response)
