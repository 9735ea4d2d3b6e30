"""The shared HTTP base for real SMS providers.

What every provider client gets from here:

* one pooled ``requests.Session`` per configured provider (providers are built
  once per alias), with keep-alive, safe to share between threads;
* connect and read timeouts (``connect_timeout``, ``read_timeout`` options)
  and a total deadline per call (``total_timeout``, by default their sum): the
  read timeout bounds each socket read, so without it an answer dripped byte
  by byte could hold a call for days;
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
  tests; link-local and metadata addresses (169.254.169.254) refused in every
  spelling of the address and for names resolving to them, when the provider is
  built and again on the address each new connection reaches.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import json
import logging
import re
import socket
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.retry import Retry

from ..exceptions import (
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from .base import BaseProvider
from .redaction import unfold

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
        secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        # An echo may carry a secret encoded (percent-escapes, JSON \u
        # escapes, HTML entities): then the text is kept decoded, without it,
        # before anyone shortens it and cuts an encoded secret in half.
        unfolded = unfold(text)
        if unfolded != text and any(secret in unfolded for secret in secrets):
            for secret in secrets:
                unfolded = unfolded.replace(secret, REDACTED)
            return unfolded
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


# ----------------------------------------------------------------- addresses
#
# A guard that pattern-matches a host can be walked around by spelling the
# address differently: 169.254.169.254 is also 2852039166, 0xA9FEA9FE,
# 0251.0376.0251.0376, 169.254.43518, [::ffff:169.254.169.254] or a name that
# resolves to it. So hosts are *parsed* the way the C library and urllib3 will
# read them (inet_aton's 1 to 4 parts in decimal, octal or hex; IPv6 with
# embedded IPv4; names resolved with getaddrinfo), and every address they can
# reach is judged with ``ipaddress``. Names are judged again at connect time,
# on the very addresses the socket then connects to (DNS rebinding).

#: Cloud metadata services outside the link-local range: AWS's IPv6 endpoint,
#: Alibaba Cloud, Azure's WireServer, Oracle Cloud's legacy one.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForbiddenAddress(NewConnectionError):
    """A connection refused before it was made: the host resolved to an address
    no provider may live at (link-local, metadata …)."""


def normalize_host(host: str) -> str:
    """``host`` as the HTTP client will look it up.

    requests IDNA-encodes non-ASCII hosts, which folds compatibility forms
    (fullwidth digits, ideographic full stops) to ASCII; a trailing dot only
    marks a fully qualified name. Zone ids of IPv6 literals are kept.
    """
    host = unicodedata.normalize("NFKC", host.strip()).replace("\u3002", ".").lower()
    return host[:-1] if host.endswith(".") and not host.endswith("..") else host


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """IPv4 as ``inet_aton`` (and so getaddrinfo) reads it: 1-4 parts, each
    decimal, octal (leading 0) or hex (0x); the last fills the remaining bytes."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.fullmatch(p) for p in parts):
        return None
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif part.startswith("0"):
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def literal_addresses(host: str) -> list[IPAddress]:
    """Every address a literal ``host`` can mean (``[]`` for a name)."""
    host = normalize_host(host)
    found: list[IPAddress] = []
    try:
        found.append(ipaddress.ip_address(host))
    except ValueError:
        pass
    parsed = _inet_aton(host)
    if parsed is not None:
        found.append(parsed)
    try:
        # The platform's own reading, in case it is laxer than ours.
        found.append(ipaddress.IPv4Address(socket.inet_aton(host)))
    except (OSError, UnicodeError, ValueError):
        pass
    return list(dict.fromkeys(found))


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo …)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    plain = ipaddress.IPv6Address(int(ip))  # without a zone id
    found = [a for a in (plain.ipv4_mapped, plain.sixtofour) if a is not None]
    if plain.teredo is not None:
        found.extend(plain.teredo)
    if any(plain in net for net in _NAT64) or (
        plain in _IPV4_COMPATIBLE and int(plain) > 1  # not :: nor ::1
    ):
        found.append(ipaddress.IPv4Address(int(plain) & 0xFFFFFFFF))
    return found


