"""Retention: ``retention.purge`` and ``manage.py sms2fa_purge``."""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta

import pytest

from django.core.management import CommandError, call_command
from django.db.models.signals import post_delete
from django.utils import timezone

from django_sms2fa import flows, retention
from django_sms2fa.management.commands.sms2fa_purge import parse_age
from django_sms2fa.models import (
    Challenge,
    ChallengeStatus,
    DeviceAction,
    DeviceEvent,
    Message,
    Purpose,
    Refusal,
)

pytestmark = pytest.mark.django_db


def challenge(age_days: float, *, messages: int = 1, message_age_days: float | None = None):
    created = timezone.now() - timedelta(days=age_days)
    row = Challenge.objects.create(
        id=uuid.uuid4(),
        phone="+46701234567",
        region="SE",
        purpose=Purpose.LOGIN,
        status=ChallengeStatus.EXPIRED,
        max_attempts=5,
        sends=messages,
        created_at=created,
        expires_at=created + timedelta(minutes=5),
    )
    sent = timezone.now() - timedelta(days=message_age_days if message_age_days else age_days)
    for _ in range(messages):
        Message.objects.create(
            challenge=row, phone=row.phone, provider="default", status="sent", created_at=sent
        )
    return row


def others(age_days: float) -> None:
    """One challenge-less message, refusal and device event of that age."""
    at = timezone.now() - timedelta(days=age_days)
    Message.objects.create(phone="+46701111111", provider="default", created_at=at)
    Refusal.objects.create(created_at=at, reason="rate_limited", limit="phone")
    DeviceEvent.objects.create(created_at=at, action=DeviceAction.ADDED, number="+46701111111")


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("sms2fa_purge", *args, stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "challenges": Challenge.objects.count(),
        "messages": Message.objects.count(),
        "refusals": Refusal.objects.count(),
        "device_events": DeviceEvent.objects.count(),
    }


@pytest.fixture
def rows():
    """5 old challenges (2 SMS each, one resent after the cutoff), 3 recent ones,
    and old and recent rows of the other kinds."""
    old = [challenge(100.5 + i, messages=2) for i in range(4)]
    old.append(challenge(95, messages=1, message_age_days=80))  # its resend is young
    kept = [challenge(10 + i) for i in range(2)] + [challenge(89.9)]
    others(120)
    others(91)
    others(5)
    return old, kept


def test_old_rows_go_and_recent_rows_stay(rows):
    old, kept = rows
    output = purge("--older-than", "90d")
    assert counts() == {"challenges": 3, "messages": 4, "refusals": 1, "device_events": 3}
    assert not Challenge.objects.filter(pk__in=[c.pk for c in old]).exists()
    assert set(Challenge.objects.values_list("pk", flat=True)) == {c.pk for c in kept}
    # The messages of kept challenges are all kept; only the young orphan remains.
    assert Message.objects.filter(challenge__in=kept).count() == 3
    assert Message.objects.filter(challenge__isnull=True).count() == 1
    assert re.search(
        r"^deleted 5 challenges, 11 messages, 2 refusals, 0 device events "
        r"in \d+\.\d s \(\d+ rows/s\)$",
        output,
        flags=re.M,
    ), output


def test_device_events_are_kept_unless_asked_for(rows):
    """Device events are the record of every phone ever bound (NIST SP
    800-63B-4 §4.1): the default purge keeps them; --device-events ages them out."""
    assert "would delete 5 challenges, 11 messages, 2 refusals, 0 device events" in purge(
        "--older-than", "90d", "--dry-run"
    )
    purge("--older-than", "90d")
    assert counts()["device_events"] == 3
    assert "would delete 0 challenges, 0 messages, 0 refusals, 2 device events" in purge(
        "--older-than", "90d", "--dry-run", "--device-events"
    )
    output = purge("--older-than", "90d", "--device-events")
    assert "deleted 0 challenges, 0 messages, 0 refusals, 2 device events" in output
    assert counts()["device_events"] == 1


def test_a_rerun_deletes_nothing_more(rows):
    purge("--older-than", "90d")
    before = counts()
    output = purge("--older-than", "90d")
    assert counts() == before
    assert "deleted 0 challenges, 0 messages, 0 refusals, 0 device events" in output


@pytest.mark.parametrize("batch_size", [1, 2, 3, 1000])
def test_batches_of_any_size_delete_the_same(rows, batch_size):
    result = retention.purge(retention.cutoff_for(timedelta(days=90)), batch_size=batch_size)
    assert result.counts == {"challenges": 5, "messages": 11, "refusals": 2, "device_events": 0}
    assert counts() == {"challenges": 3, "messages": 4, "refusals": 1, "device_events": 3}
    assert result.elapsed > 0 and result.rows_per_second > 0


def test_rows_with_one_timestamp_are_all_deleted_across_batches():
    # A bulk import gives many rows the same created_at; the keyset walk
    # must not skip the ones a batch boundary falls between.
    created = timezone.now() - timedelta(days=200)
    Challenge.objects.bulk_create(
        Challenge(
            id=uuid.uuid4(),
            phone="+46701234567",
            purpose=Purpose.LOGIN,
            max_attempts=5,
            created_at=created,
            expires_at=created,
        )
        for _ in range(7)
    )
    result = retention.purge(retention.cutoff_for(timedelta(days=90)), batch_size=3)
    assert result.counts["challenges"] == 7 and result.batches == 3
    assert not Challenge.objects.exists()


def test_the_retention_setting_is_the_default(rows, sms2fa_settings):
    sms2fa_settings(RETENTION_DAYS=101)
    output = purge()
    assert "deleted 3 challenges, 7 messages, 1 refusals, 0 device events" in output
    sms2fa_settings(RETENTION_DAYS=9)
    purge()
    assert Challenge.objects.count() == 0 and counts()["messages"] == 1


