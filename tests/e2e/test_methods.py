"""The sign-in methods beside the phone, in a real browser: an authenticator
app (TOTP), recovery codes, a remembered browser, and the step-up before a
sign-in method changes.

The test computes the app's codes from the secret the page shows, as an
authenticator app would.
"""

from __future__ import annotations

import base64
import re
import time
from importlib import import_module
from typing import Any

from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from django.conf import settings

from django_sms2fa import methods
from django_sms2fa.conf import app_settings
from django_sms2fa.models import PhoneDevice, RememberedBrowser
from django_sms2fa.providers import locmem
from django_sms2fa.session_keys import VERIFIED_AT_KEY

from .browser import expect
from .steps import expect_logged_in, expect_logged_out, latest_code, submit_code

# Distinct per account: the app keeps a process-wide redaction registry of secrets.
PASSWORD = "methods page horse staple"
NEW_PASSWORD = "methods page new battery"
CODE_PAGE = re.compile(r"/2fa/login/code/(\?.*)?$")
SECURITY = re.compile(r"/2fa/security/$")
PHONES = re.compile(r"/2fa/phones/$")
STEP_UP = re.compile(r"/2fa/security/confirm/\?")
RECOVERY_CODE = re.compile(r"^[a-z2-9]{5}-[a-z2-9]{5}$")
# A wrong app or recovery code (a phone's wrong code says "Wrong code. ...").
WRONG_CODE = re.compile("not correct|wrong code", re.I)
APP_INTRO = "Enter the 6-digit code your authenticator app shows."


# ------------------------------------------------------------------ helpers


def log_in(page: Any, username: str, password: str, next_url: str = "") -> None:
    """The password step of the login page (then the code page, if any)."""
    page.goto("/2fa/login/" + (f"?next={next_url}" if next_url else ""))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Any) -> None:
    page.goto("/2fa/logout/")
    page.get_by_role("button", name="Sign out").click()
    expect_logged_out(page)


def switch_method(page: Any, method: str) -> None:
    """On the login's code page: "Use my authenticator app instead" and the like."""
    page.locator(f"button[name=method][value={method}]").click()
    expect(page).to_have_url(CODE_PAGE)


def secret_key(secret: str) -> bytes:
    """The key of a base32 secret as the setup page shows it (no padding)."""
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def app_code(key: bytes, *, ahead: int = 0) -> str:
    """The code an authenticator app shows now (``ahead`` steps later)."""
    return f"{totp(key, step=30, digits=6, drift=ahead):06d}"


def next_app_code(device: TOTPDevice) -> str:
    """A code of the user's app that the site has not accepted yet.

    A code works once per 30 s time step. Rather than wait for the app's
    next code, type the next step's: the server accepts a code one step
    ahead (its tolerance for a phone's clock running fast). Only where that
    tolerance is off or used up, wait for the next step.
    """
    device.refresh_from_db()
    step = device.step
    if time.time() % step > step - 2:
        # Too near a step boundary: the server's window may move before the
        # code arrives. Two seconds at most.
        time.sleep(step - time.time() % step + 0.1)
    now_t = int(time.time()) // step
    low = now_t + device.drift - device.tolerance
    high = now_t + device.drift + device.tolerance
    target = max(now_t, low, device.last_t + 1)
    if target > high:
        time.sleep(step - time.time() % step + 0.1)
        return next_app_code(device)
    code = totp(device.bin_key, step=step, digits=device.digits, drift=target - now_t)
    return f"{code:06d}"


def make_app(user: Any) -> TOTPDevice:
    """A confirmed authenticator app, as if set up earlier."""
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def age_second_factor(page: Any, seconds: float) -> None:
    """Move the session's last proved second factor ``seconds`` into the past,
    in the session store, as if the user had been idle that long."""
    key = next(
        c["value"] for c in page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME
    )
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
    assert VERIFIED_AT_KEY in store, "the login did not mark the second factor"
    store[VERIFIED_AT_KEY] = time.time() - seconds
    store.save()


def expect_protected_page(page: Any, username: str) -> None:
    """``/protected/`` (behind ``otp_required``) lets the session in."""
    page.goto("/protected/")
    expect(page).to_have_url(re.compile(r"/protected/$"))
    expect(page.locator("body")).to_contain_text(f"verified second factor as {username}")


