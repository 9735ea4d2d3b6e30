"""Binding phones to accounts: enrol, confirm, replace, remove.

Setting or changing the phone is binding a new authenticator (NIST SP
800-63B-4 §3.1.3.3, §4.1.2.1): when the user already has a second factor, the
session must have proved it (``verified_session``) before a new phone can be
added or one removed; the new phone must then prove itself with a code; and
the user's other phones are told through SMS (§4.6), and the owner by email
(:func:`notify_owner`, the adapter's ``send_security_notice``).

A phone that leaves an account — removed, replaced, deleted in the admin,
unbound — takes its codes with it: every open challenge of its number for
its owner is cancelled in the same transaction (``flows.close_challenges_for``).
A number is confirmed on at most one account (a database constraint):
confirming it on another account unbinds it from this one.

Every change to a device — added, confirmed, replaced, removed, unlocked,
failures reset — is recorded as a :class:`~django_sms2fa.models.DeviceEvent`
with who made it, when and from which IP (§4.1: a record of every
authenticator ever bound). The events outlive the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.views.decorators.debug import sensitive_variables

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


@sensitive_variables()
def confirm_phone(
    user: Any,
    device_id: Any,
    challenge_id: Any,
    code: Any,
    *,
    client: ClientInfo | None = None,
) -> PhoneDevice:
    """Confirm an enrolled phone with its code; retire the phone it replaces.

    A number is confirmed on at most one account (the database holds it to
    that). Confirming a number that another account has confirmed proves its
    holder has it *now* (a recycled number, most often): it is unbound from
    that account first — the device removed, a ``removed`` event recorded,
    its open challenges closed — and that account's owner is told by email
    and on its other phones. Nothing in the answer differs, so confirming
    cannot tell the caller whether the number was someone else's.

    :raises DeviceNotFound, ChallengeNotFound, and every verify error.
    """
    device = _own_device(user, device_id)

    def accept(challenge: Challenge) -> None:
        # This device's challenge, checked on the row verify reads.
        if challenge.device_id != device.pk:
            raise ChallengeNotFound()

    challenge = flows.verify_challenge(
        challenge_id,
        code,
        user=user,
        purpose=[Purpose.VERIFY_PHONE, Purpose.CHANGE_PHONE],
        accept=accept,
    )
    return _confirm_proved(user, device, challenge.pk, _ip(client))


def bind_verified_phone(user: Any, phone: str, *, client: ClientInfo | None = None) -> PhoneDevice:
    """Make ``phone`` a confirmed phone of ``user``: the number was already
    proved by its holder, through a redeemed ``phone_token`` at registration::

        phone = login_flows.redeem_phone_token(form.cleaned_data["phone_token"])
        device_flows.bind_verified_phone(user, phone, client=client)

    The rules of :func:`confirm_phone` apply (a number confirmed on another
    account is unbound from it, the owners are told). Use it rather than
    creating a confirmed ``PhoneDevice`` by hand, which the database refuses
    for a number confirmed elsewhere.
    """
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    with transaction.atomic():
        device, created = PhoneDevice.objects.get_or_create(
            user=user, number=e164, defaults={"name": mask_phone(e164), "confirmed": False}
        )
        if created:
            record_event(device, DeviceAction.ADDED, actor=user, client_ip=_ip(client))
    if device.confirmed:
        return device
    return _confirm_proved(user, device, None, _ip(client))


def _confirm_proved(
    user: Any, device: PhoneDevice, challenge_id: Any, ip: str | None
) -> PhoneDevice:
    """Confirm ``device``, whose number its holder has just proved, and tell
    everyone concerned."""
    try:
        change = _bind(user, device, challenge_id, ip)
    except IntegrityError:
        # Another account confirmed the same number between our lock and our
        # write (the constraint caught it). Once more: that device now exists,
        # is locked like any other and unbound.
        change = _bind(user, device, challenge_id, ip)
    device, old, others, unbound = change
    # Notices go after the commit and outside it: provider calls never run in
    # a transaction, and a failed notice must not undo the change.
    with _in_users_language(user) as adapter:
        for other in others:
            if old is not None and other.pk == old.pk:
                text = adapter.phone_replaced_text(other.number, device.number)
            else:
                text = adapter.phone_added_text(device.number)
            flows.send_notice(phone=other.number, text=text)
    for prior in unbound:
        _tell_unbound_owner(prior)
    signals.device_confirmed.send(sender=PhoneDevice, device=device, replaced=old)
    if old is not None:
        notify_owner(
            user, "phone_replaced", phone=old.number, new_phone=device.number, client_ip=ip
        )
    else:
        notify_owner(user, "phone_added", phone=device.number, client_ip=ip)
    return device


def _bind(
    user: Any, device: PhoneDevice, challenge_id: Any, ip: str | None
) -> tuple[PhoneDevice, PhoneDevice | None, list[PhoneDevice], list[PhoneDevice]]:
    """The confirming transaction: lock, unbind, confirm, retire.

    :returns: the confirmed device, the device it replaced (deleted) or
        ``None``, the user's other confirmed phones before the change (the old
        one included), and the other accounts' devices unbound (deleted).
    """
    now = timezone.now()
    with transaction.atomic():
        locked = _lock_devices(
            Q(pk=device.pk)
            | Q(number=device.number, confirmed=True)
            | (Q(pk=device.replaces_id) if device.replaces_id is not None else Q(pk__in=[])),
            old_ids=[device.replaces_id] if device.replaces_id is not None else [],
            number=device.number,
        )
        # Re-read under the lock: a concurrent confirmation may have retired
        # the phone this one was to replace (then this is an addition), and
        # the device itself may be gone.
        current = locked.get(device.pk)
        if current is None or current.user_id != user.pk:
            raise DeviceNotFound()
        old = locked.get(current.replaces_id) if current.replaces_id is not None else None
        if old is not None and (old.user_id != user.pk or not old.confirmed):
            old = None
        unbound = [
            d
            for d in locked.values()
            if d.number == current.number and d.confirmed and d.user_id != user.pk
        ]
        others = list(PhoneDevice.objects.filter(user=user, confirmed=True).exclude(pk=current.pk))
        if challenge_id is not None:
            Challenge.objects.filter(pk=challenge_id).update(consumed_at=now)
        # The previous holder's device goes first: the constraint allows one
        # confirmed row per number.
        for prior in unbound:
            _delete_locked(prior, actor=user, client_ip=ip)
        current.confirmed, current.replaces, current.last_used_at = True, None, now
        current.save(update_fields=["confirmed", "replaces", "last_used_at"])
        record_event(current, DeviceAction.CONFIRMED, actor=user, client_ip=ip)
        if old is not None:
            # Recorded before the delete: the event keeps the number, and
            # its device link is cleared by the delete (SET_NULL).
            record_event(old, DeviceAction.REPLACED, actor=user, client_ip=ip)
            flows.close_challenges_for(phone=old.number, user=user, device=old)
            old_pk = old.pk
            old.delete()
            old.pk = old_pk  # the notices below still tell it apart
    return current, old, others, unbound


def _lock_devices(
    where: Q, *, old_ids: list[Any], number: str | None = None
) -> dict[Any, PhoneDevice]:
    """Lock the rows a confirmation touches, in one statement, in pk order.

    Every path that retires a device locks it and every row that points at it
    (``replaces``: the delete rewrites them) the same way, so two
    transactions always take their common rows in the same order and wait
    for each other instead of deadlocking (two confirmations replacing one
    phone, an unbinding racing a removal). On SQLite, which has no row locks,
    the write lock serialises them anyway.
    """
    retiring = Q(replaces_id__in=old_ids) if old_ids else Q(pk__in=[])
    if number is not None:
        # The previous holder's device, if the number is confirmed elsewhere.
        retiring |= Q(
            replaces_id__in=PhoneDevice.objects.filter(number=number, confirmed=True).values("pk")
        )
    rows = PhoneDevice.objects.select_for_update().filter(where | retiring).order_by("pk")
    return {row.pk: row for row in rows}


def _tell_unbound_owner(prior: PhoneDevice) -> None:
    """The previous account of a number confirmed elsewhere hears of it.

    By email (:func:`notify_owner`) and on its other phones; never on the
    number itself, which is now someone else's.
    """
    signals.device_removed.send(sender=PhoneDevice, device=prior)
    owner = prior.user
    numbers = PhoneDevice.objects.filter(user=owner, confirmed=True).values_list(
        "number", flat=True
    )
    with _in_users_language(owner) as adapter:
        text = adapter.phone_removed_text(prior.number)
        for number in numbers:
            flows.send_notice(phone=number, text=text)
    # Without the IP: it is the new holder's, and none of the old account's business.
    notify_owner(owner, "phone_unbound", phone=prior.number, client_ip=None)


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
    deleted = delete_device(device, actor=user, client_ip=_ip(client))
    if deleted and device.confirmed:
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


def delete_device(device: PhoneDevice, *, actor: Any, client_ip: str | None) -> bool:
    """Delete ``device`` and record who did it (its owner, or staff in the admin).

    Every open challenge of its number for its owner is closed with it, so no
    code already sent to the phone outlives it; the owner of a confirmed
    phone is told by email (:func:`notify_owner`).

    :returns: whether this call deleted it (``False``: it was already gone,
        removed, replaced or unbound by a concurrent request).
    """
    with transaction.atomic():
        locked = _lock_devices(Q(pk=device.pk), old_ids=[device.pk])
        current = locked.get(device.pk)
        if current is None:
            return False  # already gone: nothing to record, nobody to tell
        _delete_locked(current, actor=actor, client_ip=client_ip)
    device.pk = None  # as a delete() leaves it
    signals.device_removed.send(sender=PhoneDevice, device=current)
    if current.confirmed:
        notify_owner(current.user, "phone_removed", phone=current.number, client_ip=client_ip)
    return True


def _delete_locked(device: PhoneDevice, *, actor: Any, client_ip: str | None) -> None:
    """Record, close its challenges, delete: inside the caller's transaction,
    with ``device`` locked."""
    record_event(device, DeviceAction.REMOVED, actor=actor, client_ip=client_ip)
    flows.close_challenges_for(phone=device.number, user=device.user_id, device=device)
    pk = device.pk
    device.delete()
    device.pk = pk  # kept for the notices and signals after the commit


SECURITY_EVENTS = (
    "phone_added",
    "phone_replaced",
    "phone_removed",
    "phone_unbound",
    "lockout",
    # the other sign-in methods (methods.py)
    "method_added",
    "method_removed",
    "recovery_codes_made",
    "recovery_code_used",
)


def notify_owner(
    user: Any,
    event: str,
    *,
    phone: str,
    client_ip: str | None,
    new_phone: str | None = None,
) -> None:
    """Tell ``user`` that one of their sign-in factors changed.

    Sends :data:`~django_sms2fa.signals.security_event`; the app's own
    receiver hands it to the adapter's ``send_security_notice`` (an email to
    the account's address by default). Numbers travel masked only.

    :param event: one of :data:`SECURITY_EVENTS`.
    """
    if user is None or getattr(user, "pk", None) is None:
        return
    signals.security_event.send(
        sender=PhoneDevice,
        user=user,
        event=event,
        context=security_context(phone=phone, new_phone=new_phone, client_ip=client_ip),
    )


def security_context(
    *, phone: str, client_ip: str | None, new_phone: str | None = None
) -> dict[str, Any]:
    """What a security notice may say: masked numbers, when, and from which IP."""
    return {
        "phone": mask_phone(phone) if phone else "",
        "new_phone": mask_phone(new_phone) if new_phone else "",
        "when": timezone.now(),
        "ip": client_ip or "",
    }


def lock_state(device: PhoneDevice) -> ratelimit.LockState:
    """The wrong-code lockout of the device's owner (failures, seconds locked)."""
    # The account's count (codes after a password); a number's anonymous
    # count is not the owner's lock.
    subject = flows._lock_subject(device.number, device.user_id, purpose=Purpose.LOGIN)
    return ratelimit.lock_state(subject)