def test_dry_run_counts_and_deletes_nothing(rows):
    before = counts()
    output = purge("--older-than", "90d", "--dry-run")
    assert counts() == before
    assert "would delete 5 challenges, 11 messages, 2 refusals, 0 device events" in output


def test_an_interrupted_purge_keeps_its_batches_and_a_rerun_finishes(rows, monkeypatch):
    real = retention.purge

    def interrupted(cutoff, *, batch_size, progress, device_events, **options):
        def stop_after_first(result):
            progress(result)
            raise KeyboardInterrupt  # Ctrl-C between two batches

        return real(
            cutoff,
            batch_size=batch_size,
            progress=stop_after_first,
            device_events=device_events,
            **options,
        )

    monkeypatch.setattr(retention, "purge", interrupted)
    with pytest.raises(CommandError, match=r"Interrupted: deleted 2 challenges, 4 messages"):
        purge("--older-than", "90d", "--batch-size", "2")
    assert counts()["challenges"] == 6
    monkeypatch.setattr(retention, "purge", real)
    purge("--older-than", "90d", "--batch-size", "2")
    assert counts() == {"challenges": 3, "messages": 4, "refusals": 1, "device_events": 3}


def test_a_batch_that_fails_halfway_is_rolled_back_whole(rows, monkeypatch):
    """The messages of a batch go first; if the challenges then fail to go,
    the batch's messages come back with the rollback."""
    real_delete = retention._delete_challenges
    calls = []

    def failing_delete(using, ids):
        calls.append(ids)
        if len(calls) == 2:
            raise RuntimeError("connection lost")
        return real_delete(using, ids)

    monkeypatch.setattr(retention, "_delete_challenges", failing_delete)
    with pytest.raises(RuntimeError):
        retention.purge(retention.cutoff_for(timedelta(days=90)), batch_size=2)
    # Batch 1 (2 challenges, 4 SMS) is gone; batch 2 is intact, SMS included.
    assert counts()["challenges"] == 6
    assert Message.objects.filter(challenge_id__in=calls[1]).count() == 4
    assert counts()["messages"] == 15 - 4
    monkeypatch.setattr(retention, "_delete_challenges", real_delete)
    retention.purge(retention.cutoff_for(timedelta(days=90)), batch_size=2)
    assert counts() == {"challenges": 3, "messages": 4, "refusals": 1, "device_events": 3}


def test_delete_signals_are_sent_when_a_site_listens(rows):
    """Without listeners a batch is one DELETE per table; with one, Django's
    delete() runs so the site hears about every challenge."""
    heard = []

    def receiver(sender, instance, **kwargs):
        heard.append(instance.pk)

    post_delete.connect(receiver, sender=Challenge)
    try:
        result = retention.purge(retention.cutoff_for(timedelta(days=90)), batch_size=2)
    finally:
        post_delete.disconnect(receiver, sender=Challenge)
    assert result.counts["challenges"] == 5 and len(heard) == 5
    assert counts() == {"challenges": 3, "messages": 4, "refusals": 1, "device_events": 3}


def test_progress_is_printed_while_it_runs(rows, monkeypatch):
    from django_sms2fa.management.commands import sms2fa_purge

    monkeypatch.setattr(sms2fa_purge, "_PROGRESS_EVERY", 0)
    lines = purge("--older-than", "90d", "--batch-size", "2").splitlines()
    assert lines[0].startswith("Deleting rows created before ")
    assert lines[1].startswith("  1 batches: deleted 2 challenges, 4 messages")
    assert lines[-1].startswith("deleted 5 challenges, 11 messages")
    assert not purge("--older-than", "90d", "--verbosity", "0").count("batches:")


def test_a_batch_never_exceeds_the_databases_parameter_limit(rows, monkeypatch):
    from django.db import connection

    features = connection.features
    monkeypatch.setattr(type(features), "max_query_params", 13, raising=False)
    if "max_query_params" in vars(features):  # a cached_property already read (PostgreSQL)
        monkeypatch.setitem(vars(features), "max_query_params", 13)
    result = retention.purge(
        retention.cutoff_for(timedelta(days=90)), batch_size=1000, device_events=True
    )
    # 13 - 10 = 3 ids per statement: the 5 challenges take 2 batches, each
    # other kind (2 rows) one.
    assert result.counts["challenges"] == 5 and result.batches == 2 + 1 + 1 + 1


def test_codes_are_never_printed(outbox, sms2fa_settings):
    sms2fa_settings(CODE_LENGTH=10)
    made = flows.request_challenge(phone="+46701234567", purpose=Purpose.LOGIN)
    Challenge.objects.filter(pk=made.pk).update(created_at=timezone.now() - timedelta(days=91))
    code_hash = Challenge.objects.get(pk=made.pk).code_hash
    output = purge("--older-than", "90d", "-v", "2") + purge("--dry-run")
    assert "deleted 1 challenges, 1 messages" in output
    assert outbox[-1].code not in output and code_hash not in output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        (" 30D ", timedelta(days=30)),
    ],
)
def test_ages(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize(
    "text", ["90", "0d", "d", "-1d", "1y", "1.5d", "abc", "36501d", "9999999w", "99999999d", ""]
)
def test_bad_ages_are_a_clear_error(text):
    with pytest.raises(CommandError, match=r"--older-than takes a positive whole number"):
        purge(f"--older-than={text}")


@pytest.mark.parametrize("size", ["0", "-5", "50001"])
def test_bad_batch_sizes_are_refused(size):
    with pytest.raises(CommandError, match="--batch-size"):
        purge("--batch-size", size)
