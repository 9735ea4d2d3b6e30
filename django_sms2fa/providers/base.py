"""The provider base class.

A provider turns an :class:`~django_sms2fa.types.OutgoingSms` into a
:class:`~django_sms2fa.types.SendResult`, and may look up a status or check a
code. It knows nothing of models, users, requests or settings: its options
arrive as constructor keyword arguments, so it can be built and tested without
a database.

``send()`` is a template method (as in django-anymail): it times the call and
checks the result; subclasses fill ``_send()`` and declare ``capabilities``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..exceptions import ProviderError, Sms2faConfigurationError
from ..types import Capabilities, DeliveryReport, OutgoingSms, SendResult
from .redaction import blank_known_codes


class InvalidDeliveryReport(ValueError):
    """A webhook body that a provider's parser cannot read.

    ``code`` is stable (the webhook answers it in a 400); ``str()`` is a short
    fixed description that never quotes the body.
    """

    def __init__(self, what: str, *, code: str = "malformed_report") -> None:
        self.code = code
        super().__init__(what)


@dataclass(frozen=True)
class WebhookCall:
    """One call to the delivery webhook, as a signing provider needs to see it.

    ``url`` is the absolute URL the request arrived at, as Django rebuilds it
    (``request.build_absolute_uri()``: scheme and host from the request, so
    behind a proxy ``SECURE_PROXY_SSL_HEADER`` / ``USE_X_FORWARDED_HOST``
    decide them). ``headers`` has lower-case names. ``received_at`` is aware.
    """

    url: str
    method: str
    headers: Mapping[str, str]
    body: bytes
    content_type: str
    received_at: datetime


class BaseProvider:
    #: Human name shown in the admin and in errors.
    provider_name: str = "base"
    #: What the provider can do; see :class:`~django_sms2fa.types.Capabilities`.
    capabilities: Capabilities = Capabilities(delivers_text=True)

    def __init__(self, *, alias: str = "default", **options: Any) -> None:
        self.alias = alias
        if options:
            # An option nobody reads is almost always a typo in settings.
            raise Sms2faConfigurationError(
                f"{type(self).__name__} (provider {alias!r}) does not take the "
                f"option(s) {', '.join(sorted(options))}.",
                check_id="sms2fa.E002",
            )

    def __repr__(self) -> str:
        # Never show options: they hold tokens and passwords.
        return f"<{type(self).__name__} alias={self.alias!r}>"

    def send(self, sms: OutgoingSms) -> SendResult:
        """Hand ``sms`` to the provider.

        :returns: a :class:`SendResult` with the provider's message id and a
            normalized status; ``returned_code`` filled when the provider made
            the code.
        :raises ProviderError: (or a subclass) when the provider did not take it.
        """
        started = time.monotonic()
        try:
            result = self._send(sms)
        except ProviderError as err:
            err.provider = err.provider or self.alias
            # Whatever the provider module blanked, the code this SMS carries
            # never leaves in the error's text, in any spelling (an echo of our
            # request may space, dash or encode it). The flows scrub again
            # before anything is stored (redaction.scrub_provider_text).
            err.provider_text = blank_known_codes(err.provider_text, [sms.code])[:500]
            err.provider_code = blank_known_codes(err.provider_code, [sms.code])[:64]
            raise
        if not isinstance(result, SendResult):
            raise TypeError(f"{type(self).__name__}._send() must return a SendResult")
        if result.latency_ms is None:
            result.latency_ms = int((time.monotonic() - started) * 1000)
        return result

    def _send(self, sms: OutgoingSms) -> SendResult:
        raise NotImplementedError(f"{type(self).__name__} must implement _send()")

    def check_code(self, *, phone: str, code: str, message_id: str = "") -> bool:
        """Ask the provider whether ``code`` is right (``verifies_code`` providers).

        :returns: ``True`` only when the provider confirms the code.
        :raises ProviderError: when the provider could not answer.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not verify codes (capabilities.verifies_code)"
        )

    def cancel(self, message_id: str) -> bool:
        """End a verification still in flight at the provider (``verifies_code``
        providers that allow one per number at a time, such as Vonage Verify).

        The flows call it before a resend replaces the send ``message_id``.

        :returns: ``True`` when the provider ended it, ``False`` when it was
            already over.
        :raises ProviderError: the provider could not answer.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot cancel a send")

    @classmethod
    def can_cancel(cls) -> bool:
        """Whether the class implements :meth:`cancel`."""
        return cls.cancel is not BaseProvider.cancel

    def get_status(self, message_id: str) -> SendResult:
        """Look up the delivery status of a sent message, where the API has one."""
        raise NotImplementedError(f"{type(self).__name__} has no status look-up")

    def parse_delivery_report(self, body: bytes, content_type: str) -> list[DeliveryReport]:
        """Read the body of a delivery webhook this provider called.

        Only the parsing: the webhook has already checked the shared secret
        or, for a provider that signs its calls, :meth:`verify_webhook`.

        :returns: one :class:`DeliveryReport` per message the body names.
        :raises InvalidDeliveryReport: the body is not what the provider sends.
        """
        raise NotImplementedError(f"{type(self).__name__} sends no delivery reports")

    def verify_webhook(self, call: WebhookCall) -> None:
        """Check that the provider itself made this webhook call (its signature).

        Implemented by providers that sign their callbacks (Twilio, Vonage,
        Amazon SNS); the webhook then relies on the signature and needs no
        shared secret in ``SMS2FA["WEBHOOK_SECRETS"]``. Compare in constant
        time; refuse a call dated too far from ``call.received_at`` where the
        provider dates its calls.

        :raises InvalidDeliveryReport: with ``code`` ``"bad_signature"`` (missing,
            forged, for another URL or body) or ``"stale"`` (outside the
            accepted time window). The webhook answers 403 and changes nothing.
        """
        raise NotImplementedError(f"{type(self).__name__} does not sign its webhooks")

    @classmethod
    def signs_webhooks(cls) -> bool:
        """Whether the class implements :meth:`verify_webhook`."""
        return cls.verify_webhook is not BaseProvider.verify_webhook

    @classmethod
    def has_status_lookup(cls) -> bool:
        """Whether the class implements :meth:`get_status`."""
        return cls.get_status is not BaseProvider.get_status

    @classmethod
    def receives_delivery_reports(cls) -> bool:
        """Whether the class implements :meth:`parse_delivery_report`."""
        return cls.parse_delivery_report is not BaseProvider.parse_delivery_report
