"""login_flows and device_flows, called directly: the rules without HTTP."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
import time_machine

from django.utils import timezone

from django_sms2fa import device_flows, flows, login_flows, signals
from django_sms2fa.adapter import DefaultSms2faAdapter
from django_sms2fa.exceptions import (
    ChallengeAlreadyUsed,
    ChallengeCancelled,
    ChallengeNotFound,
    DeviceNotFound,
    IncorrectCode,
    InvalidPhone,
    PhoneAlreadyEnrolled,
    ProviderUnavailable,
    RateLimited,
    SecondFactorRequired,
)
from django_sms2fa.models import Challenge, ChallengeStatus, Message, PhoneDevice, Purpose
from django_sms2fa.providers import locmem

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
NEW_PHONE = "+46709876543"
THIRD_PHONE = "+46731112233"
UNKNOWN_PHONE = "+46701234587"


def wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


def fresh(challenge) -> Challenge:
    return Challenge.objects.get(pk=challenge.pk)


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)


@pytest.fixture
def received():
    """Records (signal name, kwargs) for the device signals."""
    events = []

    def on_confirmed(sender, **kwargs):
        events.append(("device_confirmed", kwargs))

    def on_removed(sender, **kwargs):
        events.append(("device_removed", kwargs))

    signals.device_confirmed.connect(on_confirmed)
    signals.device_removed.connect(on_removed)
    yield events
    signals.device_confirmed.disconnect(on_confirmed)
    signals.device_removed.disconnect(on_removed)


# --------------------------------------------------------- second factor


def test_start_second_factor_without_a_phone_is_none(user, outbox):
    assert login_flows.start_second_factor(user) is None
    assert outbox == [] and not Challenge.objects.exists()


def test_an_unconfirmed_phone_is_not_a_second_factor(user, outbox):
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=False)
    assert login_flows.start_second_factor(user) is None
    assert outbox == []


def test_start_second_factor_sends_a_login_code_to_the_users_phone(user, device, outbox):
    challenge = login_flows.start_second_factor(user)
    assert (challenge.purpose, challenge.user_id, challenge.device_id) == (
        Purpose.LOGIN,
        user.pk,
        device.pk,
    )
    assert challenge.phone == PHONE
    assert [(sms.to, sms.purpose) for sms in outbox] == [(PHONE, "login")]


def test_the_login_code_goes_to_the_most_recently_used_phone(user, device, outbox):
    recent = PhoneDevice.objects.create(
        user=user, number=NEW_PHONE, confirmed=True, last_used_at=timezone.now()
    )
    challenge = login_flows.start_second_factor(user)
    assert challenge.device_id == recent.pk
    assert outbox[-1].to == NEW_PHONE


def test_finish_second_factor_returns_the_device(user, device, outbox):
    challenge = login_flows.start_second_factor(user)
    assert login_flows.finish_second_factor(challenge.pk, outbox[-1].code, user=user) == device
    assert fresh(challenge).status == ChallengeStatus.VERIFIED
    device.refresh_from_db()
    assert device.last_used_at is not None


def test_finish_second_factor_refuses_another_user(user, other_user, device, outbox):
    challenge = login_flows.start_second_factor(user)
    with pytest.raises(ChallengeNotFound):
        login_flows.finish_second_factor(challenge.pk, outbox[-1].code, user=other_user)
    assert fresh(challenge).attempts == 0


def test_finish_second_factor_refuses_a_wrong_code(user, device, outbox):
    challenge = login_flows.start_second_factor(user)
    with pytest.raises(IncorrectCode) as caught:
        login_flows.finish_second_factor(challenge.pk, wrong(outbox[-1].code), user=user)
    assert caught.value.attempts_left == 4


def test_finish_second_factor_refuses_other_purposes(user, device, outbox):
    challenge = login_flows.start_passwordless(PHONE)
    with pytest.raises(ChallengeNotFound):
        login_flows.finish_second_factor(challenge.pk, outbox[-1].code, user=user)


def test_finish_second_factor_when_the_phone_went_away(user, device, outbox):
    challenge = login_flows.start_second_factor(user)
    device.delete()
    # Deleting the device cancels its open challenges (signals.py, pre_delete).
    with pytest.raises((ChallengeNotFound, ChallengeCancelled)):
        login_flows.finish_second_factor(challenge.pk, outbox[-1].code, user=user)


# ------------------------------------------------------------ passwordless


def test_start_passwordless_for_a_known_number(user, device, outbox):
    challenge = login_flows.start_passwordless("070-123 45 67")
    assert (challenge.user_id, challenge.phone, challenge.sends) == (user.pk, PHONE, 1)
    assert challenge.purpose == Purpose.PASSWORDLESS
    assert [(sms.to, sms.purpose) for sms in outbox] == [(PHONE, "passwordless")]
    assert login_flows.finish_passwordless(challenge.pk, outbox[-1].code) == (user, device)


def test_start_passwordless_for_an_unknown_number_sends_nothing(user, device, outbox):
    challenge = login_flows.start_passwordless(UNKNOWN_PHONE)
    stored = fresh(challenge)
    assert stored.user_id is None
    assert stored.sends == 0
    assert stored.status == ChallengeStatus.PENDING
    assert stored.purpose == Purpose.PASSWORDLESS
    assert outbox == []
    assert not Message.objects.exists()


def test_an_unknown_number_can_be_told_without_a_code(user, outbox, sms2fa_settings):
    sms2fa_settings(PASSWORDLESS_UNKNOWN_NUMBER="notify")
    challenge = login_flows.start_passwordless(UNKNOWN_PHONE)
    assert fresh(challenge).sends == 0
    assert len(outbox) == 1
    notice = outbox[0]
    assert notice.to == UNKNOWN_PHONE
    assert notice.code == ""
    assert notice.purpose == "notice"
    assert notice.text == DefaultSms2faAdapter().unknown_number_text()
    assert not any(ch.isdigit() for ch in notice.text)


def test_notify_does_not_change_a_known_numbers_sms(user, device, outbox, sms2fa_settings):
    sms2fa_settings(PASSWORDLESS_UNKNOWN_NUMBER="notify")
    login_flows.start_passwordless(PHONE)
    assert [sms.purpose for sms in outbox] == ["passwordless"]
    assert outbox[0].code and outbox[0].code in outbox[0].text


def test_a_number_of_an_inactive_user_gets_a_decoy(user, device, outbox):
    user.is_active = False
    user.save()
    challenge = login_flows.start_passwordless(PHONE)
    assert challenge.user_id is None and outbox == []


def test_an_unconfirmed_number_gets_a_decoy(user, outbox):
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=False)
    challenge = login_flows.start_passwordless(PHONE)
    assert challenge.user_id is None and outbox == []


def test_start_passwordless_refuses_an_invalid_number(outbox):
    with pytest.raises(InvalidPhone):
        login_flows.start_passwordless("12")
    assert not Challenge.objects.exists()


def test_a_decoy_cannot_be_verified(outbox):
    challenge = login_flows.start_passwordless(UNKNOWN_PHONE)
    with pytest.raises(IncorrectCode):
        login_flows.finish_passwordless(challenge.pk, "123456")


def test_finish_passwordless_for_an_inactive_user_is_not_found(user, device, outbox):
    challenge = login_flows.start_passwordless(PHONE)
    user.is_active = False
    user.save()
    with pytest.raises(ChallengeNotFound):
        login_flows.finish_passwordless(challenge.pk, outbox[-1].code)


def test_finish_passwordless_for_a_deleted_user_logs_nobody_in(user, device, outbox):
    challenge = login_flows.start_passwordless(PHONE)
    user.delete()
    # The user's devices go with the user, and their open challenges are
    # cancelled with them (signals.py, pre_delete). Refused either way.
    with pytest.raises((ChallengeNotFound, IncorrectCode, ChallengeCancelled)):
        login_flows.finish_passwordless(challenge.pk, outbox[-1].code)
    assert fresh(challenge).status == ChallengeStatus.CANCELLED


def test_finish_passwordless_refuses_a_login_challenge(user, device, outbox):
    challenge = login_flows.start_second_factor(user)
    with pytest.raises(ChallengeNotFound):
        login_flows.finish_passwordless(challenge.pk, outbox[-1].code)


def test_resending_a_decoy_sends_nothing(outbox):
    challenge = login_flows.start_passwordless(UNKNOWN_PHONE)
    old_hash = fresh(challenge).code_hash
    again = flows.resend_challenge(challenge.pk)
    assert again.pk == challenge.pk
    stored = fresh(challenge)
    assert stored.sends == 0
    assert stored.code_hash != old_hash  # re-armed like a real one, just silent
    assert outbox == []
    assert not Message.objects.exists()


def test_resending_a_decoy_with_notify_sends_nothing_more(outbox, sms2fa_settings):
    sms2fa_settings(PASSWORDLESS_UNKNOWN_NUMBER="notify")
    challenge = login_flows.start_passwordless(UNKNOWN_PHONE)
    flows.resend_challenge(challenge.pk)
    assert len(outbox) == 1  # the one notice


# ---------------------------------------------------------------- enrol


def test_enrol_a_first_phone_without_a_verified_session(user, outbox):
    device, challenge = device_flows.enrol_phone(user, "070-987 65 43", verified_session=False)
    assert (device.user_id, device.number, device.confirmed) == (user.pk, NEW_PHONE, False)
    assert device.name == "+46•••••••43"
    assert (challenge.purpose, challenge.device_id, challenge.user_id) == (
        Purpose.VERIFY_PHONE,
        device.pk,
        user.pk,
    )
    assert [(sms.to, sms.purpose) for sms in outbox] == [(NEW_PHONE, "verify_phone")]


def test_enrol_needs_a_verified_session_once_there_is_a_phone(user, device, outbox):
    with pytest.raises(SecondFactorRequired):
        device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    assert PhoneDevice.objects.count() == 1
    assert outbox == [] and not Challenge.objects.exists()


def test_enrol_refuses_a_number_already_confirmed(user, device, outbox):
    with pytest.raises(PhoneAlreadyEnrolled):
        device_flows.enrol_phone(user, "0701234567", verified_session=True)
    assert outbox == []


def test_enrol_refuses_an_invalid_number(user, outbox):
    with pytest.raises(InvalidPhone):
        device_flows.enrol_phone(user, "12345", verified_session=True)
    assert not PhoneDevice.objects.exists()


def test_another_user_may_enrol_the_same_number(user, other_user, device, outbox):
    other_device, _challenge = device_flows.enrol_phone(other_user, PHONE, verified_session=False)
    assert other_device.user_id == other_user.pk


def test_enrolling_an_unconfirmed_number_again_reuses_the_device(user, outbox):
    first, first_challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    second, second_challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    assert first.pk == second.pk
    assert first_challenge.pk != second_challenge.pk
    assert PhoneDevice.objects.count() == 1


@pytest.mark.parametrize("replaces", [999_999, "abc", "1.5", -1, 10**30])
def test_enrol_refuses_replacing_an_unknown_device(user, device, outbox, replaces):
    with pytest.raises(DeviceNotFound):
        device_flows.enrol_phone(user, NEW_PHONE, verified_session=True, replaces=replaces)
    assert outbox == []


def test_enrol_refuses_replacing_someone_elses_device(user, other_user, device, outbox):
    foreign = PhoneDevice.objects.create(user=other_user, number=THIRD_PHONE, confirmed=True)
    with pytest.raises(DeviceNotFound):
        device_flows.enrol_phone(user, NEW_PHONE, verified_session=True, replaces=foreign.pk)


def test_enrol_refuses_replacing_an_unconfirmed_device(user, device, outbox):
    pending = PhoneDevice.objects.create(user=user, number=THIRD_PHONE, confirmed=False)
    with pytest.raises(DeviceNotFound):
        device_flows.enrol_phone(user, NEW_PHONE, verified_session=True, replaces=pending.pk)


# -------------------------------------------------------------- confirm


def test_confirm_a_first_phone(user, outbox, received):
    device, challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    confirmed = device_flows.confirm_phone(user, device.pk, challenge.pk, outbox[-1].code)
    assert confirmed.pk == device.pk
    device.refresh_from_db()
    assert device.confirmed and device.last_used_at is not None
    stored = fresh(challenge)
    assert stored.status == ChallengeStatus.VERIFIED and stored.consumed_at is not None
    assert len(outbox) == 1  # no other phone to tell
    assert [(name, kw["device"].pk, kw["replaced"]) for name, kw in received] == [
        ("device_confirmed", device.pk, None)
    ]


def test_confirm_tells_the_other_phones(user, device, outbox):
    third = PhoneDevice.objects.create(user=user, number=THIRD_PHONE, confirmed=True)
    new, challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=True)
    device_flows.confirm_phone(user, new.pk, challenge.pk, outbox[-1].code)
    notices = {sms.to: sms for sms in outbox if sms.purpose == "notice"}
    assert set(notices) == {PHONE, THIRD_PHONE}
    expected = DefaultSms2faAdapter().phone_added_text(NEW_PHONE)
    assert all(sms.text == expected and sms.code == "" for sms in notices.values())
    assert third.pk != new.pk


def test_removing_a_phone_tells_it_and_the_other_phones(user, device, outbox):
    """NIST SP 800-63B-4 §4.6: the removed number (its owner may not be the one
    who removed it) and every other phone of the account are told."""
    PhoneDevice.objects.create(user=user, number=THIRD_PHONE, confirmed=True)
    pending, _challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=True)
    outbox.clear()
    device_flows.remove_phone(user, device.pk, verified_session=True)
    notices = {sms.to: sms for sms in outbox if sms.purpose == "notice"}
    # The unconfirmed phone is not a channel of the account yet: not told.
    assert set(notices) == {PHONE, THIRD_PHONE}
    expected = DefaultSms2faAdapter().phone_removed_text(PHONE)
    assert all(sms.text == expected and sms.code == "" for sms in notices.values())
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()


def test_cancelling_an_enrolment_tells_nobody(user, device, outbox):
    pending, _challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=True)
    outbox.clear()
    device_flows.remove_phone(user, pending.pk, verified_session=False)
    assert outbox == []
    assert PhoneDevice.objects.filter(pk=device.pk).exists()


def test_a_failed_notice_does_not_undo_the_change(user, device, outbox):
    new, challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=True)
    locmem.fail_next(ProviderUnavailable("down"))
    device_flows.confirm_phone(user, new.pk, challenge.pk, outbox[-1].code)
    new.refresh_from_db()
    assert new.confirmed
    assert Message.objects.filter(phone=PHONE, status="failed").exists()


def test_confirm_refuses_another_devices_challenge(user, outbox):
    first, first_challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    first_code = outbox[-1].code
    second, _second_challenge = device_flows.enrol_phone(user, THIRD_PHONE, verified_session=False)
    with pytest.raises(ChallengeNotFound):
        device_flows.confirm_phone(user, second.pk, first_challenge.pk, first_code)
    assert fresh(first_challenge).attempts == 0
    second.refresh_from_db()
    assert not second.confirmed


@pytest.mark.parametrize("challenge_id", ["not-a-uuid", None, "", 12])
def test_confirm_refuses_garbage_challenge_ids(user, outbox, challenge_id):
    device, _challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    with pytest.raises(ChallengeNotFound):
        device_flows.confirm_phone(user, device.pk, challenge_id, outbox[-1].code)


def test_confirm_refuses_a_loose_challenge_for_the_same_number(user, outbox):
    device, _challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    loose = flows.request_challenge(phone=NEW_PHONE, purpose=Purpose.VERIFY_PHONE, user=user)
    with pytest.raises(ChallengeNotFound):
        device_flows.confirm_phone(user, device.pk, loose.pk, outbox[-1].code)


def test_confirm_refuses_someone_elses_device(user, other_user, outbox):
    device, challenge = device_flows.enrol_phone(other_user, NEW_PHONE, verified_session=False)
    with pytest.raises(DeviceNotFound):
        device_flows.confirm_phone(user, device.pk, challenge.pk, outbox[-1].code)


@pytest.mark.parametrize("device_id", [999_999, "abc", None, 10**30])
def test_confirm_refuses_unknown_device_ids(user, outbox, device_id):
    _device, challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    with pytest.raises(DeviceNotFound):
        device_flows.confirm_phone(user, device_id, challenge.pk, outbox[-1].code)


def test_confirm_refuses_a_wrong_code_and_then_a_replay(user, outbox):
    device, challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=False)
    code = outbox[-1].code
    with pytest.raises(IncorrectCode):
        device_flows.confirm_phone(user, device.pk, challenge.pk, wrong(code))
    device.refresh_from_db()
    assert not device.confirmed
    device_flows.confirm_phone(user, device.pk, challenge.pk, code)
    with pytest.raises(ChallengeAlreadyUsed):
        device_flows.confirm_phone(user, device.pk, challenge.pk, code)


# -------------------------------------------------------------- replace


def test_replace_retires_the_old_phone_on_confirmation(user, device, outbox, received):
    new, challenge = device_flows.enrol_phone(
        user, NEW_PHONE, verified_session=True, replaces=device.pk
    )
    assert challenge.purpose == Purpose.CHANGE_PHONE
    assert new.replaces_id == device.pk
    assert PhoneDevice.objects.filter(pk=device.pk, confirmed=True).exists()  # not yet
    device_flows.confirm_phone(user, new.pk, challenge.pk, outbox[-1].code)
    assert list(PhoneDevice.objects.filter(user=user).values_list("number", flat=True)) == [
        NEW_PHONE
    ]
    new.refresh_from_db()
    assert new.confirmed and new.replaces_id is None
    assert [sms.to for sms in outbox if sms.purpose == "notice"] == [PHONE]
    ((name, kwargs),) = received
    assert name == "device_confirmed" and kwargs["device"].pk == new.pk
    assert kwargs["replaced"] is not None and kwargs["replaced"].number == PHONE


def test_replace_sends_the_replaced_text_to_the_old_number(user, device, outbox):
    new, challenge = device_flows.enrol_phone(
        user, NEW_PHONE, verified_session=True, replaces=device.pk
    )
    device_flows.confirm_phone(user, new.pk, challenge.pk, outbox[-1].code)
    (notice,) = [sms for sms in outbox if sms.purpose == "notice"]
    assert notice.to == PHONE
    assert notice.text == DefaultSms2faAdapter().phone_replaced_text(PHONE, NEW_PHONE)


def test_an_abandoned_replacement_leaves_the_old_phone(user, device, outbox):
    new, challenge = device_flows.enrol_phone(
        user, NEW_PHONE, verified_session=True, replaces=device.pk
    )
    flows.cancel_challenge(challenge.pk)
    device.refresh_from_db()
    assert device.confirmed
    assert [sms.purpose for sms in outbox] == ["change_phone"]


# --------------------------------------------------------------- remove


def test_remove_needs_a_verified_session(user, device, received):
    with pytest.raises(SecondFactorRequired):
        device_flows.remove_phone(user, device.pk, verified_session=False)
    assert PhoneDevice.objects.filter(pk=device.pk).exists()
    assert received == []


def test_remove_a_phone(user, device, received):
    device_flows.remove_phone(user, device.pk, verified_session=True)
    assert not PhoneDevice.objects.exists()
    assert [(name, kw["device"].number) for name, kw in received] == [("device_removed", PHONE)]


@pytest.mark.parametrize("device_id", [999_999, "abc", None])
def test_remove_refuses_unknown_ids(user, device, device_id):
    with pytest.raises(DeviceNotFound):
        device_flows.remove_phone(user, device_id, verified_session=True)
    assert PhoneDevice.objects.count() == 1


def test_remove_refuses_someone_elses_device(user, other_user):
    foreign = PhoneDevice.objects.create(user=other_user, number=PHONE, confirmed=True)
    with pytest.raises(DeviceNotFound):
        device_flows.remove_phone(user, foreign.pk, verified_session=True)
    assert PhoneDevice.objects.filter(pk=foreign.pk).exists()


# ------------------------------------------------------- resend cooldown


@pytest.fixture
def cooldown(sms2fa_settings):
    sms2fa_settings(RESEND_INTERVAL=30)


def test_resend_at_once_is_rate_limited_for_the_whole_interval(cooldown, outbox):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
        with pytest.raises(RateLimited) as caught:
            flows.resend_challenge(challenge.pk)
        assert caught.value.retry_after == 30
        traveller.shift(29)
        with pytest.raises(RateLimited) as caught:
            flows.resend_challenge(challenge.pk)
        assert caught.value.retry_after == 1
        assert len(outbox) == 1
        traveller.shift(1)
        flows.resend_challenge(challenge.pk)
        assert len(outbox) == 2
        assert fresh(challenge).sends == 2
        assert flows.resend_ready_at(fresh(challenge)) == timezone.now() + timedelta(seconds=30)


def test_the_cooldown_counts_from_the_last_send(cooldown, outbox):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
        traveller.shift(45)
        flows.resend_challenge(challenge.pk)
        traveller.shift(10)
        with pytest.raises(RateLimited) as caught:
            flows.resend_challenge(challenge.pk)
        assert caught.value.retry_after == 20


def test_two_resends_in_the_same_instant_send_once(cooldown, outbox):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
        traveller.shift(30)
        flows.resend_challenge(challenge.pk)
        with pytest.raises(RateLimited) as caught:
            flows.resend_challenge(challenge.pk)
        assert caught.value.retry_after == 30
    assert len(outbox) == 2
    assert fresh(challenge).sends == 2


@pytest.mark.parametrize("mode", ["text", "verifies_code"])
def test_two_resends_that_read_the_same_state_send_once(cooldown, outbox, sms2fa_settings, mode):
    # The race without threads: the second resend read the challenge before the
    # first one wrote, so its own check passes; the database's conditional
    # UPDATE must still refuse it. With a provider that checks codes itself
    # there is no code hash to compare: last_sent_at alone decides.
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": mode},
            }
        }
    )
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
        assert (fresh(challenge).code_hash == "") is (mode == "verifies_code")
        traveller.shift(30)
        stale = Challenge.objects.select_related("user").get(pk=challenge.pk)
        flows.resend_challenge(challenge.pk)
        real_load = flows._load
        loads = iter([stale])

        def load(*args, **kwargs):
            return next(loads, None) or real_load(*args, **kwargs)

        with mock.patch.object(flows, "_load", side_effect=load):
            with pytest.raises(RateLimited) as caught:
                flows.resend_challenge(challenge.pk)
        assert caught.value.retry_after == 30
    assert len(outbox) == 2
    assert fresh(challenge).sends == 2


def test_the_cooldown_does_not_slow_down_verification(cooldown, outbox):
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    flows.verify_challenge(challenge.pk, outbox[-1].code)
    assert fresh(challenge).status == ChallengeStatus.VERIFIED
