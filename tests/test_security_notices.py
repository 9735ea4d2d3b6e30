"""The owner hears of every change to their sign-in factors.

Adding, replacing or removing a phone (by the owner or by staff), a number
unbound because its new holder confirmed it on another account, and a lockout:
each sends ``signals.security_event`` once and, by default, one email to the
account's address through the adapter's ``send_security_notice``, saying what
changed, when and from which IP, and never a code, a code hash or a full
number.
"""

from __future__ import annotations

import json

import pytest

from django.contrib.auth import get_user_model
from django.core import mail

from django_sms2fa import device_flows, flows, signals
from django_sms2fa.adapter import DefaultSms2faAdapter
from django_sms2fa.exceptions import IncorrectCode, TooManyAttempts, VerificationLocked
from django_sms2fa.models import Challenge, PhoneDevice, Purpose
from django_sms2fa.phones import mask_phone
from django_sms2fa.types import ClientInfo

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
NEW_PHONE = "+46709876543"
THIRD_PHONE = "+46731112233"
NUMBERS = (PHONE, NEW_PHONE, THIRD_PHONE)
IP = "198.51.100.7"
CLIENT = ClientInfo(ip=IP, user_agent="tests")


def wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


def sms_to(outbox, phone):
    return [sms for sms in outbox if sms.to == phone]


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user(
        username="olga", password="owner pw", email="olga@example.com"
    )


@pytest.fixture
def device(owner):
    return PhoneDevice.objects.create(user=owner, number=PHONE, name="Mobile", confirmed=True)


@pytest.fixture
def events():
    """Every security_event: (user pk, event, context)."""
    seen: list[tuple[int, str, dict]] = []

    def receiver(sender, user, event, context, **kwargs):
        seen.append((user.pk, event, dict(context)))

    signals.security_event.connect(receiver)
    yield seen
    signals.security_event.disconnect(receiver)


def assert_no_secret(message, outbox) -> None:
    """No code ever sent, no code hash, no full number in the notice."""
    text = f"{message.subject}\n{message.body}"
    for sms in outbox:
        if sms.code:
            assert sms.code not in text
    for code_hash in Challenge.objects.exclude(code_hash="").values_list("code_hash", flat=True):
        assert code_hash not in text
    for number in NUMBERS:
        assert number not in text
        assert number[1:] not in text  # the digits without the plus
        assert number[3:] not in text  # the national number


def only_notice_to(address: str):
    notices = [m for m in mail.outbox if address in m.to]
    assert len(notices) == 1, [(m.to, m.subject) for m in mail.outbox]
    return notices[0]


def confirm(user, number, outbox, *, replaces=None):
    new, challenge = device_flows.enrol_phone(
        user, number, verified_session=True, replaces=replaces, client=CLIENT
    )
    code = sms_to(outbox, number)[-1].code
    return device_flows.confirm_phone(user, new.pk, challenge.pk, code, client=CLIENT)


# --------------------------------------------------------------- each event


def test_adding_a_phone_sends_one_notice(owner, outbox, events):
    confirm(owner, NEW_PHONE, outbox)
    notice = only_notice_to("olga@example.com")
    assert mask_phone(NEW_PHONE) in notice.body and IP in notice.body
    assert_no_secret(notice, outbox)
    assert [(e[0], e[1]) for e in events] == [(owner.pk, "phone_added")]


def test_replacing_a_phone_sends_one_notice(owner, device, outbox, events):
    confirm(owner, NEW_PHONE, outbox, replaces=device.pk)
    notice = only_notice_to("olga@example.com")
    assert mask_phone(PHONE) in notice.body and mask_phone(NEW_PHONE) in notice.body
    assert IP in notice.body
    assert_no_secret(notice, outbox)
    assert [e[1] for e in events] == ["phone_replaced"]


def test_removing_a_phone_sends_one_notice(owner, device, outbox, events):
    device_flows.remove_phone(owner, device.pk, verified_session=True, client=CLIENT)
    notice = only_notice_to("olga@example.com")
    assert mask_phone(PHONE) in notice.body and IP in notice.body
    assert_no_secret(notice, outbox)
    assert [e[1] for e in events] == ["phone_removed"]


def test_staff_deleting_a_phone_sends_one_notice_to_its_owner(
    owner, device, admin_user, outbox, events
):
    device_flows.delete_device(device, actor=admin_user, client_ip="192.0.2.9")
    notice = only_notice_to("olga@example.com")
    assert "192.0.2.9" in notice.body
    assert_no_secret(notice, outbox)
    assert [e[1] for e in events] == ["phone_removed"]


def test_a_number_confirmed_elsewhere_sends_one_notice_to_each_account(
    owner, device, outbox, events
):
    newcomer = get_user_model().objects.create_user(
        username="nils", password="new pw", email="nils@example.com"
    )
    confirm(newcomer, PHONE, outbox)
    old = only_notice_to("olga@example.com")
    new = only_notice_to("nils@example.com")
    assert mask_phone(PHONE) in old.body
    # The old account is not told the new holder's address.
    assert IP not in old.body and IP in new.body
    for notice in (old, new):
        assert_no_secret(notice, outbox)
    assert sorted((e[0], e[1]) for e in events) == sorted(
        [(owner.pk, "phone_unbound"), (newcomer.pk, "phone_added")]
    )


