"""Twilio Verify v2: Twilio makes the code, sends it and checks it.

Mode (d), ``verifies_code``: like iP1, Twilio never tells us the code, so
challenges sent through this provider are ``checked_by == "provider"`` and the
flows ask :meth:`TwilioVerifyProvider.check_code`. Our own expiry, attempt
limit and single use still apply before Twilio is asked.

Documented by Twilio (docs/providers/twilio-verify.md has the details):

* Start a verification, ``POST https://verify.twilio.com/v2/Services/{ServiceSid}/Verifications``,
  form-encoded ``To`` (E.164), ``Channel`` (``sms``, ``call``, ``whatsapp``,
  ...), optional ``Locale``; answers 201 with a Verification (``sid`` ``VE…``,
  ``status`` ``pending``). There is no code-length parameter: the length
  (4-10) is the Service's ``CodeLength``.
  https://www.twilio.com/docs/verify/api/verification and
  https://www.twilio.com/docs/verify/api/service
* Check a code, ``POST .../Services/{ServiceSid}/VerificationCheck`` with
  ``Code`` and either ``To`` or ``VerificationSid``; answers 200 with
  ``status`` ``approved`` for the right code, ``pending`` for a wrong one.
  https://www.twilio.com/docs/verify/api/verification-check
* A verification is deleted once approved, expired (10 minutes) or out of
  check attempts; a check then answers 404 (20404).
  https://www.twilio.com/docs/verify/api/rate-limits-and-timeouts
* Verify's own limits: 60203 "Max send attempts reached" (HTTP 429, five
  sends to one number in ten minutes), 60202 "Max check attempts reached",
  60200 invalid parameter, 60205 "SMS is not supported by landline phone
  number", 60212 too many concurrent requests for a number.
  https://www.twilio.com/docs/api/errors/60203 (and /60202, /60200, /60205,
  /60212)
* Unsupported ``Locale`` values are refused with a 404, so only the
  languages of the supported-languages page are sent.
  https://www.twilio.com/docs/verify/supported-languages

Inferred:

* 20404 when *starting* a verification means the Service SID is wrong (our
  configuration: failover); on a check it means the code can no longer pass.
* 60223 (a channel disabled on the Service) is our configuration: failover.
* Credentials, Basic auth and the error body are those of every Twilio API
  (``twilio.py``); twilio-python sends exactly these form fields.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..exceptions import ProviderRejected, ProviderUnavailable
from ..types import CALL, SENT, SMS, WHATSAPP, Capabilities, OutgoingSms, SendResult
from . import reports
from .http import HttpAnswer, summarize_body
from .redaction import blank_known_codes
from .twilio import TwilioBase, read_error

logger = logging.getLogger("django_sms2fa.providers")

SERVICE_SID = re.compile(r"VA[0-9a-fA-F]{32}")
VERIFICATION_SID = re.compile(r"VE[0-9a-fA-F]{32}")

#: Seconds until Twilio lifts 60203: a verification lives ten minutes.
SEND_LIMIT_RETRY_AFTER = 600
# Verify error codes (https://www.twilio.com/docs/api/errors/<code>).
MAX_CHECK_ATTEMPTS = 60202
MAX_SEND_ATTEMPTS = 60203
INVALID_PARAMETER = 60200
LANDLINE = 60205
CHANNEL_DISABLED = 60223
NOT_FOUND = 20404

# Locales of the Verify Default template (supported-languages page).
SUPPORTED_LOCALES = frozenset(
    "af ar ca zh zh-CN zh-HK hr cs da nl en en-GB et fi fr de el he hi hu id it ja kn "
    "ko lt ms mr nb pl pt pt-BR ro ru sk es sv tl te th tr uk vi".split()
)
# Django language codes that name a Twilio locale differently.
_DJANGO_LOCALES = {"zh-hans": "zh-CN", "zh-hant": "zh-HK", "no": "nb", "nn": "nb"}

_PUBLIC_FIELDS = (
    "sid",
    "service_sid",
    "status",
    "valid",
    "channel",
    "send_code_attempts",
    "date_created",
    "date_updated",
)


def twilio_locale(language: str) -> str:
    """The Verify ``Locale`` for a Django language code, or ``""`` when Twilio
    has no such translation (then Twilio picks by the number's country)."""
    code = (language or "").strip().replace("_", "-").lower()
    if not code:
        return ""
    if code in _DJANGO_LOCALES:
        return _DJANGO_LOCALES[code]
    base, _, region = code.partition("-")
    for candidate in (f"{base}-{region.upper()}" if region else "", base):
        if candidate in SUPPORTED_LOCALES:
            return candidate
    return ""


class TwilioVerifyProvider(TwilioBase):
    """Twilio Verify v2 (mode d: Twilio makes, sends and checks the code).

    :param account_sid: ``AC…`` (the Basic-auth user with an auth token).
    :param auth_token: or ``api_key_sid`` + ``api_key_secret``.
    :param service_sid: the Verify Service, ``VA…``. Its ``CodeLength`` must
        equal ``SMS2FA["CODE_LENGTH"]``.
    :param send_locale: send the challenge's language as ``Locale`` (when
        Verify has it); ``False`` leaves the choice to Twilio, which picks by
        the number's country code.
    """

    provider_name = "Twilio Verify"
    default_base_url = "https://verify.twilio.com"
    capabilities = Capabilities(verifies_code=True, channels=frozenset({SMS, CALL, WHATSAPP}))

    def __init__(
        self,
        *,
        account_sid: str,
        service_sid: str,
        auth_token: str = "",
        api_key_sid: str = "",
        api_key_secret: str = "",
        send_locale: bool = True,
        alias: str = "default",
        **options: Any,
    ) -> None:
        super().__init__(
            account_sid=account_sid,
            auth_token=auth_token,
            api_key_sid=api_key_sid,
            api_key_secret=api_key_secret,
            alias=alias,
            **options,
        )
        if not isinstance(send_locale, bool):
            raise self._config_error("send_locale must be True or False")
        self.send_locale = send_locale
        if not isinstance(service_sid, str) or not SERVICE_SID.fullmatch(service_sid.strip()):
            raise self._config_error("service_sid must be a Verify Service SID (VA and 32 hex)")
        self.service_sid = service_sid.strip()
        self._service_path = f"/v2/Services/{self.service_sid}"

    # ------------------------------------------------------------- sending

    def _send(self, sms: OutgoingSms) -> SendResult:
        self.require_e164(sms.to)
        channel = sms.channel or SMS
        if channel not in self.capabilities.channels:
            raise ProviderRejected(
                provider=self.alias,
                provider_code="unsupported_channel",
                provider_text=f"Twilio Verify has no channel {channel!r}",
            )
        form = {"To": sms.to, "Channel": channel}
        locale = twilio_locale(sms.language) if self.send_locale else ""
        if locale:
            form["Locale"] = locale
        answer = self.call(
            "POST", f"{self._service_path}/Verifications", data=form, headers=self._headers
        )
        if not 200 <= answer.status < 300:
            raise self._send_error(answer)
        data = self._json_object(answer, "Verification")
        sid = str(data.get("sid") or "").strip()
        if not VERIFICATION_SID.fullmatch(sid):
            raise self.malformed(answer, "no Verification sid")
        raw_status = str(data.get("status") or "")
        return SendResult(
            message_id=sid,
            # "pending": Twilio has sent (or is sending) the code.
            status=SENT,
            provider_status=raw_status[:64],
            raw={k: data[k] for k in _PUBLIC_FIELDS if k in data},
        )

    def _send_error(self, answer: HttpAnswer) -> ProviderRejected | ProviderUnavailable:
        error = read_error(answer)
        text = self.redact(error.text or summarize_body(answer.text))
        if error.code == MAX_SEND_ATTEMPTS:
            # Twilio's own per-number limit (HTTP 429, but not a throttle of
            # us): told to the user as a rate limit; a fallback would only
            # let an attacker go around it.
            return ProviderRejected(
                provider=self.alias,
                provider_code=str(error.code),
                provider_text=text,
                http_status=answer.status,
                provider_limit="send",
                retry_after=answer.retry_after or SEND_LIMIT_RETRY_AFTER,
            )
        if error.code in (NOT_FOUND, CHANNEL_DISABLED):
            # The Service SID is wrong, or the channel is off on the Service.
            return self.rejected(answer, str(error.code), text, failover=True)
        if error.code in (INVALID_PARAMETER, LANDLINE):
            return self.rejected(answer, str(error.code), text, failover=False)
        return self.twilio_error(answer)

    # ------------------------------------------------------------- checking

    def check_code(self, *, phone: str, code: str, message_id: str = "") -> bool:
        """Ask Twilio whether ``code`` is right.

        :param message_id: the Verification SID (``VE…``) this challenge's SMS
            started; when given, the check is bound to it (``VerificationSid``)
            so that a code of another verification cannot pass.
        :returns: ``True`` only for ``"status": "approved"``; ``False`` for
            any other status, for 20404 (expired, approved already, or out of
            attempts: deleted) and 60200 (a code Twilio will not compare).
        :raises ProviderRejected: 60202 (``provider_limit="check"``),
            credentials refused (``auth``), other refusals.
        :raises ProviderUnavailable: 429, 5xx, an answer we cannot read.
        """
        message_id = str(message_id or "").strip()
        form = {"Code": code}
        if VERIFICATION_SID.fullmatch(message_id):
            form["VerificationSid"] = message_id
        else:
            if message_id:
                logger.warning(
                    "sms2fa: Twilio Verify (%s): %r is not a Verification SID; checked by phone",
                    self.alias,
                    message_id[:40],
                )
            form["To"] = phone
        answer = self.call(
            "POST", f"{self._service_path}/VerificationCheck", data=form, headers=self._headers
        )
        if not 200 <= answer.status < 300:
            # Classified on Twilio's own numeric code; the text kept for the
            # audit has the submitted code taken out (an echo of our form).
            error = read_error(answer)
            text = _without_code(error.text or summarize_body(answer.text), code)
            # Twilio's own 20404 only: a 404 page without a Twilio code (a
            # proxy, a wrong base_url) is a fault to see, not a wrong guess.
            if error.code in (NOT_FOUND, INVALID_PARAMETER):
                logger.info(
                    "sms2fa: Twilio Verify (%s) answered %s to a check; counted as a wrong code",
                    self.alias,
                    error.code or answer.status,
                )
                return False
            if error.code == MAX_CHECK_ATTEMPTS:
                raise ProviderRejected(
                    provider=self.alias,
                    provider_code=str(error.code),
                    provider_text=self.redact(text),
                    http_status=answer.status,
                    provider_limit="check",
                )
            raise self.twilio_error(answer, text=text)
        data = answer.json()
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            scrubbed = HttpAnswer(answer.status, answer.headers, _without_code(answer.text, code))
            raise self.malformed(scrubbed, "no status in the VerificationCheck")
        if data["status"] != "approved":
            return False
        checked = str(data.get("sid") or "")
        if "VerificationSid" in form and checked and checked != message_id:
            logger.warning(
                "sms2fa: Twilio Verify (%s) approved another verification; refused", self.alias
            )
            return False
        return True

    # ------------------------------------------------------------- service

    def service_code_length(self) -> int | None:
        """The Verify Service's ``code_length`` (``GET /v2/Services/{VA}``), for
        a deploy-time check that it equals ``CODE_LENGTH``.

        :raises ProviderError: Twilio could not answer.
        """
        answer = self.call("GET", self._service_path, headers=self._headers)
        if not 200 <= answer.status < 300:
            raise self.twilio_error(answer)
        data = self._json_object(answer, "Service")
        return reports.as_int(data.get("code_length"))


def _without_code(text: str, code: str) -> str:
    """``text`` with the submitted code taken out, in case Twilio echoes our
    parameters. ``BaseProvider.send`` does this for sends; a check does not
    pass through it."""
    # In any spelling an echo may use (spaced, dashed, escaped), as send() does.
    return blank_known_codes(text, [code]) if code else text
