"""The shared HTTP base for real SMS providers.

What every provider client gets from here:

* one pooled ``requests.Session`` per configured provider (providers are built
  once per alias), with keep-alive, safe to share between threads;
* connect and read timeouts (``connect_timeout``, ``read_timeout`` options);
* **no blind re-send**: a request is retried only when it provably never
  reached the provider (connection refused, DNS failure, connect timeout —
  urllib3's *connect* retries). A read timeout, a dropped connection after
  sending, a 5xx, anything after the bytes left: reported, never repeated. No
  SMS API here is idempotent, so a repeat can mean two codes and two charges;
* errors split into :class:`ProviderRejected` (permanent: 4xx, bad number, bad
  credentials) and :class:`ProviderUnavailable` (transient: timeouts, 5xx, 429
  with ``retry_after``), each carrying the provider's own code and text;
* answers that are not what was promised — HTML error pages, non-JSON, empty
  or oversized bodies — become provider errors, never crashes;
* secrets (tokens in URL paths, keys in bodies, passwords) redacted from every
  error text and from urllib3's debug log lines, which print request paths;
* TLS verification always on; ``ca_bundle`` replaces the trust store for
  self-signed deployments (AxelNAC); plain ``http://`` only to loopback, for
  tests; link-local addresses (cloud metadata at 169.254.169.254) refused.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..exceptions import ProviderRejected, ProviderUnavailable, Sms2faConfigurationError
from .base import BaseProvider

logger = logging.getLogger("django_sms2fa.providers")

REDACTED = "[redacted]"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
MAX_RESPONSE_BYTES = 256 * 1024
# Statuses that mean the provider did not process the request at all.
_NOT_PROCESSED = {429, 502, 503}


# ----------------------------------------------------------------- redaction


class _SecretRegistry:
    """Every secret any provider was configured with, for log redaction."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        with self._lock:
            # Very short values would redact half of every log line; a real
            # credential is never that short.
            self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def discard(self, *secrets: str) -> None:
        with self._lock:
            self._secrets.difference_update(secrets)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


secret_registry = _SecretRegistry()


_QUERY = re.compile(r"\?[^\s\"']*")
_DIGIT_RUN = re.compile(r"\d{4,}")


