"""What the app records: challenges, the SMS sent for them, and users' phones.

The state machine of a challenge is enforced by the database, not by Python
objects in memory: every transition is a conditional ``UPDATE … WHERE
status = 'pending'`` (see ``flows.py``), so of any number of concurrent
requests exactly one can move a challenge, and only once.
"""

from __future__ import annotations

import uuid
from typing import Any

from django_otp.models import Device, TimestampMixin

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import types
from .phones import mask_phone

if not apps.is_installed("django_otp.plugins.otp_static"):
    # Recovery codes are django-otp static devices (hashed): without the app
    # the import below fails with a message that does not say what to do.
    raise ImproperlyConfigured(
        "django_sms2fa needs 'django_otp.plugins.otp_static' in INSTALLED_APPS "
        "(recovery codes), after 'django_otp' and before 'django_sms2fa'."
    )

from django_otp.plugins.otp_static.models import StaticDevice  # noqa: E402


class Purpose(models.TextChoices):
    LOGIN = "login", _("Second factor at login")
    PASSWORDLESS = "passwordless", _("Passwordless login")
    VERIFY_PHONE = "verify_phone", _("Phone verification")
    CHANGE_PHONE = "change_phone", _("Phone number change")


class ChallengeStatus(models.TextChoices):
    # Waiting for a task worker to send the first code (SEND_VIA_TASKS); it
    # cannot be verified until the worker moves it to pending.
    QUEUED = "queued", _("Queued for sending")
    PENDING = "pending", _("Pending")
    VERIFIED = "verified", _("Verified")
    EXPIRED = "expired", _("Expired")
    FAILED = "failed", _("Failed (too many wrong codes)")
    CANCELLED = "cancelled", _("Cancelled")
    UNDELIVERABLE = "undeliverable", _("Undeliverable")


class Channel(models.TextChoices):
    """How a code reaches the phone (``types.CHANNELS``)."""

    SMS = types.SMS, _("SMS")
    CALL = types.CALL, _("voice call")
    WHATSAPP = types.WHATSAPP, _("WhatsApp")


class CheckedBy(models.TextChoices):
    LOCAL = "local", _("This site (keyed hash)")
    PROVIDER = "provider", _("The SMS provider")


