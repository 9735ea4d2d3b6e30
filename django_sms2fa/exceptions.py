"""Every error the app raises on purpose.

Domain errors share one root, :class:`Sms2faError`, and each carries a stable
``code`` that edges (REST, HTML) map to a status and a translated message in one
place. Their text never contains a code, a code hash or a provider secret: the
message is the class's fixed, translatable text, and provider detail is kept in
attributes for the audit, not in ``str()``.

Configuration errors deliberately sit outside that root (they subclass Django's
``ImproperlyConfigured``), so that no ``except Sms2faError`` in an edge can
swallow a broken deployment.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _


class Sms2faConfigurationError(ImproperlyConfigured):
    """A setting is missing, malformed or unsafe.

    ``check_id`` is the system-check id that reports the same problem at start-up.
    """

    def __init__(self, message: str, *, check_id: str = "sms2fa.E001") -> None:
        self.check_id = check_id
        self.bare_message = message
        super().__init__(f"{message} ({check_id})")


class Sms2faError(Exception):
    """Root of the domain errors. ``code`` is stable and documented."""

    code: str = "sms2fa_error"
    default_message: Any = _("The phone verification could not be completed.")

    def __init__(self, message: Any = None, **context: Any) -> None:
        self.message = message if message is not None else self.default_message
        # Context is for the audit and for edges (challenge id, retry_after, ...).
        # It must never hold a code: callers pass identifiers only.
        self.context = context
        super().__init__(str(self.message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r})"


class InvalidPhone(Sms2faError):
    code = "invalid_phone"
    default_message = _("Enter a valid phone number, including the country code.")


class InvalidCode(Sms2faError):
    """The submitted code is not a code at all (not ASCII digits, wrong size).

    It is refused before any comparison, so it does not use up an attempt.
    """

    code = "invalid_code"
    default_message = _("Enter the code from the SMS, digits only.")


class IncorrectCode(Sms2faError):
    """The code was compared and did not match; one attempt was used."""

    code = "incorrect_code"
    default_message = _("The code is not correct.")

    @property
    def attempts_left(self) -> int | None:
        return self.context.get("attempts_left")


class ChallengeNotFound(Sms2faError):
    """No such challenge, or it belongs to someone else, or to another purpose.

    The three cases are deliberately indistinguishable.
    """

    code = "challenge_not_found"
    default_message = _("This verification request does not exist.")


class ChallengeExpired(Sms2faError):
    code = "challenge_expired"
    default_message = _("The code has expired. Request a new one.")


class ChallengeAlreadyUsed(Sms2faError):
    code = "challenge_used"
    default_message = _("This code has already been used.")


class TooManyAttempts(Sms2faError):
    code = "too_many_attempts"
    default_message = _("Too many wrong codes. Request a new one.")


class ChallengeCancelled(Sms2faError):
    code = "challenge_cancelled"
    default_message = _("This verification request was cancelled.")


class ChallengeUndeliverable(Sms2faError):
    code = "challenge_undeliverable"
    default_message = _("The SMS for this request could not be sent. Request a new one.")


class ChallengeQueued(Sms2faError):
    """The code is still waiting for a task worker to send it (``SEND_VIA_TASKS``).

    Nothing was checked and no attempt was used: ask again in a moment.
    """

    code = "challenge_queued"
    default_message = _("The code is still being sent. Try again in a moment.")


class RateLimited(Sms2faError):
    """Too soon or too often; ``retry_after`` (seconds) says when to try again."""

    code = "rate_limited"
    default_message = _("Too many requests. Try again later.")

    @property
    def retry_after(self) -> int:
        return int(self.context.get("retry_after", 1))


class VerificationLocked(RateLimited):
    """Too many consecutive wrong codes for this account (or phone): SMS
    verification is locked for ``retry_after`` seconds."""

    code = "verification_locked"
    default_message = _("Too many wrong codes. SMS verification is locked for a while.")


class DestinationSuspended(RateLimited):
    """Sending to this number range (prefix) is suspended (SMS-pumping breaker)."""

    code = "destination_suspended"
    default_message = _("Codes cannot be sent to this number right now. Try again later.")


class LimitsUnavailable(Sms2faError):
    """The cache that holds the limits and the failure lockout cannot be reached.

    A limit that cannot be counted is neither skipped (that would let every
    guess and every send through) nor a crash: nothing is sent and no code is
    judged until the cache is back. Edges answer 503 ``service_unavailable``.
    """

    code = "service_unavailable"
    default_message = _("The service is unavailable right now. Try again in a moment.")


class NumberNotAllowed(Sms2faError):
    """The number is valid, but SMS may not go there (region or number type)."""

    code = "number_not_allowed"
    default_message = _("Codes cannot be sent to this phone number.")


class InvalidCredentials(Sms2faError):
    code = "invalid_credentials"
    default_message = _("The username or password is not correct.")


class LoginExpired(Sms2faError):
    """The pending password-then-code login is missing, expired or for another challenge."""

    code = "login_expired"
    default_message = _("The login has expired. Log in again.")


class PasswordlessDisabled(Sms2faError):
    """Passwordless login is off (``PASSWORDLESS_LOGIN``, or no ``PhoneCodeBackend``)."""

    code = "passwordless_disabled"
    default_message = _("Passwordless login is not enabled on this site.")


class SecondFactorRequired(Sms2faError):
    """The action needs a session verified with a second factor (a fresh code)."""

    code = "second_factor_required"
    default_message = _("Confirm it is you with a code from your phone first.")


class StepUpRequired(SecondFactorRequired):
    """The action changes how the user signs in: the session must have proved
    a second factor within ``STEP_UP_WINDOW`` seconds, not merely once."""

    code = "step_up_required"
    default_message = _("Confirm it is you again with a second factor first.")


class MethodUnavailable(Sms2faError):
    """The sign-in method asked for is not one the user has set up (or the
    site offers)."""

    code = "method_unavailable"
    default_message = _("This sign-in method is not set up for your account.")


class MethodAlreadyEnrolled(Sms2faError):
    """The user already has a confirmed authenticator app."""

    code = "method_already_enrolled"
    default_message = _("An authenticator app is already set up for your account.")


class DeviceNotFound(Sms2faError):
    code = "device_not_found"
    default_message = _("This phone does not exist.")


class PhoneAlreadyEnrolled(Sms2faError):
    code = "phone_already_enrolled"
    default_message = _("This phone number is already confirmed on your account.")


class InvalidPhoneToken(Sms2faError):
    code = "invalid_phone_token"
    default_message = _("The phone verification is invalid, expired or already used.")


class DeliveryFailed(Sms2faError):
    """Every provider tried refused or failed to take the SMS.

    The challenge is left ``undeliverable``; ``context["challenge_id"]`` names it
    and ``__cause__`` is the last provider error.
    """

    code = "delivery_failed"
    default_message = _("The SMS could not be sent right now. Try again later.")


class ProviderLimited(DeliveryFailed):
    """The provider refused to send because of its own limit on this number
    (Twilio Verify: 5 sends per number per 10 minutes). Told like this app's
    own rate limit: ``rate_limited``, with ``retry_after`` seconds. A
    subclass of :class:`DeliveryFailed`, so a caller that hides failures
    (passwordless login) hides this one too."""

    code = "rate_limited"
    default_message = _("Too many requests. Try again later.")

    @property
    def retry_after(self) -> int:
        return int(self.context.get("retry_after", 1))


class ChannelUnavailable(Sms2faError):
    """No provider on this number's route can reach it on the asked channel
    (``call``, ``whatsapp``)."""

    code = "channel_unavailable"
    default_message = _("Codes cannot be sent this way to this phone number.")


class ProviderError(Sms2faError):
    """A provider did not do what was asked.

    ``provider_code`` and ``provider_text`` are the provider's own error code and
    text, kept for the audit; providers must strip secrets from them before
    raising. ``may_have_sent`` is true when the request may have reached the
    provider (a timeout after sending): such a message must not be re-sent.

    ``provider_limit`` is set when the provider refused because of its own
    rate limits on this number (Twilio Verify's 60203 "max send attempts",
    60202 "max check attempts"): ``"send"`` or ``"check"``, with
    ``retry_after`` (seconds) where known. The flows answer those as this
    app's own ``rate_limited`` / ``too_many_attempts``, not as a failure.
    """

    code = "provider_error"
    default_message = _("The SMS provider could not handle the request.")

    def __init__(
        self,
        message: Any = None,
        *,
        provider: str = "",
        provider_code: str = "",
        provider_text: str = "",
        http_status: int | None = None,
        may_have_sent: bool = False,
        provider_limit: str = "",
        **context: Any,
    ) -> None:
        if provider_limit not in ("", "send", "check"):
            raise ValueError("provider_limit must be '', 'send' or 'check'")
        self.provider_limit = provider_limit
        self.provider = provider
        self.provider_code = str(provider_code)[:64]
        self.provider_text = str(provider_text)[:500]
        self.http_status = http_status
        self.may_have_sent = may_have_sent
        super().__init__(message, **context)

    def __str__(self) -> str:
        detail = ", ".join(
            part
            for part in (
                f"provider={self.provider}" if self.provider else "",
                f"http_status={self.http_status}" if self.http_status else "",
                f"provider_code={self.provider_code}" if self.provider_code else "",
            )
            if part
        )
        return f"{self.message} ({detail})" if detail else str(self.message)


class ProviderRejected(ProviderError):
    """A permanent refusal: bad number, blocked account, bad credentials.

    ``failover`` is true when the refusal is about this provider, not about the
    message (bad credentials, no sending device, a used-up quota): another
    provider may well take the same SMS, so the flows try the fallbacks.
    """

    code = "provider_rejected"

    def __init__(self, message: Any = None, *, failover: bool = False, **kwargs: Any) -> None:
        self.failover = failover
        super().__init__(message, **kwargs)


class ProviderUnavailable(ProviderError):
    """A transient failure: timeout, 5xx, 429 (``retry_after`` in seconds)."""

    code = "provider_unavailable"

    @property
    def retry_after(self) -> int | None:
        return self.context.get("retry_after")