# --------------------------------------------------------------- the tests


def test_set_up_an_app_as_the_first_method_shows_recovery_codes(page, make_user, screenshot):
    user = make_user("dora", password=PASSWORD)
    log_in(page, "dora", PASSWORD)
    expect(page).not_to_have_url(re.compile(r"/2fa/login/"))

    page.goto("/2fa/security/")
    page.locator("#sms2fa-totp-add").click()
    expect(page).to_have_url(re.compile(r"/2fa/security/app/$"))
    expect(page.locator("#sms2fa-totp-qr svg")).to_be_visible()
    secret = page.locator("#sms2fa-totp-secret").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]+", secret), "the key is base32 without padding"
    screenshot(page, "methods_totp_add")
    key = secret_key(secret)
    assert key == methods.pending_totp(user).bin_key

    # A wrong code first: the app is not confirmed, the page says why.
    form = page.locator("#sms2fa-totp-confirm")
    form.locator("input[name=code]").fill(app_code(key, ahead=5))
    form.get_by_role("button", name="Confirm").click()
    expect(page.locator("#id_code_error")).to_contain_text(WRONG_CODE)
    assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    # The same secret after the error: nothing to scan again.
    expect(page.locator("#sms2fa-totp-secret")).to_have_text(secret)

    form.locator("input[name=code]").fill(app_code(key))
    form.get_by_role("button", name="Confirm").click()

    # The first method: recovery codes are made and shown, once.
    codes = page.locator("ol#sms2fa-recovery-codes > li.sms2fa-recovery-code")
    expect(codes).to_have_count(app_settings.RECOVERY_CODE_COUNT)
    assert all(RECOVERY_CODE.match(text.strip()) for text in codes.all_inner_texts())
    screenshot(page, "methods_recovery_codes")
    assert TOTPDevice.objects.get(user=user).confirmed
    page.locator("#sms2fa-recovery-saved").click()

    expect(page).to_have_url(SECURITY)
    expect(page.locator("#sms2fa-totp-remove")).to_be_visible()
    expect(page.locator("#sms2fa-totp-add")).to_have_count(0)
    expect(page.locator("#sms2fa-recovery-left")).to_have_text(
        f"You have {app_settings.RECOVERY_CODE_COUNT} unused recovery codes."
    )
    screenshot(page, "methods_security")
    # The app's code proved a second factor: the session is verified.
    expect_protected_page(page, "dora")


