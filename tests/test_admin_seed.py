"""bench.seed: the synthetic audit rows the admin benchmark (and others) use."""

from __future__ import annotations

import pytest

from django.db import connection

from bench import seed as seeding
from django_sms2fa.models import Challenge, Message
from django_sms2fa.phones import normalize_phone

pytestmark = pytest.mark.django_db


def _indexes() -> set[str]:
    with connection.cursor() as cursor:
        return {
            name
            for table in (Challenge._meta.db_table, Message._meta.db_table)
            for name, info in connection.introspection.get_constraints(cursor, table).items()
            if info["index"]
        }


@pytest.mark.parametrize("bulk", [False, True])
def test_seed_fills_challenges_and_one_message_each(monkeypatch, bulk):
    if bulk:  # the PostgreSQL path that drops and rebuilds the indexes
        monkeypatch.setattr(seeding, "BULK_THRESHOLD", 1)
    before = _indexes()
    assert seeding.seed(40, users=4, providers=("a", "b")) == 40
    assert seeding.seed(10, users=4, providers=("a", "b")) == 10  # a second run adds
    assert Challenge.objects.count() == Message.objects.count() == 50
    assert _indexes() == before
    ids = list(Message.objects.values_list("provider_message_id", flat=True))
    assert len(set(ids)) == 50 and all(i.startswith("bench-") for i in ids)
    assert not Message.objects.filter(challenge=None).exists()
    statuses = set(Challenge.objects.values_list("status", flat=True))
    assert {"verified", "expired"} <= statuses
    assert set(Challenge.objects.values_list("provider", flat=True)) == {"a", "b"}
    assert 1 <= Challenge.objects.values("user").distinct().count() <= 5  # 4 users, or none
    for phone in Challenge.objects.values_list("phone", flat=True)[:10]:
        assert normalize_phone(phone) == phone
    newest, oldest = (
        Challenge.objects.order_by("-created_at").first(),
        Challenge.objects.order_by("created_at").first(),
    )
    assert (newest.created_at - oldest.created_at).days >= 80  # spread over 90 days


def test_seed_of_nothing_adds_nothing():
    assert seeding.seed(0) == 0
    assert not Challenge.objects.exists()