def unlock_device(device: PhoneDevice, *, actor: Any, client_ip: str | None) -> bool:
    """Lift the failure lockout of the device's owner (staff action).

    The lockout counts wrong codes per account (``flows._lock_subject``), so
    this unlocks every phone of that user. Clearing the lock clears the
    failure count it grew from.

    :returns: whether there was a lock to lift (an event is recorded only then).
    """
    subject = flows._lock_subject(device.number, device.user_id, purpose=Purpose.LOGIN)
    if not ratelimit.lock_state(subject).locked_for:
        return False
    ratelimit.reset_failures(subject)
    record_event(device, DeviceAction.UNLOCKED, actor=actor, client_ip=client_ip)
    return True


def reset_device_failures(device: PhoneDevice, *, actor: Any, client_ip: str | None) -> bool:
    """Set the owner's count of consecutive wrong codes back to zero (staff action).

    :returns: whether there were failures to clear (an event is recorded only then).
    """
    subject = flows._lock_subject(device.number, device.user_id, purpose=Purpose.LOGIN)
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


# ------------------------------------------------------------ staff enrolment


from django.utils.translation import gettext_lazy as _lazy  # noqa: E402 - appended section


class PhoneConfirmedElsewhere(PhoneAlreadyEnrolled):
    """Staff asked to confirm a number that another account has confirmed."""

    code = "phone_confirmed_elsewhere"
    default_message = _lazy("This phone number is already confirmed on another account.")


