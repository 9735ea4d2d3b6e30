"""Binding phones to accounts: enrol, confirm, replace, remove.

Setting or changing the phone is binding a new authenticator (NIST SP
800-63B-4 §3.1.3.3, §4.1.2.1): when the user already has a second factor, the
session must have proved it (``verified_session``) before a new phone can be
added or one removed; the new phone must then prove itself with a code; and
the user's other phones are told through SMS (§4.6).

Every change to a device — added, confirmed, replaced, removed, unlocked,
failures reset — is recorded as a :class:`~django_sms2fa.models.DeviceEvent`
with who made it, when and from which IP (§4.1: a record of every
authenticator ever bound). The events outlive the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils import timezone, translation

from . import flows, ratelimit, signals
from .adapter import DefaultSms2faAdapter, get_adapter
from .conf import app_settings
from .exceptions import (
    ChallengeNotFound,
    DeviceNotFound,
    PhoneAlreadyEnrolled,
    SecondFactorRequired,
)
from .models import Challenge, DeviceAction, DeviceEvent, PhoneDevice, Purpose
from .phones import mask_phone, normalize_phone
from .types import ClientInfo


def enrol_phone(
    user: Any,
    phone: str,
    *,
    verified_session: bool,
    replaces: Any = None,
    client: ClientInfo | None = None,
) -> tuple[PhoneDevice, Challenge]:
    """Start adding ``phone`` (or replacing device ``replaces`` with it).

    :returns: the unconfirmed device and the challenge that will confirm it.
    :raises SecondFactorRequired: the user has a confirmed phone and the
        session has not proved a second factor.
    :raises PhoneAlreadyEnrolled: the number is already confirmed for the user.
    :raises DeviceNotFound: ``replaces`` is not one of the user's phones.
    """
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    confirmed = PhoneDevice.objects.filter(user=user, confirmed=True)
    if not verified_session and confirmed.exists():
        raise SecondFactorRequired()
    if confirmed.filter(number=e164).exists():
        raise PhoneAlreadyEnrolled()
    old = None
    if replaces is not None:
        old = _own_device(user, replaces, confirmed=True)
    with transaction.atomic():
        device, _created = PhoneDevice.objects.update_or_create(
            user=user,
            number=e164,
            defaults={"name": mask_phone(e164), "confirmed": False, "replaces": old},
        )
        record_event(device, DeviceAction.ADDED, actor=user, client_ip=_ip(client))
    challenge = flows.request_challenge(
        phone=e164,
        purpose=Purpose.CHANGE_PHONE if old else Purpose.VERIFY_PHONE,
        user=user,
        device=device,
        client=client,
    )
    return device, challenge


def confirm_phone(
    user: Any,
    device_id: Any,
    challenge_id: Any,
    code: Any,
    *,
    client: ClientInfo | None = None,
) -> PhoneDevice:
    """Confirm an enrolled phone with its code; retire the phone it replaces.

    :raises DeviceNotFound, ChallengeNotFound, and every verify error.
    """
    device = _own_device(user, device_id)
    if not Challenge.objects.filter(pk=_uuid_or_none(challenge_id), device=device).exists():
        raise ChallengeNotFound()
    challenge = flows.verify_challenge(
        challenge_id, code, user=user, purpose=[Purpose.VERIFY_PHONE, Purpose.CHANGE_PHONE]
    )
    now = timezone.now()
    with transaction.atomic():
        Challenge.objects.filter(pk=challenge.pk).update(consumed_at=now)
        others = list(PhoneDevice.objects.filter(user=user, confirmed=True).exclude(pk=device.pk))
        old = device.replaces
        old_pk = old.pk if old is not None else None  # delete() clears old.pk
        device.confirmed, device.replaces, device.last_used_at = True, None, now
        device.save(update_fields=["confirmed", "replaces", "last_used_at"])
        record_event(device, DeviceAction.CONFIRMED, actor=user, client_ip=_ip(client))
        if old is not None:
            # Recorded before the delete: the event keeps the number, and
            # its device link is cleared by the delete (SET_NULL).
            record_event(old, DeviceAction.REPLACED, actor=user, client_ip=_ip(client))
            old.delete()
    # Notices go after the commit and outside it: provider calls never run in
    # a transaction, and a failed notice must not undo the change.
    with _in_users_language(user) as adapter:
        for other in others:
            if old_pk is not None and other.pk == old_pk:
                text = adapter.phone_replaced_text(other.number, device.number)
            else:
                text = adapter.phone_added_text(device.number)
            flows.send_notice(phone=other.number, text=text)
    signals.device_confirmed.send(sender=PhoneDevice, device=device, replaced=old)
    return device


def remove_phone(
    user: Any,
    device_id: Any,
    *,
    verified_session: bool,
    client: ClientInfo | None = None,
) -> None:
    """Remove one of the user's phones.

    A confirmed phone only from a session that proved a second factor; a phone
    still being enrolled (unconfirmed) at any time.
    """
    device = _own_device(user, device_id)
    if device.confirmed and not verified_session:
        raise SecondFactorRequired()
    delete_device(device, actor=user, client_ip=_ip(client))
    if device.confirmed:
        # Told on every phone it concerns (NIST SP 800-63B-4 §4.6): the removed
        # number, whose owner may not be the one who removed it, and the others.
        others = PhoneDevice.objects.filter(user=user, confirmed=True).values_list(
            "number", flat=True
        )
        with _in_users_language(user) as adapter:
            text = adapter.phone_removed_text(device.number)
            for number in [device.number, *others]:
                flows.send_notice(phone=number, text=text)


@contextmanager
def _in_users_language(user: Any) -> Iterator[DefaultSms2faAdapter]:
    """The adapter, with the user's language active: notices are written in
    it, like the codes."""
    adapter = get_adapter()
    with translation.override(adapter.get_language(user) or translation.get_language()):
        yield adapter


def delete_device(device: PhoneDevice, *, actor: Any, client_ip: str | None) -> None:
    """Delete ``device`` and record who did it (its owner, or staff in the admin)."""
    with transaction.atomic():
        record_event(device, DeviceAction.REMOVED, actor=actor, client_ip=client_ip)
        device.delete()
    signals.device_removed.send(sender=PhoneDevice, device=device)


def lock_state(device: PhoneDevice) -> ratelimit.LockState:
    """The wrong-code lockout of the device's owner (failures, seconds locked)."""
    return ratelimit.lock_state(flows._lock_subject(device.number, device.user_id))


