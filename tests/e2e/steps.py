"""What a person does in the browser, as small reusable steps."""

from __future__ import annotations

import re
from typing import Any

from django_sms2fa.providers import locmem

from .browser import expect

CODE_IN_SMS = re.compile(r"code is (\d{4,10})")


def read_code_in_dev_outbox(page: Any, screenshot: Any = None) -> str:
    """Open the example site's dev outbox in another tab, as a person would
    look at their phone, and read the newest code there."""
    phone = page.context.new_page()
    try:
        phone.goto("/dev/outbox/")
        expect(phone.get_by_text(CODE_IN_SMS).first).to_be_visible()
        if screenshot is not None:
            screenshot(phone, "dev_outbox")
        found = CODE_IN_SMS.search(phone.locator("body").inner_text())
        assert found, "no code on the dev outbox page"
        return found.group(1)
    finally:
        phone.close()


def latest_code() -> str:
    """The newest code the locmem provider delivered (tests other than the
    main login read it here rather than in the browser)."""
    assert locmem.outbox, "no SMS was sent"
    return locmem.outbox[-1].code


def log_in_with_password(page: Any, username: str, password: str) -> None:
    page.goto("/2fa/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def submit_code(page: Any, code: str, button: str = "Verify") -> None:
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name=button).click()


VERIFIED = "with a verified second factor"
PASSWORDLESS = "with the phone's code alone"
PASSWORD_ONLY = "with a password only"


def expect_logged_in(page: Any, username: str, how: str = VERIFIED) -> None:
    """The example home page says who is logged in, and how (``VERIFIED``,
    ``PASSWORDLESS`` or ``PASSWORD_ONLY``)."""
    page.goto("/")
    status = page.locator(".status")
    expect(status).to_contain_text(f"Logged in as {username}")
    expect(status).to_contain_text(how)


def expect_logged_out(page: Any) -> None:
    page.goto("/")
    expect(page.locator(".status")).to_contain_text("Not logged in")
