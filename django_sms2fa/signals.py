"""Signals for the life of a challenge and its messages.

All are sent by ``flows`` after the database change they announce has been
written, with ``sender`` set to the model class. No signal carries a code.
Receivers run in the request (or task) that caused the event; an exception in
one receiver does not stop the others and is re-raised after all have run.
"""

from __future__ import annotations

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

#: A user removed one of their phones. Args: ``device`` (already deleted).
device_removed = Signal()

#: The SMS-pumping breaker tripped: too few codes sent to a region or number
#: prefix were verified, so sending there is suspended. Args: ``scope``
#: (``"region"`` or ``"prefix"``), ``value`` (``"NG"``, ``"+23480"``),
#: ``suspended_for`` (seconds). Connect an alert to it.
pumping_suspected = Signal()
