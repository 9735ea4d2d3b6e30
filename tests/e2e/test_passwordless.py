"""Logging in with a phone number and a code, no password."""

from __future__ import annotations

import re

from django_sms2fa.providers import locmem

from .browser import expect
from .steps import PASSWORDLESS, expect_logged_in, expect_logged_out, latest_code, submit_code


def test_passwordless_login(page, make_user, screenshot):
    make_user("bob", phone="+46701234502")
    expect_logged_out(page)

    page.goto("/2fa/phone-login/")
    screenshot(page, "passwordless")
    # Typed the way a person in Sweden writes it: the site's default region
    # makes it +46701234502.
    page.get_by_label("Phone").fill("070-123 45 02")
    page.get_by_role("button", name="Send code").click()

    expect(page).to_have_url(re.compile(r"/2fa/phone-login/code/$"))
    assert [sms.to for sms in locmem.outbox] == ["+46701234502"]
    screenshot(page, "passwordless_code")
    submit_code(page, latest_code())

    expect(page).not_to_have_url(re.compile(r"/2fa/phone-login/"))
    # A phone alone logs in, but it is one factor: not a verified session.
    expect_logged_in(page, "bob", PASSWORDLESS)
