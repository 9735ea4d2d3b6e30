"""Who is asking: the client's IP address and user agent, from a request.

The IP is ``REMOTE_ADDR`` unless ``SMS2FA["TRUSTED_PROXY_COUNT"]`` says how
many reverse proxies sit in front of the site; only then is
``X-Forwarded-For`` read, and only the entry the outermost trusted proxy
added. Entries further left are whatever the client chose to send
(django-allauth 65.14.2 was bypassed that way), so they are never used.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .conf import app_settings
from .types import ClientInfo


def client_ip(request: Any) -> str | None:
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = app_settings.TRUSTED_PROXY_COUNT
    if proxies == 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [h for h in hops if h]
    if len(hops) < proxies:
        return remote
    candidate = hops[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def limit_key(ip: str | None) -> str | None:
    """The key the per-IP send limit counts under: the address for IPv4, its
    /64 for IPv6 (one client usually holds a whole /64)."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def client_info(request: Any) -> ClientInfo:
    return ClientInfo(
        ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")[:300]
    )
