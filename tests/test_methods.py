"""The sign-in methods beside the phone, as a user meets them: recovery codes,
an authenticator app, remembered browsers, which method a login starts with,
and the audit rows each leaves. The attacks on them are in
``test_attacks_methods.py``."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine

from django.utils import timezone

from django_sms2fa import login_flows, methods
from django_sms2fa.exceptions import (
    DeviceNotFound,
    IncorrectCode,
    InvalidCode,
    MethodAlreadyEnrolled,
    MethodUnavailable,
)
from django_sms2fa.models import (
    MethodAction,
    MethodEvent,
    RecoveryCode,
    RecoveryCodeDevice,
    RememberedBrowser,
)
from django_sms2fa.types import ClientInfo

from .methods_support import (
    PHONE,
    backed_codes,
    confirmed_totp,
    next_step,
    phone_of,
    totp_code,
    wrong_recovery,
    wrong_totp,
)

pytestmark = pytest.mark.django_db

CLIENT = ClientInfo(ip="203.0.113.9", user_agent="Firefox/140 on Linux")


@pytest.fixture
def remembering(sms2fa_settings):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)


# ---------------------------------------------------------- recovery codes


def test_recovery_codes_are_shown_once_in_a_readable_shape(user, sms2fa_settings):
    sms2fa_settings(RECOVERY_CODE_COUNT=12)
    made = backed_codes(user)
    assert len(made) == 12 == len(set(made))
    for code in made:
        assert re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", code), code
        assert not set(code.replace("-", "")) & set("01ilo")  # nothing to misread
    device = RecoveryCodeDevice.objects.get(user=user)
    assert device.confirmed
    assert methods.recovery_codes_left(user) == 12
    assert RecoveryCode.objects.filter(device=device).count() == 12


@pytest.mark.parametrize(
    "spelling",
    [
        lambda c: c,
        lambda c: c.replace("-", ""),
        lambda c: c.upper(),
        lambda c: f"  {c[:3]} {c[3:]} ",
        lambda c: c.replace("-", " - "),
    ],
    ids=["as-shown", "no-dash", "upper", "spaces", "spaced-dash"],
)
def test_a_recovery_code_is_accepted_however_it_is_typed(user, spelling):
    made = backed_codes(user)
    device = methods.use_recovery_code(user, spelling(made[3]))
    assert isinstance(device, RecoveryCodeDevice)
    assert methods.recovery_codes_left(user) == len(made) - 1
    device.refresh_from_db()
    assert device.last_used_at is not None


@pytest.mark.parametrize(
    "typed",
    ["", "abcde", "abcde-fghjkm", "abcde-fghj0", "abcde-fghjl", "abcdé-fghjk", None, 1234567890],
)
def test_a_malformed_recovery_code_is_refused_before_any_comparison(user, typed):
    backed_codes(user)
    with pytest.raises(InvalidCode):
        methods.use_recovery_code(user, typed)
    assert not MethodEvent.objects.filter(action=MethodAction.FAILED).exists()


def test_a_wrong_recovery_code_is_incorrect_and_recorded(user):
    made = backed_codes(user)
    with pytest.raises(IncorrectCode):
        methods.use_recovery_code(user, wrong_recovery(made), client=CLIENT)
    failed = MethodEvent.objects.get(action=MethodAction.FAILED)
    assert (failed.method, failed.user, failed.client_ip) == ("recovery", user, CLIENT.ip)
    assert methods.recovery_codes_left(user) == len(made)


def test_using_a_recovery_code_tells_every_confirmed_phone(user, django_user_model, outbox):
    phone_of(user)
    phone_of(user, "+46709876543")
    phone_of(user, "+46705550101", confirmed=False)
    made = backed_codes(user)
    methods.use_recovery_code(user, made[0])
    notices = [sms for sms in outbox if sms.purpose == "notice"]
    assert sorted(sms.to for sms in notices) == ["+46701234567", "+46709876543"]
    for sms in notices:
        assert "recovery code" in sms.text
        assert made[0] not in sms.text and made[0].replace("-", "") not in sms.text


def test_a_user_without_recovery_codes_has_none_to_use(user):
    with pytest.raises(MethodUnavailable):
        methods.use_recovery_code(user, "abcde-fghjk")
    assert methods.recovery_codes_left(user) == 0


# ------------------------------------------------------- authenticator app


def test_an_authenticator_app_is_added_by_its_first_code(user):
    device = methods.start_totp(user)
    assert not device.confirmed
    assert methods.pending_totp(user) == device
    assert methods.pending_totp(user, str(device.pk)) == device
    confirmed = methods.confirm_totp(user, device.pk, totp_code(device), client=CLIENT)
    assert confirmed.confirmed
    assert methods.user_methods(user) == ["totp"]
    with pytest.raises(DeviceNotFound):
        methods.pending_totp(user)


def test_starting_again_discards_the_earlier_unconfirmed_app(user):
    first = methods.start_totp(user)
    second = methods.start_totp(user)
    assert first.pk != second.pk
    with pytest.raises(DeviceNotFound):
        methods.pending_totp(user, first.pk)


def test_the_app_is_set_up_from_an_otpauth_uri_and_an_inline_svg(user, sms2fa_settings):
    device = methods.start_totp(user)
    secret = methods.totp_secret(device)
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    url = methods.totp_config_url(device, "Example: Inc")
    assert url.startswith("otpauth://totp/Example%20Inc%3Aalice?")
    assert f"secret={secret}" in url and "issuer=Example%20Inc" in url
    assert "digits=6" in url and "period=30" in url
    svg = methods.totp_qr_svg(device, "Example Inc")
    assert svg.startswith("<svg") and "http" not in svg.replace("http://www.w3.org", "")
    assert methods.issuer_for("example.com:8443") == "example.com"
    sms2fa_settings(TOTP_ISSUER="Example Inc")
    assert methods.issuer_for("example.com") == "Example Inc"


def test_a_confirmed_app_signs_in_and_can_be_removed(user, remembering):
    device = confirmed_totp(user)
    with time_machine.travel(timezone.now() + timedelta(seconds=next_step()), tick=False):
        assert methods.check_code(user, "totp", totp_code(device)) == device
    cookie = methods.remember_browser(user, device)
    assert methods.remove_totp(user) is True
    assert methods.remove_totp(user) is False
    assert methods.user_methods(user) == []
    assert methods.recognised_browser(user, cookie) is None  # removed: forgotten


def test_a_second_app_needs_the_first_removed(user):
    confirmed_totp(user)
    with pytest.raises(MethodAlreadyEnrolled):
        methods.start_totp(user)


# ------------------------------------------------------------- which method


def test_user_methods_lists_confirmed_methods_default_first(user):
    assert methods.user_methods(user) == []
    assert methods.user_methods(None) == []
    phone = phone_of(user)
    assert methods.user_methods(user) == ["phone"]
    app = confirmed_totp(user)
    backed_codes(user)
    # The app was used (its confirmation) and the phone never: the app leads.
    assert methods.user_methods(user) == ["totp", "phone", "recovery"]
    phone.last_used_at = timezone.now() + timedelta(seconds=5)
    phone.save()
    assert methods.user_methods(user) == ["phone", "totp", "recovery"]
    app.delete()
    assert methods.user_methods(user) == ["phone", "recovery"]


def test_recovery_codes_lead_only_when_nothing_else_is_left(user):
    phone = phone_of(user)
    made = backed_codes(user)
    methods.use_recovery_code(user, made[0])  # the newest use of all
    assert methods.user_methods(user) == ["phone", "recovery"]
    phone.delete()
    assert methods.user_methods(user) == ["recovery"]
    for code in made[1:]:
        methods.use_recovery_code(user, code)
    assert methods.user_methods(user) == []  # every code spent


def test_begin_second_factor_starts_the_default_or_the_chosen_method(user, outbox):
    assert login_flows.begin_second_factor(user) is None
    phone_of(user)
    device = confirmed_totp(user)
    step = login_flows.begin_second_factor(user)
    assert (step.method, step.methods, step.challenge) == ("totp", ["totp", "phone"], None)
    assert outbox == []  # an app needs nothing sent
    step = login_flows.begin_second_factor(user, method="phone")
    assert step.method == "phone" and step.challenge is not None
    assert len(outbox) == 1 and outbox[0].to == PHONE
    with time_machine.travel(timezone.now() + timedelta(seconds=next_step()), tick=False):
        assert login_flows.finish_with_method(user, "totp", totp_code(device)) == device
    phone = login_flows.finish_with_method(
        user, "phone", outbox[0].code, challenge_id=step.challenge.pk
    )
    assert phone.number == PHONE


def test_method_of_and_device_for(user):
    phone = phone_of(user)
    app = confirmed_totp(user)
    backed_codes(user)
    recovery = RecoveryCodeDevice.objects.get(user=user)
    assert [methods.method_of(d) for d in (phone, app, recovery)] == ["phone", "totp", "recovery"]
    assert methods.method_of(object()) is None
    assert methods.device_for(user, "phone") == phone
    assert methods.device_for(user, "totp") == app
    assert methods.device_for(user, "recovery") == recovery
    with pytest.raises(MethodUnavailable):
        methods.device_for(user, "carrier-pigeon")


# ------------------------------------------------------ remembered browsers


def test_a_remembered_browser_is_recognised_until_forgotten(user, remembering):
    phone = phone_of(user)
    cookie = methods.remember_browser(user, phone, client=CLIENT)
    assert methods.recognised_browser(user, cookie) == phone
    browser = methods.browsers_of(user).get()
    assert browser.user_agent == CLIENT.user_agent and browser.client_ip == CLIENT.ip
    assert browser.last_used_at is not None
    assert str(browser.pk) not in cookie.split(":")[1:]  # the id, then the signature
    assert methods.forget_browser(user, browser.pk) is True
    assert methods.recognised_browser(user, cookie) is None
    with pytest.raises(DeviceNotFound):
        methods.forget_browser(user, browser.pk)  # already forgotten
    with pytest.raises(DeviceNotFound):
        methods.forget_browser(user, "not-a-uuid")


def test_one_user_cannot_forget_anothers_browser(user, other_user, remembering):
    cookie = methods.remember_browser(user, phone_of(user))
    browser = RememberedBrowser.objects.get(user=user)
    with pytest.raises(DeviceNotFound):
        methods.forget_browser(other_user, browser.pk)
    assert methods.recognised_browser(user, cookie) is not None


def test_remembering_is_off_by_default(user):
    assert not methods.remembering_enabled()
    with pytest.raises(MethodUnavailable):
        methods.remember_browser(user, phone_of(user))


# ----------------------------------------------------------------- audit


def test_every_event_leaves_an_audit_row_without_a_code(user, remembering):
    phone = phone_of(user)
    made = backed_codes(user, client=CLIENT)
    made += backed_codes(user, client=CLIENT)
    methods.use_recovery_code(user, made[-1], client=CLIENT)
    with pytest.raises(IncorrectCode):
        methods.use_recovery_code(user, made[0], client=CLIENT)  # an old set's
    pending = methods.start_totp(user)
    first = totp_code(pending)
    methods.confirm_totp(user, pending.pk, first, client=CLIENT)
    with time_machine.travel(timezone.now() + timedelta(seconds=next_step()), tick=False):
        used = totp_code(pending)
        methods.verify_totp(user, used, client=CLIENT)
        with pytest.raises(IncorrectCode):
            methods.verify_totp(user, wrong_totp(pending), client=CLIENT)
    cookie = methods.remember_browser(user, phone, client=CLIENT)
    methods.forget_browsers(user, client=CLIENT)
    methods.remove_totp(user, client=CLIENT)

    rows = list(MethodEvent.objects.order_by("pk").values_list("method", "action", "detail"))
    assert [(m, a) for m, a, _ in rows] == [
        ("recovery", "added"),
        ("recovery", "regenerated"),
        ("recovery", "used"),
        ("recovery", "failed"),
        ("totp", "confirmed"),
        ("totp", "used"),
        ("totp", "failed"),
        ("phone", "remembered"),
        ("phone", "forgotten"),
        ("totp", "removed"),
    ]
    details = dict(((m, a), d) for m, a, d in rows)
    assert details[("recovery", "used")] == f"{len(made) // 2 - 1} left"
    assert details[("phone", "remembered")] == CLIENT.user_agent
    secrets = [*made, *(c.replace("-", "") for c in made), first, used, cookie]
    for _, _, detail in rows:
        for secret in secrets:
            assert secret not in detail
    assert set(MethodEvent.objects.values_list("client_ip", flat=True)) == {CLIENT.ip}
    assert all(
        e.actor_id in (None, user.pk) and e.user_id == user.pk for e in MethodEvent.objects.all()
    )


def test_recovery_codes_alone_are_refused(user):
    """Codes with no phone and no app would be the account's only second
    factor, made on a page the password alone opened."""
    with pytest.raises(MethodUnavailable):
        methods.generate_recovery_codes(user)
    assert not RecoveryCodeDevice.objects.filter(user=user).exists()
    phone_of(user)
    assert len(methods.generate_recovery_codes(user)) == 10


def test_new_codes_forget_a_browser_remembered_after_a_recovery_login(user, remembering):
    made = backed_codes(user)
    device = methods.use_recovery_code(user, made[0])
    cookie = methods.remember_browser(user, device, client=CLIENT)
    assert methods.recognised_browser(user, cookie) is not None
    backed_codes(user)  # the codes leaked, or the phone was found: new ones
    assert methods.recognised_browser(user, cookie) is None
