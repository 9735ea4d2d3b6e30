"""Amazon SNS: SMS through ``Publish`` to a phone number (boto3, the ``aws`` extra).

Mode (a): SNS delivers the text we give it; we make and check the code.

Sending (docs/providers/sns.md):

* ``Publish`` with ``PhoneNumber`` (E.164), ``Message`` and the
  ``MessageAttributes`` SNS documents for SMS: ``AWS.SNS.SMS.SMSType`` is always
  ``Transactional`` (a code is a transaction; ``Promotional`` is the account
  default and is cheaper but best-effort), ``AWS.SNS.SMS.SenderID``,
  ``AWS.MM.SMS.OriginationNumber`` and ``AWS.SNS.SMS.MaxPrice`` when configured.
  The answer's ``MessageId`` is the message id.
* One botocore client per provider instance (clients are thread-safe and pool
  their connections), with connect and read timeouts and **no retries**:
  ``Config(retries={"total_max_attempts": 1, "mode": "standard"})``. botocore's
  default retries 5xx answers, throttling and read timeouts; a ``Publish`` is
  not idempotent, so a retry after the request left could text the code twice
  and pay twice.

Delivery reports: SNS itself writes SMS delivery status only to CloudWatch
Logs. What reaches a site over HTTP is an SNS topic's HTTPS subscription: AWS
End User Messaging SMS publishes its SMS events to EventBridge (and to
configuration-set event destinations); an EventBridge rule (or the event
destination) publishes them to an SNS topic, and the topic POSTs each one to our
webhook in the SNS HTTP envelope. :meth:`verify_webhook` checks the envelope's
signature exactly as AWS documents it; :meth:`parse_delivery_report` reads the
event inside.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..exceptions import (
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from ..types import (
    DELIVERED,
    FAILED,
    QUEUED,
    SENT,
    SMS,
    UNKNOWN,
    Capabilities,
    DeliveryReport,
    OutgoingSms,
    SendResult,
)
from . import reports
from .base import BaseProvider, InvalidDeliveryReport, WebhookCall
from .http import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    REDACTED,
    check_base_url,
    scrub_transport_text,
    secret_registry,
)

logger = logging.getLogger("django_sms2fa.providers")

INSTALL_HINT = "pip install django-sms2fa[aws]"

# --- sending -----------------------------------------------------------------

# "Phone numbers that follow this format can have a maximum of 15 digits along
# with the prefix of a plus sign (+) and the country code."
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# "The total size quota for a single SMS publish action is 1,600 bytes."
MAX_MESSAGE_BYTES = 1600
# AWS.SNS.SMS.SenderID: "3-11 alphanumeric or hyphen (-) characters, including
# at least one letter and no spaces".
_SENDER_ID = re.compile(r"(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9-]{3,11}")
# AWS.MM.SMS.OriginationNumber: "a custom string of 5-14 numbers, which can
# include an optional leading plus sign (+)".
_ORIGINATION = re.compile(r"\+?[0-9]{5,14}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
MAX_TIMEOUT = 300.0

# Error codes of the SNS API (botocore's sns service model) and the codes every
# AWS query API may answer (common errors), sorted by what they mean for us.
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Throttled",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "KMSThrottling",
    }
)
_SERVER_FAULT = frozenset({"InternalError", "InternalFailure", "InternalServerError"})
_NOT_PROCESSED = frozenset({"ServiceUnavailable", "ServiceUnavailableException", "Unavailable"})
_CREDENTIALS = frozenset(
    {
        "AuthorizationError",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidSecurity",
        "OptInRequired",
        "RequestExpired",
        "KMSAccessDenied",
        "KMSDisabled",
        "KMSInvalidState",
        "KMSNotFound",
        "KMSOptInRequired",
    }
)
_BAD_MESSAGE = frozenset(
    {
        "InvalidParameter",
        "InvalidParameterValue",
        "ParameterValueInvalid",
        "ValidationException",
        "ValidationError",
        "OptedOut",
    }
)

# --- webhooks ----------------------------------------------------------------

#: A notification older than this is refused ("stale"). SNS's default HTTP(S)
#: delivery policy retries for well under a minute; the Timestamp is when the
#: message was published and stays the same on every retry.
MAX_MESSAGE_AGE = timedelta(hours=1)
#: How far a Timestamp may be ahead of our clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: Certificates kept per provider instance (one per region and key rotation).
MAX_CACHED_CERTIFICATES = 16
MAX_CERTIFICATE_BYTES = 16 * 1024
CERTIFICATE_TIMEOUT = (3.0, 5.0)
CONFIRM_TIMEOUT = (3.0, 5.0)

# The keys of the string SNS signs, in order ("Verifying the signatures of
# Amazon SNS messages"). Subject only when the notification has one.
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_TOPIC_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):sns:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})"
    r":[0-9]{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?"
)
_CERT_PATH = re.compile(r"/[A-Za-z0-9._-]{1,128}\.pem")

# AWS End User Messaging SMS ``messageStatus`` values (event types
# ``TEXT_<status>``). "SUCCESSFUL": accepted by the recipient's carrier;
# "DELIVERED": delivered to the handset (some countries only send one of them).
_EVENT_STATUSES: dict[str, str] = {
    "PENDING": QUEUED,
    "QUEUED": QUEUED,
    "SUCCESSFUL": SENT,
    "DELIVERED": DELIVERED,
    "UNKNOWN": UNKNOWN,
}
_EVENT_FAILURES = frozenset(
    {
        "BLOCKED",
        "CARRIER_BLOCKED",
        "CARRIER_UNREACHABLE",
        "UNREACHABLE",
        "INVALID",
        "INVALID_MESSAGE",
        "SPAM",
        "TTL_EXPIRED",
        "OPTED_OUT",
        "MAX_PRICE_EXCEEDED",
        "PROTECT_BLOCKED",
        "NO_QUOTA_LEFT_ON_ACCOUNT",
        "NO_ORIGINATION_IDENTITY_AVAILABLE",
        "DESTINATION_COUNTRY_NOT_SUPPORTED",
        "ACCOUNT_SUSPENDED",
    }
)


class _BotocoreLogFilter(logging.Filter):
    """botocore's DEBUG lines print request bodies (the SMS text, so the code,
    and the number) and headers (``X-Amz-Security-Token``). Registered secrets
    are blanked, then digit runs and query strings, as on urllib3's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        cleaned = scrub_transport_text(secret_registry.redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_log_filter = _BotocoreLogFilter()
