"""The app on a message table partitioned by month (docs/howto/partitioning.md).

Each test converts the test database's message table with the SQL the page
includes (``docs/howto/partitioning.sql``, read here, so page and test cannot
drift) and its periodic tasks (the page's Python block, run here), then uses
the app on it. Everything happens in the test's transaction, DDL included, and
is rolled back with it: the tests after these find the plain table again.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from django.contrib import admin
from django.core.management import call_command
from django.db import DatabaseError, connection, migrations, models
from django.urls import include, path, reverse
from django.utils import timezone

from django_sms2fa import delivery, flows, retention, stats
from django_sms2fa.admin.base import _planner_estimate
from django_sms2fa.conf import app_settings
from django_sms2fa.models import (
    AuditAction,
    AuditRecord,
    Challenge,
    ChallengeStatus,
    Message,
    Purpose,
)
from django_sms2fa.types import DELIVERED, SENT

from .api_support import api_post

HOWTO = Path(__file__).resolve().parent.parent / "docs" / "howto"
SQL_FILE = HOWTO / "partitioning.sql"
PAGE = HOWTO / "partitioning.md"

TABLE = "django_sms2fa_message"
LEGACY = f"{TABLE}_legacy"
DEFAULT = f"{TABLE}_default"
PHONE = "+46701234567"
IP1_ID = "5c613848879973045cf39ac4"
IP1_SECRET = "ip1-webhook-secret-9f8e7d6c5b4a"

# The admin, the REST API and the delivery webhooks, as a site mounts them.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/2fa/", include("django_sms2fa.api.urls")),
    path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls")),
]

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="table partitioning is PostgreSQL's: runs with SMS2FA_TEST_DB=postgres",
    ),
    pytest.mark.django_db,
    pytest.mark.urls(__name__),
]


# ------------------------------------------------------------------ helpers


def convert() -> None:
    """Run the page's SQL as the page's migration does (``RunSQL``)."""
    operation = migrations.RunSQL(SQL_FILE.read_text("utf-8"))
    with connection.schema_editor() as editor:
        operation.database_forwards("django_sms2fa", editor, None, None)


def page_tasks() -> dict[str, Any]:
    """The periodic tasks of the page: its Python block that defines them."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text("utf-8"), re.S)
    (block,) = [b for b in blocks if "def drop_old_message_partitions" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def query(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def relkind(table: str) -> str | None:
    rows = query("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
    return rows[0][0] if rows else None


def partitions() -> dict[str, str]:
    """Partition name -> its bound, as PostgreSQL prints it."""
    return dict(
        query(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
    )


def partition_of(message: Message | int) -> str:
    """The partition a message's row is stored in (its ``tableoid``)."""
    pk = message.pk if isinstance(message, Message) else message
    rows = query(f"SELECT tableoid::regclass::text FROM {TABLE} WHERE id = %s", [pk])  # noqa: S608
    assert rows, f"message {pk} is not in the table"
    return rows[0][0]


def month_start(moment: datetime, months: int = 0) -> datetime:
    """Midnight UTC of the first day of ``moment``'s month, plus ``months``."""
    index = moment.astimezone(UTC).year * 12 + moment.astimezone(UTC).month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def month_partition(moment: datetime) -> str:
    return f"{TABLE}_p{moment.astimezone(UTC):%Y%m}"


def flush_deferred_checks() -> None:
    """Check now the foreign keys this transaction wrote: PostgreSQL refuses to
    drop a table with checks pending. (The page's tasks run in transactions of
    their own; here everything shares the test's.)"""
    connection.check_constraints()


def request_and_verify(user: Any, outbox: list[Any]) -> Challenge:
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user)
    verified = flows.verify_challenge(challenge.pk, outbox[-1].code, user=user)
    assert verified.status == ChallengeStatus.VERIFIED
    return challenge


@pytest.fixture
def partitioned(db) -> None:
    convert()
    assert relkind(TABLE) == "p"


@pytest.fixture
def next_month() -> datetime:
    """The middle of next month (UTC): its partition exists after the switch."""
    return month_start(timezone.now(), 1) + timedelta(days=14, hours=12)


# ------------------------------------------------------------------ the switch


def test_the_switch_keeps_rows_ids_indexes_and_the_foreign_key(user, outbox):
    before = flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user)
    old = before.messages.get()
    indexes = {
        name for (name,) in query("SELECT indexname FROM pg_indexes WHERE tablename = %s", [TABLE])
    }
    assert relkind(TABLE) == "r"

    convert()

    assert relkind(TABLE) == "p"
    assert partition_of(old) == LEGACY
    kept = Message.objects.get(pk=old.pk)
    assert (kept.provider_message_id, kept.created_at) == (old.provider_message_id, old.created_at)
    # Every index keeps its Django name, now on the partitioned table; the key
    # is (id, created_at).
    after = {
        name for (name,) in query("SELECT indexname FROM pg_indexes WHERE tablename = %s", [TABLE])
    }
    assert after == indexes
    (key,) = query(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype = 'p'",
        [TABLE],
    )
    assert key == ("PRIMARY KEY (id, created_at)",)
    (fk,) = query(
        "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype = 'f'",
        [TABLE],
    )
    assert fk == ("django_sms2fa_challenge",)
    # The old rows up to next month; then three months ahead and the default.
    bound = month_start(timezone.now(), 1)
    parts = partitions()
    assert set(parts) == {
        LEGACY,
        DEFAULT,
        *(month_partition(month_start(bound, i)) for i in range(3)),
    }
    assert parts[LEGACY].startswith("FOR VALUES FROM (MINVALUE) TO (")
    assert parts[DEFAULT] == "DEFAULT"

    # The ids go on; the old challenge still resends and verifies.
    flows.resend_challenge(before.pk, user=user)
    newer = before.messages.exclude(pk=old.pk).get()
    assert newer.pk > old.pk
    assert partition_of(newer) == LEGACY  # this month is the old table's
    assert flows.verify_challenge(before.pk, outbox[-1].code, user=user).status == "verified"

    # Running it again changes nothing.
    convert()
    assert partitions() == parts
    assert Message.objects.count() == 2


def test_a_unique_index_without_created_at_stops_the_switch(db):
    execute(f"CREATE UNIQUE INDEX sms2fa_probe_unique ON {TABLE} (provider_message_id, phone)")
    with pytest.raises(DatabaseError, match="must include created_at"):
        convert()


# ------------------------------------------------------------------ the flows


def test_request_resend_verify_by_the_rest_api_and_the_flows(
    partitioned, client, user, outbox, next_month
):
    with time_machine.travel(next_month, tick=False):
        created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
        assert created.status_code == 202, created.content
        challenge_id = created.json()["id"]
        assert api_post(client, f"challenges/{challenge_id}/resend/").status_code == 202
        verified = api_post(client, f"challenges/{challenge_id}/verify/", {"code": outbox[-1].code})
        assert verified.status_code == 200, verified.content
        by_flows = request_and_verify(user, outbox)

    sent = Message.objects.filter(challenge_id__in=[challenge_id, by_flows.pk])
    assert sent.count() == 3
    assert {partition_of(m) for m in sent} == {month_partition(next_month)}
    # Read through the parent, the rows are what the app wrote.
    assert Challenge.objects.get(pk=challenge_id).status == ChallengeStatus.VERIFIED
    assert all(m.status == SENT and m.provider_message_id for m in sent)


# ------------------------------------------------------------------ delivery reports


def test_delivery_reports_find_messages_by_provider_id_in_every_partition(
    partitioned, client, user, outbox, next_month, sms2fa_settings, changes
):
    this_month = request_and_verify(user, outbox).messages.get()
    with time_machine.travel(next_month, tick=False):
        later = request_and_verify(user, outbox).messages.get()
    assert partition_of(this_month) == LEGACY
    assert partition_of(later) == month_partition(next_month)

    for message in (this_month, later):
        found = delivery.record_delivery("default", message.provider_message_id, DELIVERED)
        assert found is not None and found.pk == message.pk
        message.refresh_from_db()
        assert message.status == DELIVERED
    assert [(pk, new) for pk, _old, new in changes] == [
        (this_month.pk, DELIVERED),
        (later.pk, DELIVERED),
    ]

    # A provider's webhook (iP1), for a message in next month's partition.
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "ip1": {
                "BACKEND": "django_sms2fa.providers.ip1.IP1Provider",
                "OPTIONS": {"account_id": "ip1-12345", "api_key": "ip1-api-key-SECRET"},
            },
        },
        WEBHOOK_SECRETS={"ip1": IP1_SECRET},
    )
    ip1 = Message.objects.create(
        phone=PHONE,
        provider="ip1",
        provider_message_id=IP1_ID,
        status=SENT,
        created_at=next_month,
        sent_at=next_month,
    )
    assert partition_of(ip1) == month_partition(next_month)
    target = reverse("sms2fa_webhooks:delivery_report", args=["ip1"]) + f"?secret={IP1_SECRET}"
    report = {
        "id": IP1_ID,
        "batchId": "5c613848879973045cf39ac3",
        "recipient": "46701234567",
        "code": 201,  # delivered
        "duration": 0,
        "created": "2024-05-01T10:00:05Z",
        "segments": 1,
        "price": 0.082,
        "currency": "sek",
        "reference": "",
    }
    answer = client.post(target, data=report, content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["updated"] == 1
    ip1.refresh_from_db()
    assert ip1.status == DELIVERED


# ------------------------------------------------------------------ the admin


def test_admin_lists_pages_search_stats_and_export(
    partitioned, client, admin_user, user, outbox, next_month
):
    now_challenge = request_and_verify(user, outbox)
    with time_machine.travel(next_month, tick=False):
        later_challenge = request_and_verify(user, outbox)
    now_message, later_message = now_challenge.messages.get(), later_challenge.messages.get()
    assert partition_of(now_message) != partition_of(later_message)
    client.force_login(admin_user)

    def url(name: str, *args: Any) -> str:
        return reverse(f"admin:django_sms2fa_{name}", args=args)

    def listed(response) -> set[Any]:
        assert response.status_code == 200
        return {obj.pk for obj in response.context["cl"].result_list}

    both = {now_message.pk, later_message.pk}
    assert listed(client.get(url("message_changelist"))) == both
    assert listed(client.get(url("message_changelist"), {"q": "070-123 45 67"})) == both
    found = client.get(url("message_changelist"), {"q": later_message.provider_message_id})
    assert listed(found) == {later_message.pk}
    by_challenge = client.get(url("message_changelist"), {"q": str(now_challenge.pk)})
    assert listed(by_challenge) == {now_message.pk}
    # Past COUNT_LIMIT rows the paginator asks the planner (EXPLAIN) instead.
    assert isinstance(_planner_estimate(Message.objects.all()), int)
    for message in (now_message, later_message):
        page = client.get(url("message_change", message.pk))
        assert page.status_code == 200
        assert message.provider_message_id in page.content.decode()

    # The challenges' list shows each one's newest message id (a subquery on
    # the messages); a message id finds its challenge.
    challenges = client.get(url("challenge_changelist"))
    assert listed(challenges) == {now_challenge.pk, later_challenge.pk}
    assert later_message.provider_message_id in challenges.content.decode()
    searched = client.get(url("challenge_changelist"), {"q": now_message.provider_message_id})
    assert listed(searched) == {now_challenge.pk}
    inline = client.get(url("challenge_change", later_challenge.pk))
    assert inline.status_code == 200
    assert later_message.provider_message_id in inline.content.decode()

    export = client.get(url("challenge_export"))
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert {row["message_id"] for row in rows} == {
        now_message.provider_message_id,
        later_message.provider_message_id,
    }

    # The statistics over both months: two SMS taken, two challenges verified.
    start, end = timezone.localdate(), timezone.localdate(next_month) + timedelta(days=1)
    figures = stats.totals(stats.report(stats.make_range(start, end)))
    assert (figures.sms, figures.sent, figures.verified) == (2, 2, 2)
    page = client.get(url("challenge_stats"), {"from": start.isoformat(), "to": end.isoformat()})
    assert page.status_code == 200
    assert page.context["totals"] == figures


# ------------------------------------------------------------------ retention


def test_the_purge_and_dropping_whole_months(partitioned, user, outbox, next_month):
    retention_days = timedelta(days=app_settings.RETENTION_DAYS)
    with time_machine.travel(timezone.now() - retention_days - timedelta(days=30), tick=False):
        old = request_and_verify(user, outbox)
        test_sms = Message.objects.create(
            phone=PHONE, provider="default", status=SENT, created_at=timezone.now()
        )
    recent = request_and_verify(user, outbox)
    with time_machine.travel(next_month, tick=False):
        later = request_and_verify(user, outbox)
    assert {partition_of(m) for m in Message.objects.filter(challenge=old)} == {LEGACY}
    assert partition_of(test_sms) == LEGACY

    # sms2fa_purge, as ever: the old challenge with its message, and the old
    # test SMS, deleted row by row from the old table's partition.
    out = io.StringIO()
    call_command("sms2fa_purge", stdout=out)
    assert not Challenge.objects.filter(pk=old.pk).exists()
    assert not Message.objects.filter(pk=test_sms.pk).exists()
    assert set(Message.objects.values_list("challenge_id", flat=True)) == {recent.pk, later.pk}
    purged = AuditRecord.objects.get(action=AuditAction.PURGED)
    assert "challenges: 1, messages: 2" in purged.detail

    # The page's daily task, on the first day next month's partition may go:
    # its newest row is RETENTION_DAYS - 31 days old. The old table's partition
    # (this month and before) goes too; the month after stays.
    tasks = page_tasks()
    flush_deferred_checks()
    droppable = month_start(next_month, 1) + retention_days - timedelta(days=31)
    with time_machine.travel(droppable - timedelta(hours=1), tick=False):
        assert tasks["drop_old_message_partitions"]() == 1  # only the old table's
    with time_machine.travel(droppable + timedelta(hours=1), tick=False):
        assert tasks["drop_old_message_partitions"]() == 1  # next month's
    parts = partitions()
    assert LEGACY not in parts and month_partition(next_month) not in parts
    assert month_partition(month_start(next_month, 1)) in parts and DEFAULT in parts
    assert not Message.objects.exists()
    records = AuditRecord.objects.filter(actor_repr="drop_old_message_partitions")
    assert sorted(r.count for r in records) == [1, 1]
    assert {r.detail for r in records} == {"messages: 1"}
    # The roll-ups know the dropped days' raw rows are gone, as after a purge.
    from django_sms2fa import rollups

    last_cutoff = droppable + timedelta(hours=1) - retention_days + timedelta(days=31)
    assert rollups.purged_through() == timezone.localdate(last_cutoff)

    # The purge, when it reaches the challenges, finds their messages gone.
    with time_machine.travel(next_month + retention_days + timedelta(hours=1), tick=False):
        result = retention.purge(retention.cutoff_for())
    assert result.counts["challenges"] == 2 and result.counts["messages"] == 0
    assert not Challenge.objects.filter(pk__in=[recent.pk, later.pk]).exists()


def test_a_month_without_a_partition_waits_in_the_default_one(partitioned, user, outbox):
    far = month_start(timezone.now(), 24) + timedelta(days=9)
    with time_machine.travel(far, tick=False):
        challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user)
        code = outbox[-1].code
    message = challenge.messages.get()
    assert partition_of(message) == DEFAULT

    added = page_tasks()["add_message_partitions"](months_ahead=25)
    assert added == 25 - 3  # the switch made three months, the page's task the rest
    assert partition_of(message) == month_partition(far)
    assert query(f"SELECT count(*) FROM {DEFAULT}") == [(0,)]  # noqa: S608
    assert page_tasks()["add_message_partitions"](months_ahead=25) == 0
    with time_machine.travel(far + timedelta(minutes=1), tick=False):
        assert flows.verify_challenge(challenge.pk, code, user=user).status == "verified"


def test_later_migrations_still_apply_to_every_partition(partitioned):
    field = models.CharField(max_length=8, default="", blank=True)
    field.set_attributes_from_name("partition_probe")
    index = models.Index(fields=["phone", "created_at"], name="sms2fa_msg_probe")
    with connection.schema_editor() as editor:
        editor.add_field(Message, field)
        editor.add_index(Message, index)
    parts = set(partitions())
    with_column = {
        name
        for (name,) in query(
            "SELECT table_name FROM information_schema.columns WHERE column_name = %s",
            ["partition_probe"],
        )
    }
    assert parts | {TABLE} <= with_column
    attached = query(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'sms2fa_msg_probe'::regclass"
    )
    assert attached == [(len(parts),)]