class Challenge(models.Model):
    """One attempt to prove possession of a phone."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        # Keep the audit row when a user is deleted.
        on_delete=models.SET_NULL,
        related_name="sms2fa_challenges",
    )
    device = models.ForeignKey(
        "PhoneDevice",
        verbose_name=_("device"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="challenges",
    )
    phone = models.CharField(_("phone (E.164)"), max_length=16)
    # ISO 3166 region of the phone ("SE"; "ZZ" when unknown), for the stats by
    # country without parsing every number again.
    region = models.CharField(_("region"), max_length=2, blank=True)
    purpose = models.CharField(_("purpose"), max_length=20, choices=Purpose.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=ChallengeStatus.choices, default=ChallengeStatus.PENDING
    )
    # HMAC-SHA256 of the code bound to this challenge (codes.hash_code); empty
    # where only the provider can check the code. Never shown anywhere.
    code_hash = models.CharField(_("code hash"), max_length=64, blank=True, editable=False)
    checked_by = models.CharField(
        _("checked by"), max_length=8, choices=CheckedBy.choices, default=CheckedBy.LOCAL
    )
    provider = models.CharField(_("provider alias"), max_length=64, blank=True)
    # Guesses admitted for evaluation (the limit applies to this counter) ...
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # ... and those that turned out wrong. Only when every admitted guess was
    # wrong (wrong_attempts == max_attempts) does the challenge close as failed:
    # closing earlier could kill a right answer still being evaluated.
    wrong_attempts = models.PositiveSmallIntegerField(_("wrong attempts"), default=0)
    max_attempts = models.PositiveSmallIntegerField(_("maximum attempts"))
    sends = models.PositiveSmallIntegerField(_("sends"), default=0)
    created_at = models.DateTimeField(_("created at"))
    expires_at = models.DateTimeField(_("expires at"))
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    # When the last code was handed to a provider (resend cooldown).
    last_sent_at = models.DateTimeField(_("last sent at"), null=True, blank=True)
    channel = models.CharField(
        _("channel"),
        max_length=16,
        choices=Channel.choices,
        default=types.SMS,
        # In the database too: rows written by raw SQL (bulk seeds) or by
        # processes still on the old code during an upgrade get it.
        db_default=types.SMS,
    )
    # The last send ended with no provider surely holding the code but one that
    # may have it (a 500, a timeout after sending): the user is told the code
    # may be delayed and may ask for another at once.
    delivery_uncertain = models.BooleanField(
        _("delivery uncertain"), default=False, db_default=False
    )
    # When the proof this challenge gave was used (a phone_token redeemed, a
    # device confirmed): a verified challenge proves something only once.
    consumed_at = models.DateTimeField(_("consumed at"), null=True, blank=True)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("challenge")
        verbose_name_plural = _("challenges")
        # The audit is read-only; only this permission deletes old rows (admin
        # and sms2fa_purge), so "change" and "delete" are never needed.
        permissions = [("purge_challenge", _("Can purge old challenges and messages"))]
        indexes = [
            # Send limits by phone and by user over a time window.
            models.Index(fields=["phone", "created_at"], name="sms2fa_chal_phone_time"),
            models.Index(fields=["user", "created_at"], name="sms2fa_chal_user_time"),
            # The admin's newest-first list and purging by age.
            models.Index(fields=["created_at"], name="sms2fa_chal_created"),
            # django-otp devices find their newest pending challenge.
            models.Index(fields=["device", "status", "created_at"], name="sms2fa_chal_device"),
            # The admin's filters, each read newest first without a sort.
            models.Index(fields=["status", "created_at"], name="sms2fa_chal_status_time"),
            models.Index(fields=["purpose", "created_at"], name="sms2fa_chal_purpose_time"),
            models.Index(fields=["provider", "created_at"], name="sms2fa_chal_provider_time"),
            # The channel filter: only the rare channels (most codes go by SMS).
            models.Index(
                fields=["channel", "created_at"],
                name="sms2fa_chal_channel_time",
                condition=~models.Q(channel=types.SMS),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} challenge {self.pk} ({self.status})"

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)

    @property
    def is_pending(self) -> bool:
        return self.status == ChallengeStatus.PENDING


class MessageStatus(models.TextChoices):
    """The normalized delivery status of a message (``types.MESSAGE_STATUSES``)."""

    QUEUED = types.QUEUED, _("Queued")
    SENT = types.SENT, _("Sent")
    DELIVERED = types.DELIVERED, _("Delivered")
    FAILED = types.FAILED, _("Failed")
    UNKNOWN = types.UNKNOWN, _("Unknown")


class Message(models.Model):
    """One SMS handed (or offered) to one provider. A resend is a new message."""

    Status = MessageStatus

    challenge = models.ForeignKey(
        Challenge,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("challenge"),
    )
    phone = models.CharField(_("phone (E.164)"), max_length=16)
    provider = models.CharField(_("provider alias"), max_length=64)
    channel = models.CharField(
        _("channel"),
        max_length=16,
        choices=Channel.choices,
        default=types.SMS,
        # In the database too: rows written by raw SQL (bulk seeds) or by
        # processes still on the old code during an upgrade get it.
        db_default=types.SMS,
    )
    provider_message_id = models.CharField(
        _("provider message id"), max_length=128, blank=True, db_index=True
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=types.QUEUED
    )
    provider_status = models.CharField(_("provider's own status"), max_length=64, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_text = models.CharField(_("error text"), max_length=500, blank=True)
    # The text as sent, with the code replaced by bullets.
    text_masked = models.TextField(_("text (code masked)"), blank=True)
    created_at = models.DateTimeField(_("created at"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        indexes = [
            models.Index(fields=["created_at"], name="sms2fa_msg_created"),
            # sms2fa_refresh_status polls the messages still waiting for a final status.
            models.Index(fields=["status", "created_at"], name="sms2fa_msg_status_time"),
            # The admin's phone search and filters, each read newest first.
            models.Index(fields=["phone", "created_at"], name="sms2fa_msg_phone_time"),
            models.Index(fields=["provider", "created_at"], name="sms2fa_msg_provider_time"),
            models.Index(
                fields=["channel", "created_at"],
                name="sms2fa_msg_channel_time",
                condition=~models.Q(channel=types.SMS),
            ),
        ]

    def __str__(self) -> str:
        return f"SMS {self.pk} via {self.provider} ({self.status})"


class Refusal(models.Model):
    """A request the abuse defences refused, for the audit: who, which rule, when."""

    created_at = models.DateTimeField(_("created at"), db_index=True)
    reason = models.CharField(_("reason"), max_length=32)  # the error code, e.g. "rate_limited"
    limit = models.CharField(
        _("limit"), max_length=16, blank=True
    )  # phone, ip, user, country, global
    phone = models.CharField(_("phone (E.164)"), max_length=16, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sms2fa_refusals",
    )
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    retry_after = models.PositiveIntegerField(_("retry after (s)"), null=True, blank=True)

    class Meta:
        verbose_name = _("refusal")
        verbose_name_plural = _("refusals")
        indexes = [
            # The admin's phone search and reason filter, newest first.
            models.Index(fields=["phone", "created_at"], name="sms2fa_refusal_phone_time"),
            models.Index(fields=["reason", "created_at"], name="sms2fa_refusal_reason_time"),
        ]

    def __str__(self) -> str:
        return f"{self.reason} ({self.limit or '-'}) at {self.created_at:%Y-%m-%d %H:%M:%S}"


class DeviceAction(models.TextChoices):
    ADDED = "added", _("Added")
    CONFIRMED = "confirmed", _("Confirmed")
    REPLACED = "replaced", _("Replaced")
    REMOVED = "removed", _("Removed")
    UNLOCKED = "unlocked", _("Unlocked")
    FAILURES_RESET = "failures_reset", _("Failures reset")


class DeviceEvent(models.Model):
    """One change to a user's phone device, for the audit: what, who, when, where.

    Kept when the device or the user is deleted (the number stays, so the
    audit still says which phone a removed device was).
    """

    created_at = models.DateTimeField(_("created at"), db_index=True)
    action = models.CharField(_("action"), max_length=16, choices=DeviceAction.choices)
    device = models.ForeignKey(
        "PhoneDevice",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        verbose_name=_("device"),
    )
    # Whose phone it is ...
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sms2fa_device_events",
    )
    number = models.CharField(_("phone (E.164)"), max_length=16)
    # ... and who made the change (the user, or a staff member in the admin).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)

    class Meta:
        verbose_name = _("device event")
        verbose_name_plural = _("device events")
        # The admin's phone search, newest first.
        indexes = [
            models.Index(fields=["number", "created_at"], name="sms2fa_devevent_number_time")
        ]

    def __str__(self) -> str:
        return f"{self.action} {mask_phone(self.number)} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class PhoneDevice(TimestampMixin, Device):
    """A user's phone as a django-otp device.

    ``generate_challenge()`` sends a code and ``verify_token()`` checks it, both
    through ``flows``, so OTPMiddleware, ``otp_required``, ``django_otp.login``
    and ``OTPAdminSite`` work with it unchanged.
    """

    # django-otp's field, with a reverse name of our own: two_factor's
    # PhoneDevice would otherwise claim ``user.phonedevice_set`` too.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="sms2fa_phones",
        help_text="The user that this device belongs to.",
    )
    number = models.CharField(_("phone (E.164)"), max_length=16)
    # While unconfirmed: the device this one will replace once confirmed.
    replaces = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("replaces"),
    )

    class Meta(Device.Meta):
        verbose_name = _("phone device")
        verbose_name_plural = _("phone devices")
        constraints = [
            models.UniqueConstraint(fields=["user", "number"], name="sms2fa_device_user_number"),
            # A number is confirmed on at most one account: passwordless login
            # and account recovery by phone must find exactly one owner, never
            # pick one by row order. Confirming it on another account unbinds
            # it from the old one first (device_flows.confirm_phone).
            models.UniqueConstraint(
                fields=["number"],
                condition=models.Q(confirmed=True),
                name="sms2fa_device_confirmed_number",
            ),
        ]

    def __str__(self) -> str:
        return self.name or mask_phone(self.number)

    @property
    def masked_number(self) -> str:
        return mask_phone(self.number)

    def generate_challenge(self) -> str:
        """Send a login code to this phone; return the text django-otp shows.

        Nothing is sent while the current request's session logged in with a
        phone's code alone: :meth:`verify_token` would refuse the code anyway,
        and an SMS nobody can use only costs money and the phone's send budget.
        """
        from . import flows  # the device is an edge over the flows
        from .session_keys import one_factor_request

        if one_factor_request.get():
            return str(
                _(
                    "This session signed in with a phone's code alone. Sign in with "
                    "your password to use a second factor."
                )
            )
        challenge = flows.request_challenge(
            phone=self.number, purpose=Purpose.LOGIN, user=self.user, device=self
        )
        return str(_("A code was sent by SMS to %(phone)s.") % {"phone": challenge.masked_phone})

    def verify_token(self, token: Any) -> bool:
        """Check ``token`` against this device's newest pending login challenge.

        Always ``False`` while the current request's session logged in with a
        phone's code alone: that factor cannot count a second time, through
        django-otp's forms, ``OTPAdminSite`` or ``django_otp.verify_token``.
        """
        from . import flows
        from .exceptions import Sms2faError
        from .session_keys import one_factor_request

        if one_factor_request.get():
            return False
        challenge_id = (
            Challenge.objects.filter(
                device=self, purpose=Purpose.LOGIN, status=ChallengeStatus.PENDING
            )
            .order_by("-created_at")
            .values_list("pk", flat=True)
            .first()
        )
        if challenge_id is None:
            return False
        try:
            flows.verify_challenge(challenge_id, token, purpose=Purpose.LOGIN, user=self.user)
        except Sms2faError:
            return False
        return True


class AuditAction(models.TextChoices):
    VIEWED_FULL_PHONE = "viewed_full_phone", _("Full phone number shown")
    DELETED_IN_ADMIN = "deleted_in_admin", _("Deleted in the admin")
    PURGED = "purged", _("Purged")


class AuditRecord(models.Model):
    """What staff did with the audit itself: who was shown a full phone
    number, and every deletion of audit rows (in the admin or by the purge).

    Never changed or deleted by the app, the admin or ``sms2fa_purge``.
    """

    created_at = models.DateTimeField(_("created at"), db_index=True)
    action = models.CharField(_("action"), max_length=20, choices=AuditAction.choices)
    # Who did it; ``actor_repr`` keeps the name when the account is deleted
    # (and names the command or task when no account did it).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff member"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_repr = models.CharField(_("done by"), max_length=150, blank=True)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    # What it was done to: "django_sms2fa.challenge" and the row's id (empty
    # for a bulk deletion or a purge, which ``count`` sums up).
    object_type = models.CharField(_("object type"), max_length=100, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    # The number shown (E.164); the admin shows it masked.
    phone = models.CharField(_("phone (E.164)"), max_length=16, blank=True)
    count = models.PositiveIntegerField(_("rows deleted"), null=True, blank=True)
    cutoff = models.DateTimeField(_("cutoff"), null=True, blank=True)
    # Rows deleted per kind, or the ids of a bulk deletion: never a number or a code.
    detail = models.CharField(_("detail"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("audit record")
        verbose_name_plural = _("audit records")
        indexes = [
            # The admin's search: who was shown this number, what became of that row.
            models.Index(fields=["phone", "created_at"], name="sms2fa_audit_phone_time"),
            models.Index(fields=["object_id"], name="sms2fa_audit_object"),
        ]
        permissions = [
            (
                "view_full_phone",
                _("Can see full phone numbers in the admin (each showing is recorded)"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_repr or '-'} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class Method(models.TextChoices):
    """The ways a user proves a second factor."""

    PHONE = "phone", _("Phone (code by SMS or call)")
    TOTP = "totp", _("Authenticator app")
    RECOVERY = "recovery", _("Recovery code")


class RecoveryCodeDevice(StaticDevice):
    """A user's set of single-use recovery codes, as a django-otp static device.

    django-otp's ``StaticToken`` keeps its tokens in clear; these are kept in
    :class:`RecoveryCode` instead, as the keyed HMAC that SMS codes get
    (``codes.hash_code``), so a copy of the database holds nothing a thief
    could type. The parent ``StaticDevice`` row has no tokens, so nothing
    verifies through it; through this model, ``verify_token`` checks a code
    under the account's wrong-code lockout (``methods.use_recovery_code``),
    in OTPAdminSite and ``django_otp.match_token`` too.
    """

    class Meta:
        verbose_name = _("recovery codes")
        verbose_name_plural = _("recovery codes")

    def verify_token(self, token: Any) -> bool:
        from . import methods  # the device is an edge over the flows
        from .exceptions import Sms2faError

        try:
            methods.use_recovery_code(self.user, token, device=self)
        except Sms2faError:
            return False
        return True


class RecoveryCode(models.Model):
    """One recovery code, as its keyed hash; spent once (``used_at``)."""

    device = models.ForeignKey(
        RecoveryCodeDevice,
        on_delete=models.CASCADE,
        related_name="codes",
        verbose_name=_("device"),
    )
    code_hash = models.CharField(_("code hash"), max_length=64, editable=False)
    created_at = models.DateTimeField(_("created at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("recovery code")
        verbose_name_plural = _("recovery codes")
        indexes = [models.Index(fields=["code_hash"], name="sms2fa_recovery_hash")]

    def __str__(self) -> str:
        return f"recovery code {self.pk} ({'used' if self.used_at else 'unused'})"


class MethodAction(models.TextChoices):
    ADDED = "added", _("Added")
    CONFIRMED = "confirmed", _("Confirmed")
    REMOVED = "removed", _("Removed")
    USED = "used", _("Used to sign in")
    FAILED = "failed", _("Wrong code")
    REGENERATED = "regenerated", _("New codes made")
    REMEMBERED = "remembered", _("Browser remembered")
    FORGOTTEN = "forgotten", _("Browser forgotten")


class MethodEvent(models.Model):
    """One event of a sign-in method other than a phone's codes (those are
    challenges): an authenticator app added, a recovery code used, a browser
    remembered. Who, which method, what, when, from where — never a code."""

    created_at = models.DateTimeField(_("created at"), db_index=True)
    method = models.CharField(_("method"), max_length=16, choices=Method.choices)
    action = models.CharField(_("action"), max_length=16, choices=MethodAction.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sms2fa_method_events",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    # What else is worth knowing: "7 codes left", a browser's user agent.
    detail = models.CharField(_("detail"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("sign-in method event")
        verbose_name_plural = _("sign-in method events")
        indexes = [models.Index(fields=["user", "created_at"], name="sms2fa_mevent_user_time")]

    def __str__(self) -> str:
        return f"{self.method} {self.action} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class RememberedBrowser(models.Model):
    """A browser whose user asked not to be asked for a second factor on it
    for ``REMEMBER_BROWSER_DAYS``. Its cookie holds only this row's id, signed;
    the row binds it to the user, to the password of the day (a fingerprint
    of the session auth hash) and to the device that proved the login."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="sms2fa_browsers",
    )
    # django-otp's persistent id of the device that proved the login
    # ("django_sms2fa.phonedevice/3"): the session it skips to is verified
    # with that device, and a removed device remembers nothing.
    device_id = models.CharField(_("device"), max_length=128)
    auth_fingerprint = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("created at"))
    expires_at = models.DateTimeField(_("expires at"))
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("forgotten at"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)

    class Meta:
        verbose_name = _("remembered browser")
        verbose_name_plural = _("remembered browsers")

    def __str__(self) -> str:
        return f"browser {self.pk} of user {self.user_id}"