_filtered_loggers: set[str] = set()
_filter_lock = threading.Lock()


def _filter_sdk_loggers() -> None:
    """Put the filter on every boto3/botocore logger that exists.

    A filter on a logger sees only records created on that very logger, and
    botocore logs from a dozen modules; they exist once the client is built.
    """
    with _filter_lock:
        names = [
            name
            for name in list(logging.root.manager.loggerDict)
            if name.split(".")[0] in ("botocore", "boto3", "s3transfer")
        ]
        for name in ("botocore", "boto3", *names):
            if name not in _filtered_loggers:
                logging.getLogger(name).addFilter(_log_filter)
                _filtered_loggers.add(name)


class AmazonSNSProvider(BaseProvider):
    """SMS through Amazon SNS ``Publish`` (boto3).

    :param region_name: the AWS region to send from (SMS settings, spend
        limits and origination identities are per region). Default: boto3's
        (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the config file).
    :param access_key_id: with ``secret_access_key`` (and ``session_token``
        for temporary credentials); without them boto3's default credential
        chain (environment, config files, container or instance role).
    :param sender_id: ``AWS.SNS.SMS.SenderID``, 3-11 letters, digits or ``-``.
    :param origination_number: ``AWS.MM.SMS.OriginationNumber``, a number of
        the account's.
    :param max_price: ``AWS.SNS.SMS.MaxPrice``, in USD per message.
    :param endpoint_url: another endpoint (tests, VPC endpoints); https only,
        plain http only to loopback.
    :param topic_arn: the topic whose notifications the webhook accepts;
        without it, any topic's (see docs/providers/sns.md).
    """

    provider_name = "Amazon SNS"
    capabilities = Capabilities(delivers_text=True, channels=frozenset({SMS}))

    def __init__(
        self,
        *,
        alias: str = "default",
        region_name: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        sender_id: str = "",
        origination_number: str = "",
        max_price: str | float | Decimal | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        topic_arn: str = "",
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        try:
            # Imported here: boto3 is an optional extra, and only sites that
            # configure this provider need it (cryptography verifies webhooks).
            import boto3
            from botocore.config import Config
            from cryptography import x509  # noqa: F401
        except ImportError as err:
            raise self._config_error(f"needs boto3 and cryptography ({INSTALL_HINT})") from err
        for name, value in (
            ("access_key_id", access_key_id),
            ("secret_access_key", secret_access_key),
            ("session_token", session_token),
        ):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise self._config_error(f"the {name} option must be a non-empty string")
        if bool(access_key_id) != bool(secret_access_key):
            raise self._config_error("access_key_id and secret_access_key go together")
        if session_token and not access_key_id:
            raise self._config_error("session_token needs access_key_id and secret_access_key")
        # Registered before anything can fail or log: from here on no error
        # text and no log line can show them.
        self._secrets = [s for s in (secret_access_key, session_token) if s]
        secret_registry.add(*self._secrets)

        self.sender_id = _check_pattern(sender_id, _SENDER_ID, "sender_id", alias)
        self.origination_number = _check_pattern(
            origination_number, _ORIGINATION, "origination_number", alias
        )
        self.max_price = _check_price(max_price, alias)
        self.timeout = (
            _check_timeout(connect_timeout, "connect_timeout", alias),
            _check_timeout(read_timeout, "read_timeout", alias),
        )
        self.endpoint_url = check_base_url(endpoint_url, alias=alias) if endpoint_url else None
        if topic_arn and (not isinstance(topic_arn, str) or not _TOPIC_ARN.fullmatch(topic_arn)):
            raise self._config_error("topic_arn must be an SNS topic ARN (arn:aws:sns:...)")
        self.topic_arn = topic_arn or ""

        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                aws_session_token=session_token,
                region_name=region_name,
            )
            region = session.region_name
        except Exception as err:  # AWS_PROFILE naming no profile, a broken ~/.aws/config
            raise self._config_error(
                f"boto3 could not read its configuration ({type(err).__name__})"
            ) from None
        if not region or not isinstance(region, str) or not _REGION.fullmatch(region):
            raise self._config_error(
                "needs a region_name option (or AWS_REGION in the environment), such as 'eu-west-1'"
            )
        self.region_name = region
        config = Config(
            # One attempt, whatever happens: botocore's default (legacy, 5
            # attempts) and "standard" (3) both repeat a Publish after a 500,
            # a throttle or a read timeout.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self.timeout[0],
            read_timeout=self.timeout[1],
            max_pool_connections=10,
            user_agent_extra="django-sms2fa",
        )
        self.client = session.client("sns", config=config, endpoint_url=self.endpoint_url)
        # An error answer botocore cannot parse (a proxy's HTML 503) raises
        # ResponseParserError without the HTTP status; it is noted here first.
        self._answer = threading.local()
        self.client.meta.events.register("before-parse.sns.Publish", self._note_status)
        _filter_sdk_loggers()
        self._certificates: OrderedDict[str, Any] = OrderedDict()
        self._certificates_lock = threading.Lock()

    def _config_error(self, problem: str) -> Sms2faConfigurationError:
        # Names options, never their values.
        return Sms2faConfigurationError(
            f"AmazonSNSProvider (provider {self.alias!r}): {problem}.", check_id="sms2fa.E002"
        )

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return secret_registry.redact(text)

    # ------------------------------------------------------------- sending

    def _send(self, sms: OutgoingSms) -> SendResult:
        if sms.channel != SMS:
            raise ProviderRejected(
                provider=self.alias,
                provider_code="unsupported_channel",
                provider_text="Amazon SNS sends SMS only",
                failover=True,
            )
        if not _E164.fullmatch(sms.to or ""):
            raise ProviderRejected(
                provider=self.alias,
                provider_code="unsupported_number",
                provider_text="Amazon SNS takes E.164 numbers of at most 15 digits",
            )
        if not sms.text or len(sms.text.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise ProviderRejected(
                provider=self.alias,
                provider_code="invalid_text",
                provider_text=f"the text must be 1 to {MAX_MESSAGE_BYTES} bytes",
            )
        params = {
            "PhoneNumber": sms.to,
            "Message": sms.text,
            "MessageAttributes": self._attributes(),
        }
        self._answer.status = self._answer.retry_after = None
        try:
            answer = self.client.publish(**params)
        except Exception as err:  # every SDK failure becomes a ProviderError
            raise self._error(err) from None
        message_id = answer.get("MessageId") if isinstance(answer, dict) else None
        if not isinstance(message_id, str) or not message_id.strip():
            raise ProviderUnavailable(
                provider=self.alias,
                provider_code="malformed_answer",
                provider_text="the Publish answer has no MessageId",
                may_have_sent=True,
            )
        return SendResult(
            message_id=message_id.strip(),
            # Publish answers once SNS has accepted the message; the SMS
            # leaves afterwards (events: TEXT_PENDING/QUEUED, then SUCCESSFUL).
            status=QUEUED,
            provider_status="accepted",
            raw={"MessageId": message_id.strip()},
        )

    def _note_status(self, response_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        status = (response_dict or {}).get("status_code")
        self._answer.status = status if isinstance(status, int) else None
        headers = (response_dict or {}).get("headers")
        self._answer.retry_after = _retry_after(headers)

    def _attributes(self) -> dict[str, dict[str, str]]:
        attributes = {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
        }
        if self.sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {
                "DataType": "String",
                "StringValue": self.sender_id,
            }
        if self.origination_number:
            attributes["AWS.MM.SMS.OriginationNumber"] = {
                "DataType": "String",
                "StringValue": self.origination_number,
            }
        if self.max_price:
            attributes["AWS.SNS.SMS.MaxPrice"] = {
                "DataType": "Number",
                "StringValue": self.max_price,
            }
        return attributes

    def _error(self, err: Exception) -> ProviderError:
        """The ProviderError for whatever ``publish`` raised."""
        from botocore import exceptions as bex
        from botocore.parsers import ResponseParserError

        if isinstance(err, bex.ClientError):
            return self._client_error(err)
        text = self._text(f"{type(err).__name__}: {err}")
        if isinstance(err, bex.ReadTimeoutError):
            return self._unavailable("timeout", text, may_have_sent=True)
        if isinstance(err, bex.ConnectTimeoutError | bex.SSLError | bex.ProxyConnectionError):
            # Before the request went out: the connection was never made.
            return self._unavailable("connect_failed", text, may_have_sent=False)
        if isinstance(err, bex.ConnectionError):  # EndpointConnectionError and kin
            return self._unavailable("connect_failed", text, may_have_sent=False)
        if isinstance(err, bex.HTTPClientError):  # ConnectionClosedError and kin
            return self._unavailable("connection_error", text, may_have_sent=True)
        if isinstance(
            err,
            bex.NoCredentialsError
            | bex.PartialCredentialsError
            | bex.CredentialRetrievalError
            | bex.NoRegionError,
        ):
            # Refused before signing: nothing left this process, and another
            # provider may well take the SMS.
            return ProviderRejected(
                provider=self.alias,
                provider_code="auth",
                provider_text=text,
                failover=True,
            )
        if isinstance(err, bex.ParamValidationError):
            return ProviderRejected(
                provider=self.alias,
                provider_code="bad_request_setup",
                provider_text="the request could not be built; check the provider's options",
                failover=True,
            )
        if isinstance(err, ResponseParserError):
            return self._unreadable(getattr(self._answer, "status", None))
        # Anything else (a botocore error we did not foresee, a bug in a
        # plugin): we cannot say whether the request left, so it is never
        # repeated and the flows do not fail over.
        return self._unavailable("sdk_error", self._text(type(err).__name__), may_have_sent=True)

    def _unreadable(self, status: int | None) -> ProviderError:
        """An answer botocore could not parse (not SNS's XML: a proxy's page).

        Its body is not quoted: it may echo the request. The status decides,
        as for any HTTP provider; unknown or 2xx means it may have gone.
        """
        text = (
            f"HTTP {status}: the answer is not Amazon SNS's XML"
            if status
            else ("the answer is not Amazon SNS's XML")
        )
        if status in (429, 502, 503):
            return self._unavailable(
                str(status),
                text,
                may_have_sent=False,
                status=status,
                retry_after=getattr(self._answer, "retry_after", None),
            )
        if status is not None and 400 <= status < 500:
            return ProviderRejected(
                provider=self.alias,
                provider_code=str(status),
                provider_text=text,
                http_status=status,
                failover=status in (401, 403),
            )
        return self._unavailable("malformed_answer", text, may_have_sent=True, status=status)

    def _client_error(self, err: Any) -> ProviderError:
        response = err.response if isinstance(getattr(err, "response", None), dict) else {}
        error = response.get("Error") if isinstance(response.get("Error"), dict) else {}
        meta = response.get("ResponseMetadata")
        status = meta.get("HTTPStatusCode") if isinstance(meta, dict) else None
        status = status if isinstance(status, int) and not isinstance(status, bool) else None
        code = str(error.get("Code") or status or "error")[:64]
        text = self._text(f"{code}: {error.get('Message') or ''}".strip(": "))
        if code in _THROTTLED or status == 429:
            # SNS sends no Retry-After; a proxy in front of an endpoint_url may.
            headers = meta.get("HTTPHeaders") if isinstance(meta, dict) else None
            return self._unavailable(
                code, text, may_have_sent=False, status=status, retry_after=_retry_after(headers)
            )
        if code in _NOT_PROCESSED or status in (502, 503):
            return self._unavailable(code, text, may_have_sent=False, status=status)
        if code in _SERVER_FAULT or (status is not None and status >= 500) or status is None:
            return self._unavailable(code, text, may_have_sent=True, status=status)
        # Our credentials or permissions: another provider may send it (failover).
        # _BAD_MESSAGE and every other 4xx: a refusal of this message.
        return ProviderRejected(
            provider=self.alias,
            provider_code=code,
            provider_text=text,
            http_status=status,
            failover=code in _CREDENTIALS or status in (401, 403),
        )

    def _unavailable(
        self,
        code: str,
        text: str,
        *,
        may_have_sent: bool,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> ProviderUnavailable:
        return ProviderUnavailable(
            provider=self.alias,
            provider_code=code,
            provider_text=text,
            http_status=status,
            may_have_sent=may_have_sent,
            retry_after=retry_after,
        )

    def _text(self, text: str) -> str:
        # Secrets first, then the URL's query and digit runs (an AWS message
        # may quote the number), before shortening.
        return scrub_transport_text(self.redact(" ".join(str(text).split())))[:500]

    # ------------------------------------------------------------- webhooks

    def verify_webhook(self, call: WebhookCall) -> None:
        """Check an SNS HTTP(S) notification's signature, as AWS documents it.

        The body is the SNS JSON envelope. Refused (``bad_signature``): not
        JSON, a ``Type`` other than Notification/SubscriptionConfirmation/
        UnsubscribeConfirmation, a ``SignatureVersion`` other than ``1``
        (SHA1withRSA) or ``2`` (SHA256withRSA), a ``SigningCertURL`` that is
        not ``https://sns.<region>.amazonaws.com[.cn]/<name>.pem`` for the
        ``TopicArn``'s region, another topic than ``topic_arn`` (or no
        ``topic_arn`` option at all), or a signature
        that does not verify with that certificate. ``stale``: a ``Timestamp``
        more than an hour old (or more than five minutes ahead).
        """
        envelope = _envelope(call.body)
        header_type = call.headers.get("x-amz-sns-message-type")
        if header_type is not None and header_type != envelope.get("Type"):
            raise InvalidDeliveryReport("message type header mismatch", code="bad_signature")
        self._verify(envelope, now=call.received_at)

    def _verify(self, envelope: dict[str, Any], *, now: datetime) -> None:
        kind = envelope.get("Type")
        if kind not in _SIGNED_KEYS:
            raise InvalidDeliveryReport("unknown SNS message type", code="bad_signature")
        version = envelope.get("SignatureVersion")
        if version not in ("1", "2"):
            raise InvalidDeliveryReport("unsupported SignatureVersion", code="bad_signature")
        topic = envelope.get("TopicArn")
        match = _TOPIC_ARN.fullmatch(topic) if isinstance(topic, str) else None
        if match is None:
            raise InvalidDeliveryReport("no valid TopicArn", code="bad_signature")
        if not self.topic_arn or topic != self.topic_arn:
            # An SNS signature proves SNS sent the message, not that it came
            # from *this site's* topic: any AWS account's topic is signed
            # alike, and its messages could be replayed here. Without a
            # topic_arn nothing is accepted.
            logger.warning(
                "sms2fa: SNS %s from topic %s refused: it is not the provider %s's "
                "topic_arn option",
                kind,
                topic,
                self.alias,
            )
            raise InvalidDeliveryReport("another topic", code="bad_signature")
        # Cheap checks first: a forged or replayed body costs no certificate fetch.
        timestamp = reports.parse_time(envelope.get("Timestamp"))
        if now.tzinfo is None:  # a site with USE_TZ = False: Django's now() is naive UTC
            now = now.replace(tzinfo=UTC)
        if timestamp is None:
            raise InvalidDeliveryReport("no valid Timestamp", code="bad_signature")
        if now - timestamp > MAX_MESSAGE_AGE or timestamp - now > MAX_CLOCK_SKEW:
            raise InvalidDeliveryReport("Timestamp outside the accepted window", code="stale")
        cert_url = envelope.get("SigningCertURL")
        if not isinstance(cert_url, str) or not _is_sns_url(
            cert_url, match["region"], match["partition"], path=_CERT_PATH
        ):
            raise InvalidDeliveryReport("SigningCertURL is not Amazon SNS's", code="bad_signature")
        try:
            signature = base64.b64decode(str(envelope.get("Signature") or ""), validate=True)
        except (binascii.Error, ValueError) as err:
            raise InvalidDeliveryReport("Signature is not base64", code="bad_signature") from err
        if not signature:
            raise InvalidDeliveryReport("no Signature", code="bad_signature")
        signed = _string_to_sign(envelope, kind)
        key = self._public_key(cert_url)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm)
        except (InvalidSignature, ValueError, TypeError) as err:
            raise InvalidDeliveryReport("signature does not verify", code="bad_signature") from err

    def _public_key(self, url: str) -> Any:
        """The RSA key of the certificate at ``url``, fetched once per URL."""
        with self._certificates_lock:
            key = self._certificates.get(url)
            if key is not None:
                self._certificates.move_to_end(url)
                return key
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa

        try:
            pem = self.fetch_certificate(url)
            certificate = x509.load_pem_x509_certificate(pem)
        except InvalidDeliveryReport:
            raise
        except Exception as err:  # unreachable host, not a PEM, ...
            logger.warning(
                "sms2fa: Amazon SNS (%s): signing certificate could not be read (%s)",
                self.alias,
                type(err).__name__,
            )
            raise InvalidDeliveryReport("no usable certificate", code="bad_signature") from None
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidDeliveryReport("certificate key is not RSA", code="bad_signature")
        with self._certificates_lock:
            self._certificates[url] = key
            while len(self._certificates) > MAX_CACHED_CERTIFICATES:
                self._certificates.popitem(last=False)
        return key

    def fetch_certificate(self, url: str) -> bytes:
        """GET the PEM certificate at ``url`` (an SNS host, already checked).

        TLS verified, no redirects, a short timeout and a size cap. Tests
        override this method (or fill the cache) so nothing leaves the machine.
        """
        import requests

        with requests.get(
            url,
            timeout=CERTIFICATE_TIMEOUT,
            allow_redirects=False,
            stream=True,
            headers={"User-Agent": "django-sms2fa"},
        ) as response:
            if response.status_code != 200:
                raise OSError(f"HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_content(4096):
                body += chunk
                if len(body) > MAX_CERTIFICATE_BYTES:
                    raise OSError("certificate too large")
        return body

    def parse_delivery_report(self, body: bytes, content_type: str) -> list[DeliveryReport]:
        """Read the SMS event inside a (verified) SNS notification.

        ``Message`` holds one of:

        * an AWS End User Messaging SMS event (``eventType`` ``TEXT_*``,
          ``messageId``, ``messageStatus``, ``isFinal``, ``eventTimestamp``), as
          a configuration-set event destination publishes it;
        * the same event inside an EventBridge envelope (``source``
          ``aws.sms-voice``, ``detail``), as an EventBridge rule with an SNS
          target publishes it;
        * an SNS SMS delivery-status log record (``notification.messageId``,
          ``status`` SUCCESS/FAILURE), as a CloudWatch Logs subscription
          forwarder would publish it.

        Voice, MMS and registration events are ignored (no report). A
        SubscriptionConfirmation is confirmed when ``topic_arn`` names its
        topic, else logged for the operator; it and UnsubscribeConfirmation
        give no report.
        """
        envelope = _envelope(body)
        kind = envelope.get("Type")
        if kind == "SubscriptionConfirmation":
            self._subscription(envelope)
            return []
        if kind == "UnsubscribeConfirmation":
            logger.info(
                "sms2fa: Amazon SNS (%s): the webhook was unsubscribed from %s",
                self.alias,
                envelope.get("TopicArn"),
            )
            return []
        if kind != "Notification":
            raise InvalidDeliveryReport("not an SNS notification")
        message = envelope.get("Message")
        if not isinstance(message, str):
            raise InvalidDeliveryReport("no Message in the notification")
        event = reports.decode_body(message.encode("utf-8"), "application/json")
        if not isinstance(event, dict):
            raise InvalidDeliveryReport("the Message is not a JSON object")
        report = _event_report(event)
        return [report] if report is not None else []

    def _subscription(self, envelope: dict[str, Any]) -> None:
        """Confirm a subscription of our own topic; never anyone else's.

        Confirming is an HTTPS GET of ``SubscribeURL``. It is done only when
        the ``topic_arn`` option names the topic and the (re-checked)
        signature holds: otherwise anyone with an AWS account could subscribe
        the webhook to a topic of theirs and post genuinely signed
        notifications to it. The URL carries a token, so it is never logged.
        """
        topic = envelope.get("TopicArn")
        if not self.topic_arn or topic != self.topic_arn:
            logger.warning(
                "sms2fa: Amazon SNS (%s): subscription request from topic %s not confirmed; "
                "set the provider's topic_arn option to that topic and request the "
                "confirmation again (docs/providers/sns.md)",
                self.alias,
                topic if isinstance(topic, str) and _TOPIC_ARN.fullmatch(topic) else "(invalid)",
            )
            return
        # parse_delivery_report may be called without verify_webhook (another
        # caller, a future view): a GET is never made for an unverified body.
        self._verify(envelope, now=datetime.now(UTC))
        match = _TOPIC_ARN.fullmatch(topic)
        url = envelope.get("SubscribeURL")
        assert match is not None  # _verify checked it
        if not isinstance(url, str) or not _is_sns_url(
            url, match["region"], match["partition"], path=re.compile(r"/?")
        ):
            raise InvalidDeliveryReport("SubscribeURL is not Amazon SNS's")
        query = parse_qs(urlsplit(url).query)
        if query.get("Action") != ["ConfirmSubscription"] or query.get("TopicArn") != [topic]:
            raise InvalidDeliveryReport("SubscribeURL is not a confirmation of this topic")
        try:
            self.confirm_subscription(url)
        except Exception as err:
            # SNS resends confirmations only on request: the operator sees why.
            logger.warning(
                "sms2fa: Amazon SNS (%s): confirming the subscription to %s failed (%s)",
                self.alias,
                topic,
                type(err).__name__,
            )
            return
        logger.info("sms2fa: Amazon SNS (%s): subscription to %s confirmed", self.alias, topic)

    def confirm_subscription(self, url: str) -> None:
        """GET ``SubscribeURL`` (checked: an SNS host of the topic's region)."""
        import requests

        response = requests.get(
            url,
            timeout=CONFIRM_TIMEOUT,
            allow_redirects=False,
            headers={"User-Agent": "django-sms2fa"},
        )
        response.close()
        if response.status_code != 200:
            raise OSError(f"HTTP {response.status_code}")


# --------------------------------------------------------------------- helpers


def _retry_after(headers: Any) -> int | None:
    """Seconds from a ``Retry-After`` header (any case), else ``None``."""
    if not hasattr(headers, "items"):
        return None
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            text = str(value).strip()
            return int(text) if text.isdigit() and len(text) <= 6 else None
    return None


def _check_pattern(value: Any, pattern: re.Pattern[str], name: str, alias: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value.strip()):
        raise Sms2faConfigurationError(
            f"AmazonSNSProvider (provider {alias!r}): the {name} option does not have the "
            f"form Amazon SNS documents.",
            check_id="sms2fa.E002",
        )
    return value.strip()


def _check_price(value: Any, alias: str) -> str:
    if value is None or value == "":
        return ""
    try:
        price = Decimal(str(value)) if not isinstance(value, bool) else Decimal("NaN")
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite() or not Decimal(0) < price <= Decimal(100):
        raise Sms2faConfigurationError(
            f"AmazonSNSProvider (provider {alias!r}): max_price must be a price in USD "
            f"above 0 (at most 100).",
            check_id="sms2fa.E002",
        )
    return format(price.normalize(), "f")


def _check_timeout(value: Any, name: str, alias: str) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 < value <= MAX_TIMEOUT:
        raise Sms2faConfigurationError(
            f"AmazonSNSProvider (provider {alias!r}): the {name} option must be a number "
            f"of seconds above 0 and at most {MAX_TIMEOUT:g}.",
            check_id="sms2fa.E002",
        )
    return float(value)


def _envelope(body: bytes) -> dict[str, Any]:
    """The SNS JSON envelope. SNS posts it as ``text/plain``: the type is ignored."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InvalidDeliveryReport("not an SNS message", code="bad_signature") from err
    if not isinstance(value, dict):
        raise InvalidDeliveryReport("not an SNS message", code="bad_signature")
    return value


def _string_to_sign(envelope: dict[str, Any], kind: str) -> bytes:
    """``Key\\nValue\\n`` for each signed key present, in the documented order."""
    parts: list[str] = []
    for key in _SIGNED_KEYS[kind]:
        if key == "Subject" and envelope.get(key) is None:
            continue  # signed only when the notification has one
        value = envelope.get(key)
        if not isinstance(value, str):
            raise InvalidDeliveryReport(f"{key} missing or not a string", code="bad_signature")
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode("utf-8")


def _is_sns_url(url: str, region: str, partition: str, *, path: re.Pattern[str]) -> bool:
    """``url`` is ``https://sns.<region>.amazonaws.com[.cn]<path>``, nothing else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    suffix = ".amazonaws.com.cn" if partition == "aws-cn" else ".amazonaws.com"
    return (
        parts.scheme == "https"
        and parts.netloc == f"sns.{region}{suffix}"  # no userinfo, no port
        and port is None
        and (parts.hostname or "") == f"sns.{region}{suffix}"
        and bool(path.fullmatch(parts.path))
        and not parts.fragment
        and (path.pattern == "/?" or not parts.query)
    )


def _event_report(event: dict[str, Any]) -> DeliveryReport | None:
    """The report in one event, or ``None`` for an event that is not about an SMS."""
    detail = event.get("detail")
    if isinstance(detail, dict) and "detail-type" in event:
        if event.get("source") != "aws.sms-voice":
            return None
        event = detail
    if isinstance(event.get("notification"), dict) and "status" in event:
        return _log_record_report(event)
    event_type = event.get("eventType")
    if not isinstance(event_type, str):
        raise InvalidDeliveryReport("not an SMS event")
    if not event_type.startswith("TEXT_"):
        return None  # voice, MMS, registration events: not ours
    message_id = reports.clean_message_id(event.get("messageId"))
    if not message_id:
        raise InvalidDeliveryReport("no message id in the event")
    raw_status = event.get("messageStatus")
    label = raw_status if isinstance(raw_status, str) else event_type.removeprefix("TEXT_")
    label = label.strip().upper()[:64]
    status = _EVENT_STATUSES.get(label, UNKNOWN)
    if label in _EVENT_FAILURES and event.get("isFinal") is not False:
        status = FAILED
    return DeliveryReport(
        message_id=message_id,
        status=status,
        provider_status=label,
        at=_millis(event.get("eventTimestamp")),
    )


def _log_record_report(record: dict[str, Any]) -> DeliveryReport:
    """An SNS SMS delivery-status log record (CloudWatch Logs format)."""
    notification = record["notification"]
    message_id = reports.clean_message_id(notification.get("messageId"))
    if not message_id:
        raise InvalidDeliveryReport("no message id in the record")
    label = str(record.get("status") or "").strip().upper()[:64]
    delivery = record.get("delivery") if isinstance(record.get("delivery"), dict) else {}
    if label == "SUCCESS":
        # "dwellTimeMsUntilDeviceAck": the handset acknowledged it.
        status = DELIVERED if "dwellTimeMsUntilDeviceAck" in delivery else SENT
    elif label == "FAILURE":
        status = FAILED
    else:
        status = UNKNOWN
    return DeliveryReport(
        message_id=message_id,
        status=status,
        provider_status=label,
        at=reports.parse_time(notification.get("timestamp")),
    )


def _millis(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
