"""The admin, in a browser: log in to the OTP admin with password and SMS code,
then the challenge audit list shows that login's challenge and never its code,
and the statistics page draws its charts."""

from __future__ import annotations

import re

from django_sms2fa.models import Challenge, Purpose
from django_sms2fa.providers import locmem

from .browser import expect

PHONE = "+46701234599"


def test_admin_challenge_list_shows_the_challenge_and_no_code(page, make_user, screenshot):
    make_user("root", password="admin password 1", phone=PHONE, staff=True)

    # django-otp's admin login: the password first, then it offers the user's
    # devices and a "Get OTP Challenge" button that sends the SMS.
    page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "admin password 1")
    page.click("input[type=submit][value='Log in']")
    expect(page.locator("#id_otp_device")).to_be_visible()
    page.select_option("#id_otp_device", label="Phone")
    page.fill("#id_password", "admin password 1")
    page.click("input[name=otp_challenge]")
    expect(page.locator(".errornote")).to_contain_text("A code was sent by SMS")
    assert len(locmem.outbox) == 1
    code = locmem.outbox[0].code

    page.fill("#id_password", "admin password 1")
    page.fill("#id_otp_token", code)
    page.click("input[type=submit][value='Log in']")
    expect(page).to_have_url(re.compile(r"/admin/$"))

    challenge = Challenge.objects.get()
    assert challenge.purpose == Purpose.LOGIN and challenge.status == "verified"

    page.set_viewport_size({"width": 1400, "height": 900})  # the admin's list is wide
    page.goto("/admin/django_sms2fa/challenge/")
    expect(page.locator("#result_list")).to_be_visible()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    row_text = rows.first.inner_text()
    assert "7012345" not in row_text, "the list shows the phone in clear"
    assert challenge.masked_phone in row_text
    assert "root" in row_text and "Verified" in row_text
    screenshot(page, "admin_challenge_list")

    # The code appears nowhere: not on the list, not on the challenge's page.
    assert code not in page.content()
    page.locator("#result_list tbody tr a").first.click()
    expect(page).to_have_url(re.compile(rf"/admin/django_sms2fa/challenge/{challenge.pk}/"))
    assert code not in page.content()
    assert challenge.code_hash and challenge.code_hash not in page.content()
    screenshot(page, "admin_challenge_detail")

    # The statistics page, from the changelist's link: charts drawn by the
    # server (no script), each with its table of numbers; the login's SMS counts.
    page.goto("/admin/django_sms2fa/challenge/")
    page.get_by_role("link", name=re.compile("statistics", re.I)).click()
    expect(page).to_have_url(re.compile(r"/admin/django_sms2fa/challenge/stats/"))
    expect(page.locator("svg[role=img]").first).to_be_visible()
    assert page.locator("svg[role=img]").count() >= 4
    assert page.locator("script[src^='http']").count() == 0
    expect(page.locator("#content table").first).to_contain_text("default")
    assert code not in page.content()
    page.set_viewport_size({"width": 1400, "height": 1600})
    screenshot(page, "admin_stats")