def test_set_up_an_app_beside_a_phone_lists_it_on_the_security_page(page, make_user):
    user = make_user("dave", password=PASSWORD, phone="+46701234511")
    methods.generate_recovery_codes(user)
    log_in(page, "dave", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    submit_code(page, latest_code())
    expect_logged_in(page, "dave")

    page.goto("/2fa/security/")
    page.locator("#sms2fa-totp-add").click()
    secret = page.locator("#sms2fa-totp-secret").inner_text().strip()
    form = page.locator("#sms2fa-totp-confirm")
    form.locator("input[name=code]").fill(app_code(secret_key(secret)))
    form.get_by_role("button", name="Confirm").click()

    # Recovery codes exist already: none are made, back to the security page.
    expect(page).to_have_url(SECURITY)
    expect(page.locator("#sms2fa-recovery-codes")).to_have_count(0)
    expect(page.locator("body")).to_contain_text("Your authenticator app is set up.")
    expect(page.locator("#sms2fa-totp-remove")).to_be_visible()
    expect(page.locator("#sms2fa-recovery-left")).to_have_text(
        f"You have {app_settings.RECOVERY_CODE_COUNT} unused recovery codes."
    )
    assert TOTPDevice.objects.get(user=user).confirmed


def test_log_in_with_the_app_and_it_becomes_the_default(page, make_user, screenshot):
    user = make_user("erin", password=PASSWORD, phone="+46701234512")
    device = make_app(user)
    log_in(page, "erin", PASSWORD, next_url="/protected/")
    expect(page).to_have_url(CODE_PAGE)
    assert len(locmem.outbox) == 1  # the phone is the default so far

    switch_method(page, "totp")
    expect(page.locator("body")).to_contain_text(APP_INTRO)
    screenshot(page, "methods_login_totp")
    submit_code(page, next_app_code(device))

    expect(page).to_have_url(re.compile(r"/protected/$"))
    expect_logged_in(page, "erin")
    expect_protected_page(page, "erin")

    # Used last, the app is the next login's default: no SMS is sent.
    log_out(page)
    log_in(page, "erin", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    expect(page.locator("body")).to_contain_text(APP_INTRO)
    expect(page.locator("button[name=method][value=phone]")).to_be_visible()
    assert len(locmem.outbox) == 1
    submit_code(page, next_app_code(device))
    expect(page).not_to_have_url(CODE_PAGE)
    expect_logged_in(page, "erin")


def test_a_recovery_code_logs_in_once(page, make_user, screenshot):
    user = make_user("frank", password=PASSWORD, phone="+46701234513")
    saved = methods.generate_recovery_codes(user)
    count = len(saved)
    log_in(page, "frank", PASSWORD, next_url="/2fa/security/")
    expect(page).to_have_url(CODE_PAGE)

    switch_method(page, "recovery")
    screenshot(page, "methods_login_recovery")
    page.get_by_label("Recovery code").fill(saved[0])
    page.get_by_role("button", name="Verify").click()

    expect(page).to_have_url(SECURITY)
    expect(page.locator("body")).to_contain_text(
        f"You signed in with a recovery code. {count - 1} codes are left."
    )
    expect(page.locator("#sms2fa-recovery-left")).to_have_text(
        f"You have {count - 1} unused recovery codes."
    )
    expect_logged_in(page, "frank")
    expect_protected_page(page, "frank")

    # The same code again, at a later login: refused, not logged in.
    log_out(page)
    log_in(page, "frank", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    switch_method(page, "recovery")
    page.get_by_label("Recovery code").fill(saved[0])
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(CODE_PAGE)
    expect(page.locator("#id_code_error")).to_contain_text(WRONG_CODE)
    expect(page.get_by_label("Recovery code")).to_have_value("")
    expect_logged_out(page)

    # Another saved code still works: the refusal was about the spent one.
    log_in(page, "frank", PASSWORD)
    switch_method(page, "recovery")
    page.get_by_label("Recovery code").fill(saved[1])
    page.get_by_role("button", name="Verify").click()
    expect(page).not_to_have_url(CODE_PAGE)
    expect_logged_in(page, "frank")
    assert methods.recovery_codes_left(user) == count - 2


def test_lost_phone_recovery_code_then_a_new_phone(page, make_user, screenshot):
    user = make_user("gail", password=PASSWORD, phone="+46701234514")
    lost = PhoneDevice.objects.get(user=user)
    saved = methods.generate_recovery_codes(user)

    log_in(page, "gail", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    # The phone is lost: its SMS is never read.
    switch_method(page, "recovery")
    page.get_by_label("Recovery code").fill(saved[3])
    page.get_by_role("button", name="Verify").click()
    expect(page).not_to_have_url(CODE_PAGE)
    expect_logged_in(page, "gail")

    # The recovery login is a fresh second factor: removing the lost phone
    # needs no step-up.
    page.goto("/2fa/phones/")
    page.locator(f"form[action='/2fa/phones/{lost.pk}/remove/'] button").click()
    expect(page).to_have_url(PHONES)
    expect(page.locator("body")).to_contain_text("The phone was removed.")
    assert not PhoneDevice.objects.filter(pk=lost.pk).exists()

    page.get_by_role("link", name="Add a phone").click()
    expect(page).to_have_url(re.compile(r"/2fa/phones/add/$"))
    page.get_by_label("Phone").fill("+46 70 123 45 24")
    page.get_by_role("button", name="Send code").click()
    expect(page).to_have_url(re.compile(r"/2fa/phones/confirm/$"))
    assert locmem.outbox[-1].to == "+46701234524"
    submit_code(page, latest_code(), button="Confirm")

    expect(page).to_have_url(PHONES)
    new = PhoneDevice.objects.get(user=user)
    assert new.confirmed and new.number == "+46701234524"
    phones = page.locator("ul.sms2fa-phones > li")
    expect(phones).to_have_count(1)
    expect(phones).to_contain_text(new.masked_number)
    screenshot(page, "methods_new_phone")
    page.goto("/2fa/security/")
    expect(page.locator("#sms2fa-security-phones li")).to_have_text([new.masked_number])


def test_remembered_browser_skips_the_code_until_the_password_changes(
    page, make_user, sms2fa_settings, screenshot
):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)
    user = make_user("hana", password=PASSWORD, phone="+46701234515")
    log_in(page, "hana", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    remember = page.locator("#sms2fa-remember")
    expect(remember).to_be_visible()
    expect(page.get_by_label("Do not ask again on this browser for 30 days")).to_be_visible()
    remember.check()
    screenshot(page, "methods_login_remember")
    submit_code(page, latest_code())
    expect(page).not_to_have_url(CODE_PAGE)
    expect_logged_in(page, "hana")

    cookie = next(c for c in page.context.cookies() if c["name"] == methods.BROWSER_COOKIE)
    assert cookie["httpOnly"]
    browser = RememberedBrowser.objects.get(user=user)
    page.goto("/2fa/security/")
    expect(page.locator(f"#sms2fa-browser-{browser.pk}")).to_be_visible()
    expect(page.locator("#sms2fa-browsers-forget-all")).to_be_visible()
    screenshot(page, "methods_security_browsers")

    # Logged out and back in: the password alone, no code asked, none sent.
    log_out(page)
    log_in(page, "hana", PASSWORD)
    expect(page).not_to_have_url(re.compile(r"/2fa/login/"))
    expect_logged_in(page, "hana")
    assert len(locmem.outbox) == 1

    # A new password forgets the browser: the code is asked again.
    log_out(page)
    user.set_password(NEW_PASSWORD)
    user.save()
    log_in(page, "hana", NEW_PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    assert len(locmem.outbox) == 2
    expect_logged_out(page)
    browser.refresh_from_db()
    assert browser.revoked_at is not None


def test_removing_a_phone_after_the_window_asks_for_a_code_first(page, make_user, screenshot):
    user = make_user("ivan", password=PASSWORD, phone="+46701234516")
    spare = PhoneDevice.objects.create(
        user=user, number="+46701234526", name="Spare", confirmed=True
    )
    methods.generate_recovery_codes(user)
    log_in(page, "ivan", PASSWORD)
    expect(page).to_have_url(CODE_PAGE)
    submit_code(page, latest_code())
    expect_logged_in(page, "ivan")

    # Idle past the step-up window: verified, but not recently.
    age_second_factor(page, app_settings.STEP_UP_WINDOW + 60)
    page.goto("/2fa/phones/")
    remove_spare = page.locator(f"form[action='/2fa/phones/{spare.pk}/remove/'] button")
    remove_spare.click()

    expect(page).to_have_url(STEP_UP)
    assert PhoneDevice.objects.filter(pk=spare.pk).exists()
    expect(page.locator("ul.sms2fa-methods")).to_contain_text("Use a recovery code instead")
    screenshot(page, "methods_step_up")
    sent = len(locmem.outbox)
    page.locator("#sms2fa-step-up-send").get_by_role("button", name="Send a code").click()
    step_up_form = page.locator("#sms2fa-step-up-form")
    expect(step_up_form).to_be_visible()
    assert len(locmem.outbox) == sent + 1
    assert locmem.outbox[-1].to == "+46701234516"  # the login phone
    step_up_form.get_by_label("Code").fill(latest_code())
    step_up_form.get_by_role("button", name="Confirm").click()

    # Back to the phones; the remove is done again, now without a step-up.
    expect(page).to_have_url(PHONES)
    assert PhoneDevice.objects.filter(pk=spare.pk).exists()
    remove_spare.click()
    expect(page).to_have_url(PHONES)
    expect(page.locator("body")).to_contain_text("The phone was removed.")
    assert not PhoneDevice.objects.filter(pk=spare.pk).exists()
    expect(page.locator("ul.sms2fa-phones > li")).to_have_count(1)
