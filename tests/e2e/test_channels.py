"""Call me instead, and the truth about a code that may be delayed, in a real browser."""

from __future__ import annotations

import re

from django_sms2fa.exceptions import ProviderUnavailable
from django_sms2fa.providers import locmem

from .browser import expect
from .steps import expect_logged_in, latest_code, log_in_with_password, submit_code

PASSWORD = "correct horse battery"
CODE_PAGE = re.compile(r"/2fa/login/code/$")
CALLING_LOCMEM = {
    "default": {
        "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
        "OPTIONS": {"channels": ("sms", "call")},
    }
}


def test_call_me_instead_and_log_in_with_the_called_code(
    page, make_user, sms2fa_settings, screenshot
):
    sms2fa_settings(PROVIDERS=CALLING_LOCMEM, RESEND_INTERVAL=60)
    make_user("alice", password=PASSWORD, phone="+46701234501")
    log_in_with_password(page, "alice", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    # The resend waits out its interval; switching to a call does not.
    expect(page.get_by_role("button", name="Send a new code")).to_be_disabled()
    call = page.get_by_role("button", name="Call me instead")
    expect(call).to_be_enabled()
    screenshot(page, "login_code_call_me_instead")
    sms_code = latest_code()

    call.click()

    expect(page).to_have_url(CODE_PAGE)
    expect(page.locator("body")).to_contain_text("We are calling")
    assert [sms.channel for sms in locmem.outbox] == ["sms", "call"]
    expect(page.get_by_role("button", name="Send an SMS instead")).to_be_visible()
    expect(page.get_by_role("button", name="Call me instead")).to_have_count(0)
    called = latest_code()
    if called != sms_code:  # the SMS's code died with the switch
        submit_code(page, sms_code)
        expect(page).to_have_url(CODE_PAGE)
    submit_code(page, called)
    expect(page).not_to_have_url(CODE_PAGE)
    expect_logged_in(page, "alice")


def test_a_code_that_may_be_delayed_is_told_and_can_be_resent_at_once(
    page, make_user, sms2fa_settings, screenshot
):
    sms2fa_settings(RESEND_INTERVAL=60)
    make_user("alice", password=PASSWORD, phone="+46701234501")
    locmem.fail_next(ProviderUnavailable(provider_text="read timeout", may_have_sent=True))
    log_in_with_password(page, "alice", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    notice = page.locator("#sms2fa-delivery-uncertain")
    expect(notice).to_contain_text("may be delayed")
    resend = page.get_by_role("button", name="Send a new code")
    expect(resend).to_be_enabled()
    screenshot(page, "login_code_delivery_uncertain")

    resend.click()

    expect(page).to_have_url(CODE_PAGE)
    expect(page.locator("#sms2fa-delivery-uncertain")).to_have_count(0)
    assert len(locmem.outbox) == 1
    submit_code(page, latest_code())
    expect_logged_in(page, "alice")