def scrub_transport_text(text: str) -> str:
    """Drop what request lines and transport errors say beyond host and path shape.

    Query strings go whole, and every run of four or more digits (phone
    numbers, codes, ids in paths such as telefon-ip's) is masked.
    """
    return _DIGIT_RUN.sub("[digits]", _QUERY.sub("?[query]", text))


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with every registered secret redacted.

    On the HTTP libraries' own loggers it also scrubs query strings and digit
    runs: their request lines carry phone numbers and codes in URLs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        redacted = secret_registry.redact(message)
        if record.name.startswith(("urllib3", "requests")):
            redacted = scrub_transport_text(redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_redacting_filter = RedactingFilter()
# urllib3 logs request lines ("GET /api/v1/authcalls/<token>/... HTTP/1.1") at
# DEBUG. A filter on a logger only sees records created on that very logger,
# so it is installed on each one that prints URLs.
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
    logging.getLogger(_name).addFilter(_redacting_filter)


# ----------------------------------------------------------------- answers


@dataclass
class HttpAnswer:
    """A provider's HTTP answer: status, headers, and the body as text."""

    status: int
    headers: dict[str, str] = field(repr=False)
    text: str = field(repr=False)

    def json(self) -> Any:
        """The body as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def retry_after(self) -> int | None:
        value = self.headers.get("retry-after", "")
        return int(value) if value.strip().isdigit() else None


def check_base_url(url: str, *, alias: str) -> str:
    """Validate a configured base URL (shared/security.md item 32)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    loopback = host == "localhost" or (ip is not None and ip.is_loopback)
    problem = ""
    if parts.scheme not in ("https", "http") or not host:
        problem = "must be an absolute https:// URL"
    elif parts.scheme == "http" and not loopback:
        problem = "must use https:// (plain http is only allowed to loopback, for tests)"
    elif ip is not None and (ip.is_link_local or ip.is_multicast or ip.is_unspecified):
        problem = "points at a link-local, multicast or unspecified address"
    elif parts.username or parts.password:
        problem = "must not hold credentials; use the provider's options"
    if problem:
        raise Sms2faConfigurationError(
            f"SMS provider {alias!r}: base_url {problem}.", check_id="sms2fa.E002"
        )
    return url.rstrip("/")


class HttpProvider(BaseProvider):
    """Base for providers spoken to over HTTP(S).

    Subclasses set ``default_base_url``, call :meth:`add_secrets` with every
    credential they hold, and talk to the API through :meth:`call`.
    """

    default_base_url: str = ""

    def __init__(
        self,
        *,
        alias: str = "default",
        base_url: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        ca_bundle: str | None = None,
        connect_retries: int = 2,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        self.base_url = check_base_url(base_url or self.default_base_url, alias=alias)
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_response_bytes = int(max_response_bytes)
        # TLS verification is never switched off: a self-signed deployment
        # names its CA bundle instead.
        self.verify: bool | str = ca_bundle or True
        self._secrets: list[str] = []
        self.session = self._make_session(int(connect_retries))

    def _make_session(self, connect_retries: int) -> requests.Session:
        session = requests.Session()
        # connect= retries only failures before the request was sent;
        # read=0/status=0/other=0 never repeat a request that went out.
        retry = Retry(
            total=connect_retries,
            connect=connect_retries,
            read=0,
            status=0,
            other=0,
            redirect=0,
            allowed_methods=None,
            backoff_factor=0.2,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=10)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = "django-sms2fa"
        return session

    def add_secrets(self, *secrets: str | None) -> None:
        """Register credentials so no error text or log line can show them."""
        values = [s for s in secrets if s]
        self._secrets.extend(values)
        secret_registry.add(*values)

    def forget_secrets(self, *secrets: str | None) -> None:
        """Drop credentials that are dead for good (a rotated session token), so
        the process-wide registry does not grow without bound."""
        values = [s for s in secrets if s]
        self._secrets = [s for s in self._secrets if s not in values]
        secret_registry.discard(*values)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return secret_registry.redact(text)

    # ------------------------------------------------------------- calling

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: Any = None,
    ) -> HttpAnswer:
        """Send one request; return the answer, whatever its status.

        :raises ProviderUnavailable: the provider could not be reached
            (``may_have_sent=False``) or stopped answering after the request
            went out (``may_have_sent=True``), or the body was too large.
        """
        url = self.base_url + path
        try:
            response = self.session.request(
                method,
                url,
                json=json_body,
                data=data,
                params=params,
                headers=headers,
                auth=auth,
                timeout=self.timeout,
                verify=self.verify,
                allow_redirects=False,
                stream=True,
            )
        except (requests.ConnectTimeout, requests.exceptions.SSLError) as err:
            raise self._unavailable("connect_failed", err, may_have_sent=False) from None
        except requests.ReadTimeout as err:
            raise self._unavailable("timeout", err, may_have_sent=True) from None
        except requests.ConnectionError as err:
            code, sent = _classify_connection_error(err)
            raise self._unavailable(code, err, may_have_sent=sent) from None
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError):
            # Our own request could not be built (a credential with a line
            # break or non-Latin-1 text in a header): nothing left this process.
            raise ProviderRejected(
                provider=self.alias,
                provider_code="bad_request_setup",
                provider_text="the request could not be built; check the provider's options",
                failover=True,
            ) from None
        except requests.RequestException as err:
            raise self._unavailable("request_error", err, may_have_sent=True) from None
        try:
            body = self._read_body(response)
        finally:
            response.close()
        return HttpAnswer(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            text=body,
        )

    def _read_body(self, response: requests.Response) -> str:
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(chunk_size=16384):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise ProviderUnavailable(
                        provider=self.alias,
                        provider_code="oversized_response",
                        provider_text=f"answer larger than {self.max_response_bytes} bytes",
                        http_status=response.status_code,
                        may_have_sent=True,
                    )
                chunks.append(chunk)
        except requests.RequestException as err:
            raise self._unavailable("read_error", err, may_have_sent=True) from None
        return b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")

    def _unavailable(
        self, code: str, err: Exception, *, may_have_sent: bool
    ) -> ProviderUnavailable:
        # `from None` above drops the requests exception, whose text holds the
        # full URL; what it said is kept here, redacted.
        return ProviderUnavailable(
            provider=self.alias,
            provider_code=code,
            # Transport errors quote the URL ("... with url: /path?code=1234"):
            # secrets first, then the URL's digits and query.
            provider_text=scrub_transport_text(self.redact(f"{type(err).__name__}: {err}"))[:500],
            may_have_sent=may_have_sent,
        )

    # ------------------------------------------------------------- errors

    def http_error(
        self, answer: HttpAnswer, *, provider_code: str = "", provider_text: str = ""
    ) -> ProviderRejected | ProviderUnavailable:
        """The error for a non-2xx answer: 429 and 5xx transient, 4xx permanent."""
        # Redact before shortening: a secret cut in half would slip past.
        text = summarize_body(self.redact(provider_text or answer.text))
        code = str(provider_code or answer.status)
        if answer.status == 429 or answer.status >= 500:
            return ProviderUnavailable(
                provider=self.alias,
                provider_code=code,
                provider_text=text,
                http_status=answer.status,
                may_have_sent=answer.status not in _NOT_PROCESSED,
                retry_after=answer.retry_after,
            )
        return ProviderRejected(
            provider=self.alias,
            provider_code=code,
            provider_text=text,
            http_status=answer.status,
            # Credentials refused: our configuration, not the message.
            failover=answer.status in (401, 403) or code == "auth",
        )

    def rejected(
        self, answer: HttpAnswer | None, code: str, text: str, *, failover: bool | None = None
    ) -> ProviderRejected:
        """A permanent refusal; ``failover`` defaults to true for ``code == "auth"``."""
        return ProviderRejected(
            provider=self.alias,
            provider_code=code,
            provider_text=self.redact(text),
            http_status=answer.status if answer else None,
            failover=(code == "auth") if failover is None else failover,
        )

    def malformed(self, answer: HttpAnswer, what: str) -> ProviderUnavailable:
        """A 2xx answer we cannot read: the SMS may or may not have gone."""
        return ProviderUnavailable(
            provider=self.alias,
            provider_code="malformed_answer",
            provider_text=f"{what}: {summarize_body(self.redact(answer.text))}",
            http_status=answer.status,
            may_have_sent=True,
        )


def summarize_body(text: str, limit: int = 300) -> str:
    """A short, single-line view of a body for the audit (HTML pages shortened)."""
    text = " ".join(text.split())
    if not text:
        return "(empty body)"
    if text.lstrip().startswith("<"):
        return "(HTML page) " + text[:limit]
    return text[:limit]


def _classify_connection_error(err: requests.ConnectionError) -> tuple[str, bool]:
    """Name a ConnectionError and say whether the request may have gone out.

    With a urllib3 ``Retry`` mounted, requests reports most transport failures
    as ConnectionError(MaxRetryError(reason)). Refused connections and DNS
    failures (NewConnectionError, NameResolutionError) happen before any byte
    is sent; a read timeout or "connection aborted" happens after.
    """
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError

    reason = err.args[0] if err.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(reason, NewConnectionError):
        return "connect_failed", False
    if isinstance(reason, ReadTimeoutError):
        return "timeout", True
    return "connection_error", True