class RollupKind(models.TextChoices):
    """What one :class:`DailyRollup` row counts (each kind fills only its dimensions)."""

    # Markers, one per day and stage, even for a day with no activity:
    # the day's challenges and sends are rolled up (with the prefix digits
    # its prefix rows were made with) ...
    DAY = "day", _("Day rolled up")
    # ... and its delivery receipts are in (the failures are final).
    RECEIPTS = "receipts", _("Receipts rolled up")
    # Messages by provider: SMS sent.
    MESSAGE = "message", _("Messages")
    # Messages by provider, final status and error code: failures.
    DELIVERY = "delivery", _("Deliveries")
    # Messages by number prefix: SMS volume per prefix.
    MESSAGE_PREFIX = "message_prefix", _("Messages by prefix")
    # Challenges by region, purpose, provider and status: verification rates.
    CHALLENGE = "challenge", _("Challenges")
    # Challenges by number prefix and status: verified per prefix.
    CHALLENGE_PREFIX = "challenge_prefix", _("Challenges by prefix")


#: What a :class:`DailyRollup` row is counted by: one row per kind, day and
#: combination of these (its unique constraint, kind and day first).
ROLLUP_DIMENSIONS = (
    "kind",
    "day",
    "region",
    "provider",
    "purpose",
    "outcome",
    "error_code",
    "prefix",
    "prefix_digits",
)