def is_loopback_address(ip: IPAddress) -> bool:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def address_problem(ip: IPAddress, *, plain_http: bool = False) -> str:
    """Why no provider call may go to ``ip`` (``""`` when it may)."""
    for candidate in (ip, *_embedded_ipv4(ip)):
        plain = (
            ipaddress.IPv6Address(int(candidate))
            if isinstance(candidate, ipaddress.IPv6Address)
            else candidate
        )
        if plain in METADATA_ADDRESSES:
            return "points at a cloud metadata address"
        if plain.is_link_local:
            return "points at a link-local address (cloud metadata lives there)"
        if plain.is_multicast:
            return "points at a multicast address"
        if plain.is_unspecified or (
            isinstance(plain, ipaddress.IPv4Address)
            and (plain in _THIS_NETWORK or plain.is_reserved)
        ):
            return "points at an unspecified or reserved address"
    if plain_http and not is_loopback_address(ip):
        return "must use https:// (plain http is only allowed to loopback, for tests)"
    return ""


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` as urllib3 calls it: TCP, the families it would try."""
    return socket.getaddrinfo(normalize_host(host), port, allowed_gai_family(), socket.SOCK_STREAM)


def check_base_url(url: str, *, alias: str) -> str:
    """Validate a configured base URL (docs/security.md item 32).

    https:// only (plain http to loopback, for tests); no credentials in the
    URL; never an address in the link-local range (cloud metadata at
    169.254.169.254), a known metadata address, multicast or unspecified —
    in any spelling of the address, nor a name that resolves to one.
    Private and loopback addresses stay allowed (on-premises gateways).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    problem = ""
    try:
        port = parts.port
    except ValueError:
        port, problem = None, "has an invalid port"
    addresses = literal_addresses(host) if host else []
    loopback = normalize_host(host) == "localhost" or (
        bool(addresses) and all(is_loopback_address(a) for a in addresses)
    )
    if problem:
        pass
    elif parts.scheme not in ("https", "http") or not host:
        problem = "must be an absolute https:// URL"
    elif parts.scheme == "http" and not loopback:
        problem = "must use https:// (plain http is only allowed to loopback, for tests)"
    elif parts.username or parts.password:
        problem = "must not hold credentials; use the provider's options"
    else:
        problem = next(filter(None, (address_problem(a) for a in addresses)), "")
    if not problem and not addresses:
        problem = _resolved_problem(
            host,
            port or (443 if parts.scheme == "https" else 80),
            plain_http=parts.scheme == "http",
        )
    if problem:
        raise Sms2faConfigurationError(
            f"SMS provider {alias!r}: base_url {problem}.", check_id="sms2fa.E002"
        )
    return url.rstrip("/")


def _resolved_problem(host: str, port: int, *, plain_http: bool) -> str:
    """The problem with any address ``host`` resolves to now, if it resolves.

    A name that does not resolve here (no DNS at build time) is not refused:
    the connection guard judges it again when a call connects.
    """
    try:
        infos = resolve(host, port)
    except (OSError, UnicodeError):
        return ""
    for info in infos:
        try:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        except ValueError:
            continue
        problem = address_problem(ip, plain_http=plain_http)
        if problem:
            return problem.replace("points at", "resolves to", 1)
    return ""


# ------------------------------------------------------- deadline and guard
#
# requests' read timeout bounds each socket read, not the answer: a server
# that drips one byte just inside the timeout holds a call for as long as it
# likes (a 256 KiB answer at one byte per 15 s: 45 days). Each call therefore
# has a total deadline. A watchdog thread shuts the call's socket down when it
# passes, which wakes the blocked read at once, whichever phase it is in
# (status line, headers, body; plain or inside TLS). Python's TLS handshake
# bounds itself: its socket timeout covers the whole handshake.


class _CallState:
    """One provider call's deadline and the sockets it uses."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.sent = False  # a byte of the request went out
        self.expired = False
        self.finished = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self.finished:
                return
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    """Shut a socket down for reading and writing, waking any blocked call on it.

    The socket module's own ``shutdown`` is used on TLS sockets too (their
    override would drop the TLS state under the reading thread). A raw socket
    that TLS has taken over (detached) is left alone: Python's TLS handshake
    already bounds itself by the socket timeout as a whole, and the deadline
    is checked again when it returns.
    """
    if sock.fileno() == -1:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to wake


class _Watchdog:
    """One daemon thread that expires calls whose deadline has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _CallState]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, state: _CallState) -> None:
        with self._cond:
            heapq.heappush(self._heap, (state.deadline, next(self._order), state))
            if self._thread is None or not self._thread.is_alive():
                # Also after a fork: the child has no watchdog thread.
                self._thread = threading.Thread(
                    target=self._run, name="sms2fa-provider-deadline", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].finished:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        state = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(delay)
            state.expire()


_watchdog = _Watchdog()
_local = threading.local()


def _current_call() -> _CallState | None:
    return getattr(_local, "call", None)


class _GuardedConnectionMixin:
    """Connects only to vetted addresses, and lends its socket to the deadline.

    The host is resolved here and every address it resolves to is judged
    (:func:`address_problem`); then, once urllib3 has connected, the address
    the socket actually reached is judged again, before any byte is sent: a
    name cannot pass the check with one address and connect to another (DNS
    rebinding). TLS still verifies the certificate against the host name.
    """

    plain_http = False

    def _new_conn(self) -> socket.socket:
        host = self._dns_host  # type: ignore[attr-defined]
        try:
            infos = resolve(host, self.port)  # type: ignore[attr-defined]
        except (OSError, UnicodeError):
            infos = []  # urllib3 reports the failure in its own words below
        for info in infos:
            self._refuse_if_forbidden(str(info[4][0]))
        sock = super()._new_conn()  # type: ignore[misc]
        # The address actually connected to, not the one resolved a moment
        # ago: a rebinding name cannot swap one in between. Nothing has been
        # sent on the socket yet (TLS starts after this returns).
        try:
            peer = str(sock.getpeername()[0])
        except (OSError, IndexError, TypeError):
            peer = ""
        if peer:
            try:
                self._refuse_if_forbidden(peer)
            except ForbiddenAddress:
                sock.close()
                raise
        call = _current_call()
        if call is not None:
            call.attach(sock)
        return sock

    def _refuse_if_forbidden(self, address: str) -> None:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return
        problem = address_problem(ip, plain_http=self.plain_http)
        if problem:
            raise ForbiddenAddress(self, f"refused to connect: the host {problem}")  # type: ignore[arg-type]

    def send(self, data: Any) -> None:
        # http.client connects on the first send; done here first, so that
        # "sent" below means a byte of the request may really have gone out.
        if self.sock is None and self.auto_open:  # type: ignore[attr-defined]
            self.connect()  # type: ignore[attr-defined]
        call = _current_call()
        if call is not None:
            call.attach(self.sock)  # type: ignore[attr-defined]
            call.sent = True
        super().send(data)  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    plain_http = True


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_GUARDED_POOLS = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class _GuardedAdapter(HTTPAdapter):
    """requests' adapter with the guarded connection classes."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_GUARDED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through an HTTP(S) proxy (HTTPS_PROXY in the environment) the
        # connection is to the proxy: its address is judged the same way and
        # the deadline still holds. The target is resolved by the proxy; the
        # build-time check of base_url is what applies to it then.
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_GUARDED_POOLS)
        return manager


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
        total_timeout: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        self.base_url = check_base_url(base_url or self.default_base_url, alias=alias)
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.total_timeout = _check_total_timeout(total_timeout, self.timeout, alias)
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
        adapter = _GuardedAdapter(max_retries=retry, pool_connections=1, pool_maxsize=10)
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

        The whole exchange — connect, TLS, request, status line, headers and
        body — must end within ``total_timeout`` seconds.

        :raises ProviderUnavailable: the provider could not be reached
            (``may_have_sent=False``) or stopped answering after the request
            went out (``may_have_sent=True``), or the body was too large, or
            the answer was not complete by the deadline (``deadline_exceeded``,
            ``may_have_sent=True`` once a byte of the request went out).
        """
        call = _CallState(time.monotonic() + self.total_timeout)
        outer = _current_call()
        _local.call = call
        _watchdog.arm(call)
        try:
            answer = self._exchange(
                method,
                path,
                json_body=json_body,
                data=data,
                params=params,
                headers=headers,
                auth=auth,
            )
        except ProviderError:
            if call.expired:
                raise self._deadline_exceeded(call) from None
            raise
        finally:
            _local.call = outer
            call.finish()
        if call.expired or time.monotonic() > call.deadline:
            # The socket was shut at the deadline; what was read by then may
            # look complete (a body without Content-Length) but is not trusted.
            raise self._deadline_exceeded(call)
        return answer

    def _deadline_exceeded(self, call: _CallState) -> ProviderUnavailable:
        # Once a byte of the request went out, like a read timeout: it may have
        # been processed, so it is never repeated and the flows do not fail
        # over. Before that (a slow connect), like a connect failure.
        return ProviderUnavailable(
            provider=self.alias,
            provider_code="deadline_exceeded" if call.sent else "connect_failed",
            provider_text=f"no complete answer within {self.total_timeout:g} s",
            may_have_sent=call.sent,
        )

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        json_body: Any,
        data: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        auth: Any,
    ) -> HttpAnswer:
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
    from urllib3.exceptions import MaxRetryError, ReadTimeoutError

    reason = err.args[0] if err.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(reason, ForbiddenAddress):
        return "forbidden_address", False
    if isinstance(reason, NewConnectionError):
        return "connect_failed", False
    if isinstance(reason, ReadTimeoutError):
        return "timeout", True
    return "connection_error", True


def _check_total_timeout(value: object, timeout: tuple[float, float], alias: str) -> float:
    """The total deadline of one call: ``total_timeout``, else connect + read."""
    if value is None:
        return timeout[0] + timeout[1]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise Sms2faConfigurationError(
            f"SMS provider {alias!r}: the 'total_timeout' option must be a number of "
            f"seconds above 0 and at most 3600.",
            check_id="sms2fa.E002",
        )
    return float(value)
