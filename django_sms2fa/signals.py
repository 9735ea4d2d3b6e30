"""Signals for the life of a challenge and its messages.

All are sent by ``flows`` after the database change they announce has been
written, with ``sender`` set to the model class. No signal carries a code.
Receivers run in the request (or task) that caused the event; an exception in
one receiver does not stop the others and is re-raised after all have run.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import pre_delete
from django.dispatch import Signal

#: A challenge was created. Args: ``challenge``.
challenge_requested = Signal()

#: A new code was sent for an existing challenge. Args: ``challenge``.
challenge_resent = Signal()

#: A correct code was accepted (the challenge is now ``verified``). Args: ``challenge``.
challenge_verified = Signal()

#: A wrong code was submitted. Args: ``challenge``, ``attempts_left`` (int).
challenge_code_rejected = Signal()

#: A challenge ended without success. Args: ``challenge``, ``reason`` — one of
#: ``"expired"``, ``"failed"`` (attempts used up), ``"cancelled"``,
#: ``"undeliverable"``.
challenge_closed = Signal()

#: A provider took an SMS. Args: ``message``.
message_sent = Signal()

#: A provider refused or failed to take an SMS. Args: ``message``, ``error``
#: (a :class:`~django_sms2fa.exceptions.ProviderError`).
message_failed = Signal()

#: A provider reported a new delivery status for a message (webhook or
#: ``sms2fa_refresh_status``). Args: ``message``, ``old_status``, ``new_status``.
message_status_changed = Signal()

#: A phone was confirmed as a user's second factor. Args: ``device``,
#: ``replaced`` (the device it replaced, already deleted, or ``None``).
device_confirmed = Signal()

#: A phone left an account: its owner removed it, staff deleted it in the
#: admin, or its number was confirmed on another account (which unbinds it
#: here). Args: ``device`` (already deleted). Replacements send
#: ``device_confirmed`` with ``replaced`` instead.
device_removed = Signal()

#: Something changed about how a user signs in, and the user must hear of it
#: (NIST SP 800-63B-4 §4.6). Args: ``user`` (``None`` for a lockout of a
#: number without an account), ``event`` — one of
#: ``"phone_added"``, ``"phone_replaced"``, ``"phone_removed"``,
#: ``"phone_unbound"`` (the number was confirmed on another account),
#: ``"lockout"`` (too many wrong codes), ``"method_added"`` /
#: ``"method_removed"`` (an authenticator app; ``context["method"]``),
#: ``"recovery_codes_made"`` and ``"recovery_code_used"`` (``context["left"]``)
#: — and ``context``, a dict with
#: ``phone`` and ``new_phone`` (masked, never a full number), ``when`` (an
#: aware datetime) and ``ip`` (the client's address, or ``""``). Never a code.
#: The app's own receiver passes it to the adapter's ``send_security_notice``
#: (an email by default); disconnect it with
#: ``security_event.disconnect(dispatch_uid="django_sms2fa.security_notice")``.
security_event = Signal()

#: The SMS-pumping breaker tripped: too few codes sent to never-verified
#: numbers of one number prefix were verified, so sending there is suspended
#: (a confirmed phone's login code still goes). Args: ``scope`` (always
#: ``"prefix"``), ``value`` (``"+234803"``), ``suspended_for`` (seconds).
#: Connect an alert to it.
pumping_suspected = Signal()


def _send_security_notice(sender: Any, user: Any, event: str, context: Any, **kwargs: Any) -> None:
    """The default receiver of :data:`security_event`: the adapter tells the
    user, now or through the task backend (``notices.notify``)."""
    from . import notices

    notices.notify(user, event, dict(context))


security_event.connect(_send_security_notice, dispatch_uid="django_sms2fa.security_notice")


def _close_challenges_of_deleted_device(sender: Any, instance: Any, **kwargs: Any) -> None:
    """However a phone device is deleted — ``device_flows``, the site's own
    ``device.delete()``, or its user's deletion cascading — no code already
    sent to it for its owner outlives it (``flows.close_challenges_for``; a
    no-op where ``device_flows`` has already closed them)."""
    from . import flows

    flows.close_challenges_for(phone=instance.number, user=instance.user_id, device=instance)


pre_delete.connect(
    _close_challenges_of_deleted_device,
    sender="django_sms2fa.PhoneDevice",
    dispatch_uid="django_sms2fa.close_challenges_of_deleted_device",
)
