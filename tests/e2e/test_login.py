"""Password, then the SMS code, in a real browser."""

from __future__ import annotations

import re

from django_sms2fa.providers import locmem

from .browser import expect
from .steps import (
    expect_logged_in,
    expect_logged_out,
    latest_code,
    log_in_with_password,
    read_code_in_dev_outbox,
    submit_code,
)

PASSWORD = "correct horse battery"
CODE_PAGE = re.compile(r"/2fa/login/code/$")
PROTECTED = re.compile(r"^http://[^/]+/protected/$")


def other_code(code: str) -> str:
    """A code of the same length that is not ``code``."""
    return "".join(str((int(digit) + 1) % 10) for digit in code)


def test_password_then_the_code_from_the_dev_outbox_logs_in(page, make_user, screenshot):
    make_user("alice", password=PASSWORD, phone="+46701234501")
    expect_logged_out(page)  # on the home page, where a newcomer starts

    page.get_by_role("link", name="Log in with a password, then the code").click()
    expect(page).to_have_url(re.compile(r"/2fa/login/$"))
    screenshot(page, "login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(CODE_PAGE)
    code_input = page.get_by_label("Code")
    expect(code_input).to_have_attribute("autocomplete", "one-time-code")
    expect(code_input).to_have_attribute("inputmode", "numeric")
    screenshot(page, "login_code")

    # The person reads the SMS (here: the dev outbox page), then types it.
    code = read_code_in_dev_outbox(page, screenshot)
    assert code == locmem.outbox[-1].code
    submit_code(page, code)

    expect(page).not_to_have_url(CODE_PAGE)
    expect_logged_in(page, "alice")
    screenshot(page, "home_logged_in")
    page.goto("/protected/")
    expect(page).to_have_url(PROTECTED)
    expect(page.locator("body")).to_contain_text(
        "You are logged in with a verified second factor as alice"
    )
    screenshot(page, "protected")


def test_a_wrong_code_shows_the_error_and_the_user_stays_logged_out(page, make_user, screenshot):
    make_user("alice", password=PASSWORD, phone="+46701234501")
    log_in_with_password(page, "alice", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)

    submit_code(page, other_code(latest_code()))

    expect(page).to_have_url(CODE_PAGE)
    code_input = page.get_by_label("Code")
    expect(page.locator("#id_code_error")).to_contain_text(re.compile("wrong code", re.I))
    expect(code_input).to_have_attribute("aria-invalid", "true")
    expect(code_input).to_have_value("")  # what was typed is not echoed
    screenshot(page, "login_code_error")
    expect_logged_out(page)
    # Nor does /protected/ let the session in.
    page.goto("/protected/")
    expect(page).to_have_url(re.compile(r"/2fa/login/\?next=/protected/$"))


def test_resend_sends_a_new_code_and_the_old_one_stops_working(page, make_user):
    make_user("alice", password=PASSWORD, phone="+46701234501")
    log_in_with_password(page, "alice", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    first = latest_code()

    page.get_by_role("button", name="Send a new code").click()

    expect(page).to_have_url(CODE_PAGE)
    assert len(locmem.outbox) == 2
    second = latest_code()
    if second != first:  # a 6-digit code repeats once in a million resends
        submit_code(page, first)
        expect(page).to_have_url(CODE_PAGE)
    submit_code(page, second)
    expect(page).not_to_have_url(CODE_PAGE)
    expect_logged_in(page, "alice")


def test_resend_waits_out_the_interval(page, make_user, sms2fa_settings, screenshot):
    sms2fa_settings(RESEND_INTERVAL=60)
    make_user("alice", password=PASSWORD, phone="+46701234501")
    log_in_with_password(page, "alice", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)

    expect(page.get_by_role("button", name="Send a new code")).to_be_disabled()
    expect(page.locator("#sms2fa-resend-wait")).to_contain_text("You can ask for a new code in")
    screenshot(page, "login_code_resend_wait")
    assert len(locmem.outbox) == 1


def test_keyboard_only_login(page, make_user):
    """Tab and Enter only, no mouse: the form is usable from the keyboard."""
    make_user("alice", password=PASSWORD, phone="+46701234501")
    page.goto("/2fa/login/")

    tab_to(page, "username")
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    assert focused_name(page) == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")

    expect(page).to_have_url(CODE_PAGE)
    tab_to(page, "code")
    page.keyboard.type(latest_code())
    page.keyboard.press("Enter")

    expect(page).not_to_have_url(CODE_PAGE)
    expect_logged_in(page, "alice")


def focused_name(page) -> str | None:
    return page.evaluate("() => document.activeElement && document.activeElement.name")


def tab_to(page, name: str, limit: int = 30) -> None:
    """Press Tab until the field ``name`` has the focus (it may have it already
    through ``autofocus``)."""
    for _ in range(limit):
        if focused_name(page) == name:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{limit} presses of Tab never reached the field {name!r}")
