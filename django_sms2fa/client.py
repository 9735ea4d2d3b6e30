"""Who is asking: the client's IP address and user agent, from a request.

The IP is ``REMOTE_ADDR`` unless ``SMS2FA["TRUSTED_PROXY_COUNT"]`` says how
many reverse proxies sit in front of the site; only then is
``X-Forwarded-For`` read, and only the entry the outermost trusted proxy
added. Entries further left are whatever the client chose to send
(django-allauth 65.14.2 was bypassed that way), so they are never used.

Addresses are parsed, not pattern-matched: an entry may carry a port
(``1.2.3.4:5678``) or brackets (``[2001:db8::1]:443``), and an IPv4-mapped
IPv6 address (``::ffff:1.2.3.4``, what a dual-stack listener reports for an
IPv4 client) is the IPv4 address it maps — otherwise every IPv4 client would
share the ``::/64`` limit.

A request without ``REMOTE_ADDR`` (a server on a unix socket with no proxy
header configured) has the IP ``""``: all such requests share one per-IP
bucket, ``"unknown"``, and the first one logs a warning. ``None`` means there
was no request at all (a flow called from a shell or by django-otp's device),
which no per-IP limit applies to.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from .conf import app_settings
from .types import ClientInfo

logger = logging.getLogger("django_sms2fa")

#: The per-IP limit key of every request whose address is unknown.
UNKNOWN_IP_KEY = "unknown"

# Logged once per process: a warning per request would flood the log of a
# site that is misconfigured, and one line says all there is to say.
_warned_no_address = False


def parse_address(text: str) -> str | None:
    """``text`` as a canonical IP address, or ``None`` if it is not one.

    Accepts ``a.b.c.d``, ``a.b.c.d:port``, an IPv6 address, ``[v6]`` and
    ``[v6]:port``; an IPv4-mapped IPv6 address becomes its IPv4 address.
    """
    text = text.strip()
    if not text or not text.isascii():
        return None
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        if end == -1 or (rest and not _is_port_suffix(rest)):
            return None
    elif text.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        host, port = text.split(":")
        if not _is_port_suffix(":" + port):
            return None
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(_unmapped(address))


def _is_port_suffix(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit()


def _unmapped(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(request: Any) -> str | None:
    """The client's address, or ``None`` when the request carries none."""
    raw = request.META.get("REMOTE_ADDR") or ""
    # REMOTE_ADDR comes from the server, not the client, so an unparsable one
    # is kept as it is (the limits still key on it).
    remote = (parse_address(raw) or raw.strip()) or None
    proxies = app_settings.TRUSTED_PROXY_COUNT
    if proxies == 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [h for h in hops if h]
    if len(hops) < proxies:
        return remote
    return parse_address(hops[-proxies]) or remote


def limit_key(ip: str | None) -> str | None:
    """The key the per-IP limits count under.

    The address for IPv4, its /64 for IPv6 (one client usually holds a whole
    /64), ``"unknown"`` for a request without an address (``""``: one shared
    bucket, so leaving the address out never dodges the limit), and ``None``
    (no per-IP limit) when there was no request at all.
    """
    if ip is None:
        return None
    if not ip:
        _warn_no_address()
        return UNKNOWN_IP_KEY
    try:
        address = _unmapped(ipaddress.ip_address(ip))
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _warn_no_address() -> None:
    global _warned_no_address
    if _warned_no_address:
        return
    _warned_no_address = True
    logger.warning(
        "sms2fa: a request arrived without REMOTE_ADDR (a server on a unix socket?); "
        "every such request shares one per-IP limit. Have the server pass the client "
        "address, or set SMS2FA['TRUSTED_PROXY_COUNT'] for the proxy in front of it."
    )


def client_info(request: Any) -> ClientInfo:
    """Who asked. ``ip`` is ``""`` (not ``None``) when the request has no address."""
    return ClientInfo(
        ip=client_ip(request) or "", user_agent=request.META.get("HTTP_USER_AGENT", "")[:300]
    )
