"""SEND_VIA_TASKS: the request queues, a task sends (once), and nothing secret is queued.

These run the task in this process (Django's dummy backend keeps what was
enqueued; the test calls it, once or more). tests/test_tasks_worker.py runs a
real worker process against a real database.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import time_machine

import django
from django.core.checks import run_checks
from django.db import connection, transaction
from django.utils import timezone

from django_sms2fa import flows
from django_sms2fa.api.errors import STATUS_BY_CODE
from django_sms2fa.exceptions import (
    ChallengeCancelled,
    ChallengeExpired,
    ChallengeQueued,
    DeliveryFailed,
    IncorrectCode,
)
from django_sms2fa.models import Challenge, ChallengeStatus, Message, Purpose
from django_sms2fa.providers import locmem

from .api_support import API, api_post, assert_error

if django.VERSION >= (6, 0):
    from django.tasks import task_backends
    from django.tasks.backends.base import BaseTaskBackend

    TASKS_PACKAGE = "django.tasks"
else:  # the backport
    from django_tasks import task_backends
    from django_tasks.backends.base import BaseTaskBackend

    TASKS_PACKAGE = "django_tasks"

PHONE = "+46701234567"
DUMMY = f"{TASKS_PACKAGE}.backends.dummy.DummyBackend"
IMMEDIATE = f"{TASKS_PACKAGE}.backends.immediate.ImmediateBackend"


class BrokenBackend(BaseTaskBackend):
    """A task backend whose store is down (a database or Redis outage)."""

    def enqueue(self, task, args, kwargs):
        raise ConnectionError("the queue is unreachable")


@pytest.fixture
def queue(settings, sms2fa_settings):
    """SEND_VIA_TASKS on a dummy backend: what is enqueued stays there until a test runs it."""
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    sms2fa_settings(SEND_VIA_TASKS=True)
    backend = task_backends["default"]
    backend.clear()
    return backend


def run(result) -> str:
    """Run one enqueued task here, as a worker would."""
    return result.task.call(*result.args, **result.kwargs)


def fresh(challenge: Challenge) -> Challenge:
    return Challenge.objects.get(pk=challenge.pk)


def request(**kwargs) -> Challenge:
    return flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE, **kwargs)


# ------------------------------------------------------------------ request


@pytest.mark.django_db
def test_the_request_queues_and_calls_no_provider(queue, outbox):
    challenge = request()
    assert challenge.status == ChallengeStatus.QUEUED
    row = fresh(challenge)
    assert row.status == ChallengeStatus.QUEUED
    # No code exists yet, so there is none to leak: the worker makes it.
    assert row.code_hash == ""
    assert outbox == []
    assert not Message.objects.exists()
    assert len(queue.results) == 1
    assert queue.results[0].task.module_path == "django_sms2fa.tasks.send_challenge_sms"


@pytest.mark.django_db
def test_the_task_carries_identifiers_only(queue, outbox):
    challenge = request(language="sv")
    (result,) = queue.results
    assert list(result.args) == [str(challenge.pk), challenge.last_sent_at.isoformat(), "sv"]
    assert result.kwargs == {}
    assert run(result) == "sent"
    # The code the phone got appears nowhere in what the queue stored.
    stored = json.dumps({"args": result.args, "kwargs": result.kwargs})
    assert outbox[0].code not in stored


@pytest.mark.django_db
def test_the_worker_sends_and_the_code_then_verifies(queue, outbox):
    challenge = request()
    assert run(queue.results[0]) == "sent"
    row = fresh(challenge)
    assert row.status == ChallengeStatus.PENDING
    assert row.code_hash and outbox[0].code not in row.code_hash
    assert Message.objects.filter(challenge=challenge).count() == 1
    assert flows.verify_challenge(challenge.pk, outbox[0].code).status == ChallengeStatus.VERIFIED


@pytest.mark.django_db
def test_a_task_run_twice_sends_once(queue, outbox):
    challenge = request()
    (result,) = queue.results
    assert [run(result), run(result), run(result)] == ["sent", "skipped", "skipped"]
    assert len(outbox) == 1
    assert Message.objects.filter(challenge=challenge).count() == 1
    flows.verify_challenge(challenge.pk, outbox[0].code)


@pytest.mark.django_db
def test_the_immediate_backend_sends_during_the_request(settings, sms2fa_settings, outbox):
    settings.TASKS = {"default": {"BACKEND": IMMEDIATE}}
    sms2fa_settings(SEND_VIA_TASKS=True)
    challenge = request()
    assert len(outbox) == 1
    assert fresh(challenge).status == ChallengeStatus.PENDING
    flows.verify_challenge(challenge.pk, outbox[0].code)


@pytest.mark.django_db
def test_task_backend_picks_the_backend(settings, sms2fa_settings, outbox):
    settings.TASKS = {"default": {"BACKEND": IMMEDIATE}, "sms": {"BACKEND": DUMMY}}
    sms2fa_settings(SEND_VIA_TASKS=True, TASK_BACKEND="sms")
    request()
    assert outbox == []  # not run by "default"
    assert len(task_backends["sms"].results) == 1


@pytest.mark.django_db
def test_a_test_number_is_not_queued(queue, outbox, sms2fa_settings):
    sms2fa_settings(TEST_NUMBERS={PHONE: "246810"})
    challenge = request()
    assert fresh(challenge).status == ChallengeStatus.PENDING
    assert queue.results == [] and outbox == []
    flows.verify_challenge(challenge.pk, "246810")


@pytest.mark.django_db
def test_a_decoy_is_queued_like_any_challenge_and_sends_nothing(queue, outbox):
    decoy = flows.request_challenge(phone=PHONE, purpose=Purpose.PASSWORDLESS, deliver=False)
    assert decoy.status == ChallengeStatus.QUEUED
    assert run(queue.results[0]) == "decoy"
    assert fresh(decoy).status == ChallengeStatus.PENDING
    assert outbox == []


# ------------------------------------------------------- verify, cancel, expiry


@pytest.mark.django_db
def test_verify_of_a_queued_challenge_is_refused_without_using_an_attempt(queue, outbox):
    challenge = request()
    for _ in range(challenge.max_attempts + 2):
        with pytest.raises(ChallengeQueued):
            flows.verify_challenge(challenge.pk, "123456")
    row = fresh(challenge)
    assert (row.status, row.attempts, row.wrong_attempts) == (ChallengeStatus.QUEUED, 0, 0)
    run(queue.results[0])
    flows.verify_challenge(challenge.pk, outbox[0].code)


@pytest.mark.django_db
def test_cancel_of_a_queued_challenge_stops_the_send(queue, outbox):
    challenge = request()
    assert flows.cancel_challenge(challenge.pk) is True
    assert fresh(challenge).status == ChallengeStatus.CANCELLED
    assert run(queue.results[0]) == "skipped"
    assert outbox == []
    with pytest.raises(ChallengeCancelled):
        flows.verify_challenge(challenge.pk, "123456")


@pytest.mark.django_db
def test_a_queued_challenge_expires(queue, outbox):
    challenge = request()
    with time_machine.travel(challenge.expires_at + timedelta(seconds=1)):
        with pytest.raises(ChallengeExpired):
            flows.verify_challenge(challenge.pk, "123456")
    assert fresh(challenge).status == ChallengeStatus.EXPIRED
    assert run(queue.results[0]) == "skipped"
    assert outbox == []


@pytest.mark.django_db
def test_a_task_that_runs_after_the_lifetime_sends_nothing(queue, outbox):
    challenge = request()
    with time_machine.travel(challenge.expires_at + timedelta(seconds=1)):
        assert run(queue.results[0]) == "expired"
    assert fresh(challenge).status == ChallengeStatus.EXPIRED
    assert outbox == []


@pytest.mark.django_db
def test_malformed_task_arguments_do_nothing(queue, outbox):
    challenge = request()
    assert flows.send_queued("not-a-uuid", queued_at="x") == "skipped"
    assert flows.send_queued(challenge.pk, queued_at="yesterday") == "skipped"
    assert flows.send_queued(challenge.pk, queued_at=timezone.now().isoformat()) == "skipped"
    assert outbox == [] and fresh(challenge).status == ChallengeStatus.QUEUED


# ------------------------------------------------------------------- resend


@pytest.mark.django_db
def test_resend_goes_through_the_queue_and_an_old_task_stays_silent(queue, outbox):
    challenge = request()
    first = queue.results[0]
    assert run(first) == "sent"
    old_code = outbox[0].code
    resent = flows.resend_challenge(challenge.pk)
    assert resent.status == ChallengeStatus.QUEUED
    assert len(outbox) == 1 and len(queue.results) == 2
    # The old code died with the resend, and nothing can be checked meanwhile.
    with pytest.raises(ChallengeQueued):
        flows.verify_challenge(challenge.pk, old_code)
    # The first task delivered again (a broker's duplicate) claims nothing.
    assert run(first) == "skipped"
    with pytest.raises(ChallengeQueued):
        flows.resend_challenge(challenge.pk)
    assert run(queue.results[1]) == "sent"
    assert len(outbox) == 2
    assert fresh(challenge).sends == 2
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, old_code)
    flows.verify_challenge(challenge.pk, outbox[1].code)


# ------------------------------------------------------------------ failures


@pytest.mark.django_db
def test_a_provider_outage_in_the_worker_leaves_it_undeliverable(queue, outbox):
    challenge = request()
    locmem.fail_next(locmem.ProviderUnavailable("down"), times=5)
    assert run(queue.results[0]) == "undeliverable"
    assert fresh(challenge).status == ChallengeStatus.UNDELIVERABLE
    assert run(queue.results[0]) == "skipped"  # a retry sends nothing


@pytest.mark.django_db
def test_an_unreachable_queue_fails_the_request(settings, sms2fa_settings, outbox, caplog):
    settings.TASKS = {"default": {"BACKEND": "tests.test_tasks.BrokenBackend"}}
    sms2fa_settings(SEND_VIA_TASKS=True)
    with pytest.raises(DeliveryFailed) as caught:
        request()
    challenge = Challenge.objects.get(pk=caught.value.context["challenge_id"])
    assert challenge.status == ChallengeStatus.UNDELIVERABLE
    assert "ConnectionError" in caplog.text and "unreachable" not in caplog.text


@pytest.mark.django_db
def test_inside_a_transaction_the_task_waits_for_the_commit(
    queue, outbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            challenge = request()
            assert queue.results == []
    assert [r.args[0] for r in queue.results] == [str(challenge.pk)]


@pytest.mark.django_db
def test_a_rolled_back_request_queues_nothing(queue, outbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                request()
                raise RuntimeError("the caller's transaction fails")
    assert queue.results == [] and not Challenge.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_of_one_task_send_exactly_once(queue, outbox):
    challenge = request()
    (result,) = queue.results
    runs = 12
    barrier = threading.Barrier(runs)
    outcomes: list[str] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(run(result))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["sent"] + ["skipped"] * (runs - 1)
    assert len(outbox) == 1
    assert Message.objects.filter(challenge=challenge).count() == 1


# ---------------------------------------------------------------------- API


@pytest.mark.django_db
def test_the_api_answers_queued_then_409_until_the_worker_sends(queue, outbox, client):
    answer = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "queued"
    verify = f"challenges/{body['id']}/verify/"
    assert_error(api_post(client, verify, {"code": "123456"}), 409, "challenge_queued")
    assert_error(api_post(client, f"challenges/{body['id']}/resend/"), 409, "challenge_queued")
    run(queue.results[0])
    answer = api_post(client, verify, {"code": outbox[0].code})
    assert answer.status_code == 200, answer.content
    assert STATUS_BY_CODE["challenge_queued"] == 409


@pytest.mark.django_db
def test_the_api_can_cancel_a_queued_challenge(queue, outbox, client):
    body = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"}).json()
    assert client.delete(f"{API}challenges/{body['id']}/").status_code == 204
    assert run(queue.results[0]) == "skipped" and outbox == []


@pytest.mark.django_db
def test_known_and_unknown_numbers_both_answer_queued(queue, outbox, client, user):
    from django_sms2fa.models import PhoneDevice

    PhoneDevice.objects.create(user=user, number=PHONE, name="phone", confirmed=True)
    known = api_post(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    unknown = api_post(client, "challenges/", {"phone": "+46709876543", "purpose": "passwordless"})
    assert known.status_code == unknown.status_code == 202
    assert known.json()["status"] == unknown.json()["status"] == "queued"
    assert [run(r) for r in queue.results] == ["sent", "decoy"]


# ------------------------------------------------------------------- checks


def ids() -> list[str]:
    return [message.id for message in run_checks()]


def test_a_task_backend_missing_from_tasks_is_reported(settings, sms2fa_settings):
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    sms2fa_settings(SEND_VIA_TASKS=True, TASK_BACKEND="sms")
    assert "sms2fa.E011" in ids()
    settings.TASKS = {"default": {"BACKEND": DUMMY}, "sms": {"BACKEND": DUMMY}}
    assert "sms2fa.E011" not in ids()


def test_without_send_via_tasks_the_backend_is_not_checked(settings, sms2fa_settings):
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    sms2fa_settings(TASK_BACKEND="sms")
    assert "sms2fa.E011" not in ids()
