"""Binding phones to accounts: enrol, confirm, replace, remove.

Setting or changing the phone is binding a new authenticator (NIST SP
800-63B-4 §3.1.3.3, §4.1.2.1): when the user already has a second factor, the
session must have proved it (``verified_session``) before a new phone can be
added or one removed; the new phone must then prove itself with a code; and
the user's other phones are told through SMS (§4.6).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone, translation

from . import flows, signals
from .adapter import get_adapter
from .conf import app_settings
from .exceptions import (
    ChallengeNotFound,
    DeviceNotFound,
    PhoneAlreadyEnrolled,
    SecondFactorRequired,
)
from .models import Challenge, PhoneDevice, Purpose
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
    device, _created = PhoneDevice.objects.update_or_create(
        user=user,
        number=e164,
        defaults={"name": mask_phone(e164), "confirmed": False, "replaces": old},
    )
    challenge = flows.request_challenge(
        phone=e164,
        purpose=Purpose.CHANGE_PHONE if old else Purpose.VERIFY_PHONE,
        user=user,
        device=device,
        client=client,
    )
    return device, challenge


def confirm_phone(user: Any, device_id: Any, challenge_id: Any, code: Any) -> PhoneDevice:
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
        if old is not None:
            old.delete()
    adapter = get_adapter()
    # Notices go after the commit and outside it: provider calls never run in
    # a transaction, and a failed notice must not undo the change. They are
    # written in the user's language, like the codes.
    with translation.override(adapter.get_language(user) or translation.get_language()):
        for other in others:
            if old_pk is not None and other.pk == old_pk:
                text = adapter.phone_replaced_text(other.number, device.number)
            else:
                text = adapter.phone_added_text(device.number)
            flows.send_notice(phone=other.number, text=text)
    signals.device_confirmed.send(sender=PhoneDevice, device=device, replaced=old)
    return device


def remove_phone(user: Any, device_id: Any, *, verified_session: bool) -> None:
    """Remove one of the user's phones.

    A confirmed phone only from a session that proved a second factor; a phone
    still being enrolled (unconfirmed) at any time.
    """
    device = _own_device(user, device_id)
    if device.confirmed and not verified_session:
        raise SecondFactorRequired()
    device.delete()
    signals.device_removed.send(sender=PhoneDevice, device=device)


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
