"""Delete audit rows older than the retention period, in small batches.

Each batch is its own short transaction: stopping the purge (Ctrl-C, a
deploy, a lost connection) rolls back at most the batch in flight, and running
it again simply continues, since the batches are chosen by age and nothing
else. Locks are held for one batch only, so logins go on while it runs.

What goes, for rows created before the cutoff:

1. challenges, with all their messages (a resend may be younger than the
   cutoff; it goes with its challenge, never the other way round);
2. messages without a challenge (test SMS), by their own age;
3. refusals and device events.

Every purge that deletes (not a dry run) leaves an :class:`AuditRecord` of
its own: who ran it, the cutoff and how many rows of each kind went, even
when it is interrupted. Audit records themselves are never purged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, models, router, transaction
from django.db.models import signals
from django.utils import timezone

from .conf import app_settings
from .models import AuditAction, AuditRecord, Challenge, DeviceEvent, Message, Refusal

logger = logging.getLogger("django_sms2fa")

#: Challenges per transaction. Measured on 10M rows (docs/performance.md): batches
#: of 5,000 purged 54,000 rows/s in about 200 ms each, with logins beside them at a
#: p99 of 10 ms; batches of 1,000 purged 36,000 rows/s and the logins' p99 was 40 ms
#: (more commits, each waiting on the disk, for the same rows).
DEFAULT_BATCH_SIZE = 5000
MAX_BATCH_SIZE = 50_000

#: The names of the counts, in the order they are purged.
KINDS = ("challenges", "messages", "refusals", "device_events")


@dataclass
class PurgeResult:
    """Rows deleted (or, for a dry run, that would be) and the time it took."""

    cutoff: datetime
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    batches: int = 0
    elapsed: float = 0.0
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def rows_per_second(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0


#: Called after each batch with the running result (progress output).
Progress = Callable[[PurgeResult], Any]


def cutoff_for(older_than: timedelta | None = None, *, now: datetime | None = None) -> datetime:
    """The moment before which rows go; default ``RETENTION_DAYS`` ago."""
    if older_than is None:
        older_than = timedelta(days=app_settings.RETENTION_DAYS)
    return (now or timezone.now()) - older_than


def count_purgeable(cutoff: datetime, *, device_events: bool = False) -> PurgeResult:
    """What :func:`purge` would delete before ``cutoff``; deletes nothing."""
    challenges = Challenge.objects.filter(created_at__lt=cutoff)
    result = PurgeResult(cutoff=cutoff, dry_run=True)
    started = time.monotonic()
    result.counts = {
        "challenges": challenges.count(),
        "messages": Message.objects.filter(challenge__in=challenges.values("pk")).count()
        + Message.objects.filter(challenge__isnull=True, created_at__lt=cutoff).count(),
        "refusals": Refusal.objects.filter(created_at__lt=cutoff).count(),
        "device_events": (
            DeviceEvent.objects.filter(created_at__lt=cutoff).count() if device_events else 0
        ),
    }
    result.elapsed = time.monotonic() - started
    return result


def purge(
    cutoff: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    device_events: bool = False,
    actor_repr: str = "django_sms2fa.retention.purge",
) -> PurgeResult:
    """Delete challenges, messages and refusals created before ``cutoff``.

    :param batch_size: rows per transaction (1 to :data:`MAX_BATCH_SIZE`).
    :param device_events: delete old device events too. Off by default: they
        are the record of every phone ever bound to an account, with when and
        from where (NIST SP 800-63B-4 §4.1), and stay small.
    :param progress: called with the running :class:`PurgeResult` after each batch.
    :param actor_repr: who runs it, for the :class:`AuditRecord` the purge leaves.
    :returns: the counts deleted and the elapsed time.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be from 1 to {MAX_BATCH_SIZE}.")
    result = PurgeResult(cutoff=cutoff)
    try:
        _purge(result, batch_size=batch_size, progress=progress, device_events=device_events)
    except BaseException:
        # Interrupted or failed: the finished batches are committed, so they
        # are recorded all the same, unless the database itself is what failed.
        try:
            _record_purge(result, actor_repr)
        except DatabaseError:
            logger.exception("sms2fa: the purge could not record what it deleted")
        raise
    _record_purge(result, actor_repr)
    return result


def _record_purge(result: PurgeResult, actor_repr: str) -> None:
    record_deletion(
        AuditAction.PURGED,
        cutoff=result.cutoff,
        per_kind=result.counts,
        actor_repr=actor_repr,
    )