def test_a_lockout_sends_one_notice(owner, device, outbox, events, settings):
    locked = False
    for _ in range(10):  # enough challenges to reach the threshold and beyond
        challenge = flows.request_challenge(
            phone=PHONE, purpose=Purpose.LOGIN, user=owner, device=device, client=CLIENT
        )
        code = outbox[-1].code
        try:
            for _ in range(challenge.max_attempts):
                flows.verify_challenge(challenge.pk, wrong(code), user=owner)
        except (IncorrectCode, TooManyAttempts):
            continue
        except VerificationLocked:
            locked = True
            break
    if not locked:
        # The send itself is refused once locked.
        with pytest.raises(VerificationLocked):
            flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=owner)
    notice = only_notice_to("olga@example.com")
    assert mask_phone(PHONE) in notice.body
    assert_no_secret(notice, outbox)
    assert [e[1] for e in events] == ["lockout"]


# -------------------------------------------------------------- the channel


def test_no_notice_when_nothing_a_factor_changed(owner, outbox, events):
    # A phone still being enrolled, then dropped: no factor changed.
    new, _challenge = device_flows.enrol_phone(owner, NEW_PHONE, verified_session=True)
    device_flows.remove_phone(owner, new.pk, verified_session=True)
    assert mail.outbox == [] and events == []


def test_an_account_without_an_address_gets_no_email_and_no_error(user, outbox, events):
    assert not user.email
    confirm(user, NEW_PHONE, outbox)
    assert mail.outbox == []
    assert [e[1] for e in events] == ["phone_added"]  # the signal still goes out


class PushAdapter(DefaultSms2faAdapter):
    sent: list[tuple[int, str, dict]] = []

    def send_security_notice(self, user, event, context):
        self.sent.append((user.pk, event, context))


def test_a_site_can_use_its_own_channel(owner, device, outbox, sms2fa_settings):
    sms2fa_settings(ADAPTER=f"{__name__}.PushAdapter")
    PushAdapter.sent.clear()
    device_flows.remove_phone(owner, device.pk, verified_session=True, client=CLIENT)
    assert mail.outbox == []
    [(user_pk, event, context)] = PushAdapter.sent
    assert (user_pk, event) == (owner.pk, "phone_removed")
    assert context["phone"] == mask_phone(PHONE) and context["ip"] == IP
    assert PHONE not in repr(context)


class BrokenMailAdapter(DefaultSms2faAdapter):
    def send_security_notice(self, user, event, context):
        raise ConnectionRefusedError("mail server down")


def test_a_notice_that_cannot_be_sent_does_not_undo_the_change(
    owner, device, outbox, sms2fa_settings, caplog
):
    sms2fa_settings(ADAPTER=f"{__name__}.BrokenMailAdapter")
    device_flows.remove_phone(owner, device.pk, verified_session=True, client=CLIENT)
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()
    assert "phone_removed notice" in caplog.text


# ------------------------------------------------------------ SEND_VIA_TASKS


@pytest.fixture
def notice_queue(settings, sms2fa_settings):
    """SEND_VIA_TASKS on a dummy backend: notices wait there until a test runs them."""
    from .test_tasks import DUMMY, task_backends

    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    sms2fa_settings(SEND_VIA_TASKS=True)
    backend = task_backends["default"]
    backend.clear()
    return backend


def test_with_tasks_the_notice_leaves_the_request_and_the_queue_holds_no_secret(
    owner, device, outbox, notice_queue
):
    # The removal itself sends no SMS through the queue; only the notice is queued.
    device_flows.remove_phone(owner, device.pk, verified_session=True, client=CLIENT)
    assert mail.outbox == []
    [queued] = [
        r
        for r in notice_queue.results
        if r.task.module_path == "django_sms2fa.notice_tasks.send_security_notice"
    ]
    stored = json.dumps({"args": list(queued.args), "kwargs": queued.kwargs}, ensure_ascii=False)
    assert PHONE not in stored and PHONE[1:] not in stored and mask_phone(PHONE) in stored
    assert queued.task.call(*queued.args, **queued.kwargs) == "sent"
    notice = only_notice_to("olga@example.com")
    assert mask_phone(PHONE) in notice.body and IP in notice.body
    assert_no_secret(notice, outbox)


def test_with_tasks_a_lockout_queues_one_notice(owner, device, outbox, notice_queue):
    from django_sms2fa import notices

    notices.notify(owner, "lockout", {"phone": mask_phone(PHONE), "when": None, "ip": ""})
    [queued] = notice_queue.results
    assert queued.task.call(*queued.args, **queued.kwargs) == "sent"
    assert "lockout" in json.dumps(list(queued.args))
    only_notice_to("olga@example.com")
