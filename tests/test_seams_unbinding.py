"""Attacks on a phone that has left an account: removed, replaced, or recycled.

A code already sent to a phone must die with the phone's place in the account:
once a device is removed or replaced, its number's open challenges for that
user are closed (a resend is refused and nothing is sent; a code cannot
complete a login, with a password or without). A number is confirmed on at
most one account: the new holder of a recycled number who proves it gets it,
and the previous account loses it, hears of it, and keeps no live code for it.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from django.contrib.auth import get_user_model
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from django_sms2fa import device_flows, flows, login_flows, signals
from django_sms2fa.exceptions import ChallengeCancelled
from django_sms2fa.models import (
    Challenge,
    ChallengeStatus,
    DeviceAction,
    DeviceEvent,
    PhoneDevice,
    Purpose,
)
from django_sms2fa.phones import mask_phone

from .api_support import api_post
from .race_support import race

PHONE = "+46701234567"
NEW_PHONE = "+46709876543"
THIRD_PHONE = "+46731112233"
PASSWORD = "correct horse"  # the `user` fixture's

LOGIN = "/2fa/login/"
LOGIN_CODE = "/2fa/login/code/"
PASSWORDLESS_URL = "/2fa/phone-login/"
PASSWORDLESS_CODE = "/2fa/phone-login/code/"


def logged_in_user_id(client) -> str | None:
    return client.session.get("_auth_user_id")


def sms_to(outbox, phone):
    return [sms for sms in outbox if sms.to == phone]


def status_of(challenge_id) -> str:
    return Challenge.objects.get(pk=challenge_id).status


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)


@pytest.fixture
def closed():
    """Every challenge_closed signal: (challenge id, reason)."""
    seen: list[tuple[str, str]] = []

    def receiver(sender, challenge, reason, **kwargs):
        seen.append((str(challenge.pk), reason))

    signals.challenge_closed.connect(receiver)
    yield seen
    signals.challenge_closed.disconnect(receiver)


def replace(user, old, new_number, outbox) -> PhoneDevice:
    """The owner, elsewhere, swaps ``old`` for ``new_number`` (enrol + confirm)."""
    new, challenge = device_flows.enrol_phone(
        user, new_number, verified_session=True, replaces=old.pk
    )
    return device_flows.confirm_phone(
        user, new.pk, challenge.pk, sms_to(outbox, new_number)[-1].code
    )


# ------------------------------------------------------ item: removed phone


@pytest.mark.django_db
def test_after_removal_a_resend_to_the_removed_phone_is_refused_and_sends_nothing(
    user, device, outbox
):
    # The thief holds the phone and the password: a login code is on its way.
    thief = Client()
    started = api_post(thief, "login/", {"username": "alice", "password": PASSWORD})
    challenge_id = started.json()["challenge"]["id"]
    # The owner, from a verified session elsewhere, removes the stolen phone.
    device_flows.remove_phone(user, device.pk, verified_session=True)
    outbox.clear()

    resent = api_post(thief, f"challenges/{challenge_id}/resend/")

    assert resent.status_code != 202, resent.content
    assert resent.status_code < 500
    assert sms_to(outbox, PHONE) == []
    assert status_of(challenge_id) == ChallengeStatus.CANCELLED


@pytest.mark.django_db
def test_every_open_challenge_of_a_removed_number_is_closed_with_a_signal(
    user, other_user, device, outbox, closed, django_capture_on_commit_callbacks
):
    login = flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user, device=device)
    passwordless = login_flows.start_passwordless(PHONE)
    queued = flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user)
    Challenge.objects.filter(pk=queued.pk).update(status=ChallengeStatus.QUEUED)
    # Not this user's: another account's challenge to the same number stays open.
    foreign = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE, user=other_user)

    # The signals go out once the removal commits.
    with django_capture_on_commit_callbacks(execute=True):
        device_flows.remove_phone(user, device.pk, verified_session=True)

    for challenge in (login, passwordless, queued):
        assert status_of(challenge.pk) == ChallengeStatus.CANCELLED
        assert (str(challenge.pk), "cancelled") in closed
    assert status_of(foreign.pk) == ChallengeStatus.PENDING


@pytest.mark.django_db
def test_removing_a_phone_still_being_enrolled_closes_its_code(user, device, outbox):
    new, challenge = device_flows.enrol_phone(user, NEW_PHONE, verified_session=True)
    device_flows.remove_phone(user, new.pk, verified_session=True)
    assert status_of(challenge.pk) == ChallengeStatus.CANCELLED


@pytest.mark.django_db
def test_a_device_deleted_in_the_admin_leaves_no_live_code(user, device, admin_user, outbox):
    login = flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user, device=device)
    code = outbox[-1].code
    device_flows.delete_device(device, actor=admin_user, client_ip="192.0.2.1")
    with pytest.raises(ChallengeCancelled):
        flows.verify_challenge(login.pk, code, user=user, purpose=Purpose.LOGIN)


@pytest.mark.django_db
def test_a_passwordless_code_to_a_removed_number_cannot_log_in_api(user, device, outbox):
    thief = Client()
    created = api_post(thief, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    challenge_id = created.json()["id"]
    code = outbox[-1].code
    device_flows.remove_phone(user, device.pk, verified_session=True)

    answer = api_post(thief, f"challenges/{challenge_id}/verify/", {"code": code})

    assert answer.status_code in (400, 404, 410), answer.content
    assert logged_in_user_id(thief) is None


@pytest.mark.django_db
def test_a_passwordless_code_to_a_removed_number_cannot_log_in_pages(user, device, outbox):
    thief = Client()
    assert thief.post(PASSWORDLESS_URL, {"phone": PHONE}).status_code == 302
    code = outbox[-1].code
    device_flows.remove_phone(user, device.pk, verified_session=True)

    answer = thief.post(PASSWORDLESS_CODE, {"code": code})

    assert answer.status_code < 500
    assert logged_in_user_id(thief) is None


# ----------------------------------------------------- item: replaced phone


@pytest.mark.django_db
def test_a_login_code_sent_to_a_replaced_phone_cannot_complete_the_login_api(user, device, outbox):
    thief = Client()
    started = api_post(thief, "login/", {"username": "alice", "password": PASSWORD})
    challenge_id = started.json()["challenge"]["id"]
    code = sms_to(outbox, PHONE)[-1].code
    replace(user, device, NEW_PHONE, outbox)

    answer = api_post(thief, "login/verify/", {"challenge": challenge_id, "code": code})

    assert answer.status_code in (400, 404, 410), answer.content
    assert logged_in_user_id(thief) is None
    assert status_of(challenge_id) == ChallengeStatus.CANCELLED


@pytest.mark.django_db
def test_a_login_code_sent_to_a_replaced_phone_cannot_complete_the_login_pages(
    user, device, outbox
):
    thief = Client()
    assert thief.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 302
    code = sms_to(outbox, PHONE)[-1].code
    replace(user, device, NEW_PHONE, outbox)

    answer = thief.post(LOGIN_CODE, {"code": code})

    assert answer.status_code < 500
    assert logged_in_user_id(thief) is None


@pytest.mark.django_db
def test_a_resend_to_a_replaced_phone_is_refused_and_sends_nothing(user, device, outbox):
    challenge = flows.request_challenge(
        phone=PHONE, purpose=Purpose.LOGIN, user=user, device=device
    )
    replace(user, device, NEW_PHONE, outbox)
    outbox.clear()
    with pytest.raises(ChallengeCancelled):
        flows.resend_challenge(challenge.pk, user=user)
    assert outbox == []


# ----------------------------------------------- item: one number, one account


@pytest.fixture
def previous_owner(db):
    """A, who had the number first, with an email address and a second phone."""
    owner = get_user_model().objects.create_user(
        username="anna", password="first owner pw", email="anna@example.com"
    )
    PhoneDevice.objects.create(user=owner, number=PHONE, name="Old", confirmed=True)
    PhoneDevice.objects.create(user=owner, number=THIRD_PHONE, name="Work", confirmed=True)
    return owner


@pytest.mark.django_db
def test_a_recycled_number_opens_the_new_holders_account_and_unbinds_the_old(
    previous_owner, outbox
):
    old_device = PhoneDevice.objects.get(user=previous_owner, number=PHONE)
    # A's codes to the number, still open when the number changes hands.
    a_login = flows.request_challenge(
        phone=PHONE, purpose=Purpose.LOGIN, user=previous_owner, device=old_device
    )
    a_passwordless = login_flows.start_passwordless(PHONE)
    assert a_passwordless.user_id == previous_owner.pk
    mail.outbox.clear()

    # B, the number's new holder, signs up, enrols it and proves it.
    new_holder = get_user_model().objects.create_user(username="bea", password="new owner pw")
    b = Client()
    b.force_login(new_holder)
    enrolled = api_post(b, "devices/", {"phone": PHONE})
    assert enrolled.status_code == 202, enrolled.content
    body = enrolled.json()
    confirmed = api_post(
        b,
        f"devices/{body['device']['id']}/confirm/",
        {"challenge": body["challenge"]["id"], "code": sms_to(outbox, PHONE)[-1].code},
    )
    assert confirmed.status_code == 200, confirmed.content

    # One confirmed owner, B; A lost the device, and the audit says so.
    assert list(
        PhoneDevice.objects.filter(number=PHONE, confirmed=True).values_list("user", flat=True)
    ) == [new_holder.pk]
    assert not PhoneDevice.objects.filter(pk=old_device.pk).exists()
    event = DeviceEvent.objects.get(user=previous_owner, action=DeviceAction.REMOVED)
    assert event.number == PHONE and event.actor_id == new_holder.pk
    # A's codes to the number are dead.
    assert status_of(a_login.pk) == ChallengeStatus.CANCELLED
    assert status_of(a_passwordless.pk) == ChallengeStatus.CANCELLED
    # A was told by email (masked number, no code) and on the other phone.
    to_a = [m for m in mail.outbox if "anna@example.com" in m.to]
    assert len(to_a) == 1
    assert PHONE not in to_a[0].body and mask_phone(PHONE) in to_a[0].body
    assert len(sms_to(outbox, THIRD_PHONE)) == 1
    # Nothing was said to the number itself about A's account.
    assert all(sms.code for sms in sms_to(outbox, PHONE))

    # Passwordless login with the number now opens B's account, not A's.
    c = Client()
    requested = api_post(c, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    verified = api_post(
        c, f"challenges/{requested.json()['id']}/verify/", {"code": sms_to(outbox, PHONE)[-1].code}
    )
    assert verified.status_code == 200, verified.content
    assert logged_in_user_id(c) == str(new_holder.pk)


@pytest.mark.django_db
def test_the_database_refuses_a_number_confirmed_on_two_accounts(user, other_user, device):
    with pytest.raises(IntegrityError), transaction.atomic():
        PhoneDevice.objects.create(user=other_user, number=PHONE, confirmed=True)
    # Unconfirmed (being enrolled elsewhere) is allowed.
    PhoneDevice.objects.create(user=other_user, number=PHONE, confirmed=False)


@pytest.mark.django_db
def test_passwordless_picks_the_one_confirmed_owner_not_the_oldest_row(user, other_user, outbox):
    # A's device is the older row, but unconfirmed; B's is the confirmed one.
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=False)
    mine = PhoneDevice.objects.create(user=other_user, number=PHONE, confirmed=True)
    challenge = login_flows.start_passwordless(PHONE)
    assert challenge.user_id == other_user.pk and challenge.device_id == mine.pk
    logged, device = login_flows.finish_passwordless(challenge.pk, outbox[-1].code)
    assert logged == other_user and device == mine


# --------------------------------------------- item: concurrent replacements


RACE_ROUNDS = int(os.environ.get("SMS2FA_RACE_ROUNDS", "30"))


def enrolled(user, number, outbox, *, replaces=None):
    """An enrolment waiting for its code: (device id, challenge id, code)."""
    new, challenge = device_flows.enrol_phone(
        user, number, verified_session=True, replaces=replaces
    )
    return new.pk, challenge.pk, sms_to(outbox, number)[-1].code


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_confirmations_replacing_one_phone_never_deadlock(user, outbox, capsys):
    """Two new phones, each enrolled to replace the same old one, confirmed at
    the same instant: no database error (a 500), and a consistent result."""
    totals: Counter = Counter()
    for _round in range(RACE_ROUNDS):
        PhoneDevice.objects.filter(user=user).delete()
        old = PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True)
        pending = [enrolled(user, n, outbox, replaces=old.pk) for n in (NEW_PHONE, THIRD_PHONE)]
        results = race(
            [lambda args=args: device_flows.confirm_phone(user, *args) for args in pending]
        )
        totals.update(results)
        if any(r.startswith("crash") for r in results):
            continue  # counted; the assertion below reports every round
        # Consistent: the old phone is gone, every confirmed phone is one of the
        # new ones, and the user still has a second factor.
        numbers = set(
            PhoneDevice.objects.filter(user=user, confirmed=True).values_list("number", flat=True)
        )
        assert PHONE not in numbers and numbers and numbers <= {NEW_PHONE, THIRD_PHONE}
    with capsys.disabled():
        print(f"\nconcurrent replacements over {RACE_ROUNDS} rounds: {dict(totals)}")
    assert not [r for r in totals if r.startswith("crash")], dict(totals)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_number_claimed_by_two_accounts_at_once_ends_with_one_owner(
    user, other_user, outbox, capsys
):
    """A has the number; B and C confirm it at the same instant while A
    removes it: no 500, and exactly one confirmed owner, B or C."""
    third = get_user_model().objects.create_user(username="carl", password="third pw")
    totals: Counter = Counter()
    for _round in range(RACE_ROUNDS):
        PhoneDevice.objects.all().delete()
        old = PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True)
        claims = [enrolled(u, PHONE, outbox) for u in (other_user, third)]
        results = race(
            [
                lambda c=claims[0]: device_flows.confirm_phone(other_user, *c),
                lambda c=claims[1]: device_flows.confirm_phone(third, *c),
                lambda pk=old.pk: device_flows.remove_phone(user, pk, verified_session=True),
            ]
        )
        totals.update(results)
        owners = list(
            PhoneDevice.objects.filter(number=PHONE, confirmed=True).values_list("user", flat=True)
        )
        assert len(owners) == 1 and owners[0] in (other_user.pk, third.pk), owners
        assert not Challenge.objects.filter(
            user=user, phone=PHONE, status__in=["pending", "queued"]
        ).exists()
    with capsys.disabled():
        print(f"\ntwo accounts claiming one number over {RACE_ROUNDS} rounds: {dict(totals)}")
    assert not [r for r in totals if r.startswith("crash")], dict(totals)


# ------------------------------------------------------ migration 0006


@pytest.mark.django_db(transaction=True)
def test_migration_0006_keeps_the_newest_confirmation_of_a_number(django_user_model):
    """Rows from before the rule: a number confirmed on two accounts. The
    migration unbinds the older device (recorded, its codes cancelled) and
    only then adds the constraint."""
    before = [("django_sms2fa", "0005_field_labels_message_status_choices")]
    after = [("django_sms2fa", "0006_phone_number_confirmed_once")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Device = apps.get_model("django_sms2fa", "PhoneDevice")
    HistoricalChallenge = apps.get_model("django_sms2fa", "Challenge")
    first = django_user_model.objects.create_user(username="first", password="x")
    second = django_user_model.objects.create_user(username="second", password="x")
    older = Device.objects.create(user_id=first.pk, number=PHONE, confirmed=True, name="a")
    newer = Device.objects.create(user_id=second.pk, number=PHONE, confirmed=True, name="b")
    kept = Device.objects.create(user_id=first.pk, number=NEW_PHONE, confirmed=True, name="c")
    now = timezone.now()
    live = HistoricalChallenge.objects.create(
        user_id=first.pk,
        device_id=older.pk,
        phone=PHONE,
        purpose="login",
        status="pending",
        max_attempts=5,
        created_at=now,
        expires_at=now,
    )

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert list(PhoneDevice.objects.filter(number=PHONE).values_list("pk", flat=True)) == [newer.pk]
    assert PhoneDevice.objects.filter(pk=kept.pk, confirmed=True).exists()
    event = DeviceEvent.objects.get(action=DeviceAction.REMOVED)
    assert (event.user_id, event.number) == (first.pk, PHONE)
    assert Challenge.objects.get(pk=live.pk).status == ChallengeStatus.CANCELLED


@pytest.mark.django_db
def test_registration_with_a_phone_token_applies_the_same_rule(previous_owner, outbox):
    """A site's sign-up binds a number proved by a phone_token: the number
    moves to the new account, as when a logged-in user confirms it."""
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    verified = flows.verify_challenge(challenge.pk, outbox[-1].code, purpose=Purpose.VERIFY_PHONE)
    phone = login_flows.redeem_phone_token(login_flows.issue_phone_token(verified))
    newcomer = get_user_model().objects.create_user(username="sam", password="pw")

    device = device_flows.bind_verified_phone(newcomer, phone)

    assert device.confirmed and device.user == newcomer
    assert list(
        PhoneDevice.objects.filter(number=PHONE, confirmed=True).values_list("user", flat=True)
    ) == [newcomer.pk]
    assert len([m for m in mail.outbox if "anna@example.com" in m.to]) == 1
    # Binding it again changes nothing.
    assert device_flows.bind_verified_phone(newcomer, phone).pk == device.pk


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["device.delete()", "user.delete()"])
def test_a_device_deleted_by_the_sites_own_code_leaves_no_live_code(user, device, outbox, how):
    login = flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user, device=device)
    passwordless = login_flows.start_passwordless(PHONE)
    if how == "device.delete()":
        device.delete()
    else:
        user.delete()
    assert status_of(login.pk) == ChallengeStatus.CANCELLED
    assert status_of(passwordless.pk) == ChallengeStatus.CANCELLED