class DailyRollup(models.Model):
    """Counts of one closed day's challenges and messages, per dimension.

    The stats page reads these instead of scanning the raw rows (see
    :mod:`django_sms2fa.rollups`). Each kind of a day is computed once, when
    its figures can no longer change, and never again (only ``sms2fa_rollup
    --rebuild`` does); the rows outlive the retention purge, so the figures of
    purged days stay.

    Dimensions a kind does not use are ``""`` (``prefix_digits`` 0). The
    measures:

    * ``count``: the rows of that kind (messages or challenges created that day);
    * ``sms``: of those, the ones that count as sent. For messages, an SMS a
      provider took (``sent_at`` set or a ``sent``/``delivered`` status); for
      challenges, those with at least one such message; for challenges by
      prefix, those with ``sends > 0`` (as :func:`stats.top_prefixes` counts).
    """

    DIMENSIONS = ROLLUP_DIMENSIONS

    day = models.DateField(_("day"))
    kind = models.CharField(_("kind"), max_length=16, choices=RollupKind.choices)
    region = models.CharField(_("region"), max_length=2, blank=True)
    provider = models.CharField(_("provider alias"), max_length=64, blank=True)
    purpose = models.CharField(_("purpose"), max_length=20, blank=True)
    # The challenge's status or the message's status, by kind.
    outcome = models.CharField(_("outcome"), max_length=16, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    prefix = models.CharField(_("number prefix"), max_length=16, blank=True)
    # PUMPING["PREFIX_DIGITS"] when the day was rolled up: a day rolled up
    # with other digits is read live for the prefix figure until rebuilt.
    prefix_digits = models.PositiveSmallIntegerField(_("prefix digits"), default=0)
    count = models.PositiveIntegerField(_("count"), default=0)
    sms = models.PositiveIntegerField(_("sent"), default=0)
    computed_at = models.DateTimeField(_("computed at"))

    class Meta:
        verbose_name = _("daily roll-up")
        verbose_name_plural = _("daily roll-ups")
        constraints = [
            # Kind and day first: each figure reads one kind over a range of
            # days, a range scan of this index.
            models.UniqueConstraint(fields=ROLLUP_DIMENSIONS, name="sms2fa_rollup_dimensions")
        ]
        indexes = [
            # The prefix figure's second read: the verified challenges of its
            # top prefixes only. Without it, that read walks every prefix's
            # rows of the range (about 4,000 a day at 10M rows a year: 250 ms
            # for 90 days; with it, 2 ms).
            models.Index(
                fields=["prefix_digits", "prefix", "day"],
                name="sms2fa_rollup_prefix_verified",
                condition=models.Q(
                    kind=RollupKind.CHALLENGE_PREFIX, outcome=ChallengeStatus.VERIFIED
                ),
            ),
            # The two reads that sum the most rows, each from its index alone
            # (every column they use is a key column; an index-only scan once
            # autovacuum has marked the pages visible): verification by day and
            # region (about 500 rows a day) and the SMS per prefix (about 300).
            # 90 days at 10M rows a year: the stats page 192 -> 170 ms.
            models.Index(
                fields=["day", "region", "outcome", "sms"],
                name="sms2fa_rollup_grid",
                condition=models.Q(kind=RollupKind.CHALLENGE),
            ),
            models.Index(
                fields=["prefix_digits", "day", "prefix", "sms"],
                name="sms2fa_rollup_message_prefix",
                condition=models.Q(kind=RollupKind.MESSAGE_PREFIX),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} roll-up of {self.day:%Y-%m-%d}"