def record_deletion(
    action: str,
    *,
    cutoff: datetime,
    per_model: dict[str, int] | None = None,
    per_kind: dict[str, int] | None = None,
    actor: Any = None,
    actor_repr: str = "",
    client_ip: str | None = None,
    object_type: str = "",
    object_id: str = "",
    ids: list[str] | None = None,
) -> AuditRecord:
    """Write down one deletion of audit rows: who, when, how many, which cutoff.

    :param per_model: rows per model label, as ``QuerySet.delete()`` returns them.
    :param per_kind: rows per :data:`KINDS` name, as :func:`purge` counts them.
    :param ids: the ids of the rows a bulk deletion selected (kept as far as they fit).
    """
    counts = {label.rsplit(".", 1)[-1].lower(): n for label, n in (per_model or {}).items()}
    counts.update(per_kind or {})
    detail = ", ".join(f"{kind}: {n}" for kind, n in counts.items())
    if ids:
        shown = ""
        for pk in ids:
            if len(detail) + len(shown) + len(pk) + 10 > 500:
                shown += " …"
                break
            shown += (", " if shown else "") + pk
        detail = f"{detail}; ids: {shown}"
    if actor is not None and not actor_repr:
        actor_repr = actor.get_username()
    return AuditRecord.objects.create(
        created_at=timezone.now(),
        action=action,
        actor=actor,
        actor_repr=actor_repr[:150],
        client_ip=client_ip,
        object_type=object_type,
        object_id=object_id,
        count=sum(counts.values()),
        cutoff=cutoff,
        detail=detail[:500],
    )


def _purge(
    result: PurgeResult,
    *,
    batch_size: int,
    progress: Progress | None,
    device_events: bool,
) -> None:
    cutoff = result.cutoff
    started = time.monotonic()

    def step(counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            result.counts[kind] += n
        result.batches += 1
        result.elapsed = time.monotonic() - started
        if progress is not None:
            progress(result)

    for counts in _challenge_batches(cutoff, batch_size):
        step(counts)
    others: list[tuple[type[models.Model], str, dict[str, Any]]] = [
        (Message, "messages", {"challenge__isnull": True}),
        (Refusal, "refusals", {}),
    ]
    if device_events:
        others.append((DeviceEvent, "device_events", {}))
    for model, kind, extra in others:
        for n in _batches_by_age(model, cutoff, batch_size, **extra):
            step({kind: n})
    result.elapsed = time.monotonic() - started


def _fit(batch_size: int, using: str) -> int:
    """``batch_size``, or less where the database caps the parameters of one
    statement (SQLite: 32766 by default), since each id of a batch is one."""
    limit = connections[using].features.max_query_params
    return min(batch_size, limit - 10) if limit else batch_size


def _challenge_batches(cutoff: datetime, batch_size: int):
    """Yield the counts of each batch of old challenges deleted with their messages."""
    using = router.db_for_write(Challenge)
    batch_size = _fit(batch_size, using)
    # Walk the created_at index forward: each batch starts where the last one
    # ended instead of stepping over the index entries the batches before it
    # left dead (until VACUUM), which would make the purge slower with every batch.
    since: datetime | None = None
    while True:
        with transaction.atomic(using=using):
            query = Challenge.objects.using(using).filter(created_at__lt=cutoff)
            if since is not None:
                query = query.filter(created_at__gte=since)
            rows = list(query.order_by("created_at").values_list("pk", "created_at")[:batch_size])
            if not rows:
                return
            ids = [pk for pk, _created in rows]
            # Messages first (one DELETE: nothing depends on them), then the
            # challenges with nothing left to cascade.
            messages = Message.objects.using(using).filter(challenge_id__in=ids).delete()[0]
            challenges = _delete_challenges(using, ids)
        since = rows[-1][1]
        yield {"challenges": challenges, "messages": messages}


def _delete_challenges(using: str, ids: list[Any]) -> int:
    """Delete challenges whose messages are gone; return how many went."""
    query = Challenge.objects.using(using).filter(pk__in=ids)
    if signals.pre_delete.has_listeners(Challenge) or signals.post_delete.has_listeners(Challenge):
        # A site listens for deleted challenges: let Django load them and
        # send its signals (and cascade anything that appeared since).
        return query.delete()[1].get(Challenge._meta.label, 0)
    # Otherwise one DELETE statement. QuerySet.delete() would load every row
    # and delete them 100 at a time, just to cascade to the messages already
    # deleted above: that tripled the time of a batch.
    return query._raw_delete(using)


def _batches_by_age(model: type[models.Model], cutoff: datetime, batch_size: int, **extra: Any):
    """Yield the number of rows of ``model`` deleted per batch, oldest first."""
    using = router.db_for_write(model)
    batch_size = _fit(batch_size, using)
    since: datetime | None = None
    while True:
        with transaction.atomic(using=using):
            query = model._default_manager.using(using).filter(created_at__lt=cutoff, **extra)
            if since is not None:
                query = query.filter(created_at__gte=since)
            rows = list(query.order_by("created_at").values_list("pk", "created_at")[:batch_size])
            if not rows:
                return
            deleted = (
                model._default_manager.using(using)
                .filter(pk__in=[pk for pk, _created in rows])
                .delete()[0]
            )
        since = rows[-1][1]
        yield deleted