def unlock_device(device: PhoneDevice, *, actor: Any, client_ip: str | None) -> bool:
    """Lift the failure lockout of the device's owner (staff action).

    The lockout counts wrong codes per account (``flows._lock_subject``), so
    this unlocks every phone of that user. Clearing the lock clears the
    failure count it grew from.

    :returns: whether there was a lock to lift (an event is recorded only then).
    """
    subject = flows._lock_subject(device.number, device.user_id)
    if not ratelimit.lock_state(subject).locked_for:
        return False
    ratelimit.reset_failures(subject)
    record_event(device, DeviceAction.UNLOCKED, actor=actor, client_ip=client_ip)
    return True


def reset_device_failures(device: PhoneDevice, *, actor: Any, client_ip: str | None) -> bool:
    """Set the owner's count of consecutive wrong codes back to zero (staff action).

    :returns: whether there were failures to clear (an event is recorded only then).
    """
    subject = flows._lock_subject(device.number, device.user_id)
    if not ratelimit.lock_state(subject).failures:
        return False
    ratelimit.reset_failures(subject)
    record_event(device, DeviceAction.FAILURES_RESET, actor=actor, client_ip=client_ip)
    return True


def record_event(
    device: PhoneDevice, action: str, *, actor: Any, client_ip: str | None
) -> DeviceEvent:
    """Write one audit row for a change to ``device``."""
    return DeviceEvent.objects.create(
        created_at=timezone.now(),
        action=action,
        device=device if device.pk is not None else None,
        user_id=device.user_id,
        number=device.number,
        actor=actor if getattr(actor, "pk", None) is not None else None,
        client_ip=client_ip or None,
    )


def _ip(client: ClientInfo | None) -> str | None:
    return client.ip if client is not None else None


def _own_device(user: Any, device_id: Any, *, confirmed: bool | None = None) -> PhoneDevice:
    query = PhoneDevice.objects.filter(user=user)
    if confirmed is not None:
        query = query.filter(confirmed=confirmed)
    try:
        return query.get(pk=int(device_id))
    except (PhoneDevice.DoesNotExist, ValueError, TypeError) as err:
        raise DeviceNotFound() from err


def _uuid_or_none(value: Any) -> Any:
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