def add_phone_for_user(
    user: Any,
    phone: Any,
    *,
    actor: Any,
    confirmed: bool,
    client_ip: str | None = None,
) -> PhoneDevice:
    """Add ``phone`` to ``user``'s account for them (staff in the admin, or
    ``sms2fa_add_phone``; ``actor`` is the staff member, ``None`` for a command).

    Unconfirmed (``confirmed=False``): the device waits for its holder, who
    confirms it with a code like any phone they add themselves (adding the
    same number from their phone pages proves and confirms this device).

    Confirmed (``confirmed=True``): bound at once, without a code, because the
    staff member vouches for it; the ``confirmed`` event names them as its
    actor, which is the record of that choice. The user's other phones are told
    by SMS and the owner by email (``phone_added``), as for a phone they
    confirm themselves. Unlike :func:`bind_verified_phone`, a number confirmed
    on *another* account is refused, not unbound from it: a code proves that
    the holder has the phone now, a tick in a form proves nothing, and it must
    not move a sign-in factor away from its owner.

    ``phone`` is text or a ``phonenumbers.PhoneNumber`` (django-phonenumber-field).

    :raises InvalidPhone: not a valid number.
    :raises PhoneAlreadyEnrolled: the number is already confirmed for ``user``.
    :raises PhoneConfirmedElsewhere: (``confirmed=True``) another account has it
        confirmed.
    """
    e164 = normalize_phone(phone, app_settings.DEFAULT_REGION)
    _require_allowed_destination(e164)
    if PhoneDevice.objects.filter(user=user, number=e164, confirmed=True).exists():
        raise PhoneAlreadyEnrolled()
    try:
        with transaction.atomic():
            # Locked like every confirmation locks its rows (_lock_devices),
            # so a concurrent confirm_phone of the number waits for this one.
            locked = _lock_devices(
                Q(user=user, number=e164) | Q(number=e164, confirmed=True), old_ids=[]
            )
            mine = next((d for d in locked.values() if d.user_id == user.pk), None)
            if mine is not None and mine.confirmed:
                raise PhoneAlreadyEnrolled()
            if confirmed and any(d.confirmed for d in locked.values() if d.user_id != user.pk):
                raise PhoneConfirmedElsewhere()
            others = list(
                PhoneDevice.objects.filter(user=user, confirmed=True).values_list(
                    "number", flat=True
                )
            )
            if mine is None:
                mine = PhoneDevice.objects.create(
                    user=user, number=e164, name=mask_phone(e164), confirmed=False
                )
                record_event(mine, DeviceAction.ADDED, actor=actor, client_ip=client_ip)
            elif mine.replaces_id is not None:
                # A pending replacement of the user's own becomes an addition:
                # staff add a phone, they do not retire one.
                mine.replaces = None
                mine.save(update_fields=["replaces"])
            if not confirmed:
                return mine
            mine.confirmed = True
            mine.save(update_fields=["confirmed"])
            record_event(mine, DeviceAction.CONFIRMED, actor=actor, client_ip=client_ip)
    except IntegrityError as err:
        # Another account confirmed the number between our check and our
        # write: the constraint holds the rule.
        raise PhoneConfirmedElsewhere() from err
    # After the commit, as in _confirm_proved: notices never undo the change.
    with _in_users_language(user) as adapter:
        text = adapter.phone_added_text(mine.number)
        for number in others:
            flows.send_notice(phone=number, text=text)
    signals.device_confirmed.send(sender=PhoneDevice, device=mine, replaced=None)
    notify_owner(user, "phone_added", phone=mine.number, client_ip=client_ip)
    return mine


def _require_allowed_destination(e164: str) -> None:
    """The site's destination rules, as a send checks them: a phone no code can
    reach (``ALLOWED_REGIONS``, ``ALLOWED_NUMBER_TYPES``) would lock its owner
    out once confirmed."""
    from .exceptions import NumberNotAllowed
    from .phones import number_type_of, region_of

    allowed = app_settings.ALLOWED_REGIONS
    if allowed is not None and region_of(e164) not in allowed:
        raise NumberNotAllowed(limit="region")
    if number_type_of(e164) not in app_settings.ALLOWED_NUMBER_TYPES:
        raise NumberNotAllowed(limit="number_type")
