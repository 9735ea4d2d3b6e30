"""Adding a phone: a user who has none enrols one and confirms it with the code."""

from __future__ import annotations

import re

from django_sms2fa.models import PhoneDevice
from django_sms2fa.providers import locmem

from .browser import expect
from .steps import PASSWORD_ONLY, expect_logged_in, latest_code, log_in_with_password, submit_code

PASSWORD = "correct horse battery"


def test_enrol_and_confirm_a_phone(page, make_user, screenshot):
    user = make_user("carol", password=PASSWORD)
    # Without a phone the password alone decides.
    log_in_with_password(page, "carol", PASSWORD)
    expect(page).not_to_have_url(re.compile(r"/2fa/login/"))
    expect_logged_in(page, "carol", PASSWORD_ONLY)

    page.goto("/2fa/phones/")
    screenshot(page, "phones_empty")
    page.goto("/2fa/phones/add/")
    screenshot(page, "phone_add")
    page.get_by_label("Phone").fill("+46 70 123 45 03")
    page.get_by_role("button", name="Send code").click()

    expect(page).to_have_url(re.compile(r"/2fa/phones/confirm/$"))
    assert [sms.to for sms in locmem.outbox] == ["+46701234503"]
    assert not PhoneDevice.objects.filter(user=user, confirmed=True).exists()
    screenshot(page, "phone_confirm")
    submit_code(page, latest_code(), button="Confirm")

    # The first sign-in method: its recovery codes are shown, once.
    expect(page.locator("#sms2fa-recovery-codes li.sms2fa-recovery-code")).to_have_count(10)
    page.locator("#sms2fa-recovery-saved").click()
    page.goto("/2fa/phones/")
    expect(page).to_have_url(re.compile(r"/2fa/phones/$"))
    device = PhoneDevice.objects.get(user=user)
    assert device.confirmed and device.number == "+46701234503"
    # The list shows the new phone, masked.
    expect(page.locator("main, body").first).to_contain_text(device.masked_number)
    assert "701234503" not in page.locator("body").inner_text()
    screenshot(page, "phones")
    # Confirming the phone proved it: the session is now verified.
    expect_logged_in(page, "carol")
