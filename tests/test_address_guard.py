"""Attack: reach the cloud metadata service through a provider's base URL.

A provider's ``base_url`` must never point at a link-local address (cloud
metadata at 169.254.169.254), a known metadata address, multicast or an
unspecified one; plain ``http://`` only to loopback. A guard that compares
the host *text* is walked around by spelling the address another way —
every spelling below is one the C library (and so urllib3) connects to — or
by a name that resolves to it, at build time or only later (DNS rebinding).

There is no DNS here: names are resolved by a monkeypatched
``socket.getaddrinfo``, which is what urllib3 calls.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from django_sms2fa.exceptions import ProviderUnavailable, Sms2faConfigurationError
from django_sms2fa.providers import http
from django_sms2fa.providers.axelnac import AxelNACProvider
from django_sms2fa.providers.gosms import GoSMSProvider
from django_sms2fa.providers.http import check_base_url
from django_sms2fa.providers.ip1 import IP1Provider
from django_sms2fa.providers.smstoken import SMSTokenProvider
from django_sms2fa.providers.telefonip import TelefonIPProvider
from django_sms2fa.types import OutgoingSms

METADATA = "169.254.169.254"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJnb3NtcyJ9.c2lnbmF0dXJlLVNFQ1JFVC0wMTIzNDU2Nzg5"
SMS = OutgoingSms(to="+79991234567", text="Your code is 480917", code="480917", purpose="login")

# Hosts the C library reads as 169.254.169.254 (inet_aton: 1 to 4 parts,
# decimal, octal or hex, the last part filling the remaining bytes).
IPV4_SPELLINGS = [
    "2852039166",  # one 32-bit decimal number
    "0xA9FEA9FE",  # one hex number
    "0XA9FEA9FE",
    "0xa9.0xfe.0xa9.0xfe",  # hex parts
    "0251.0376.0251.0376",  # octal parts
    "0251.254.0xa9.254",  # mixed
    "169.254.43518",  # three parts: the last holds two bytes
    "169.16689662",  # two parts: the last holds three bytes
    "0x00a9.0376.0xa9fe",
]
SPELLINGS = [
    *IPV4_SPELLINGS,
    METADATA,
    METADATA + ".",  # a fully qualified spelling
    "１６９.２５４.１６９.２５４",  # fullwidth digits (IDNA folds them)
    "169。254。169。254",  # ideographic full stops
    "[::ffff:169.254.169.254]",  # IPv4-mapped IPv6
    "[::ffff:a9fe:a9fe]",
    "[0:0:0:0:0:ffff:a9fe:a9fe]",
    "[::169.254.169.254]",  # IPv4-compatible (deprecated, still parsed)
    "[64:ff9b::a9fe:a9fe]",  # NAT64
    "[2002:a9fe:a9fe::1]",  # 6to4
    "[fe80::1]",  # IPv6 link-local
    "[fe80::a9fe:a9fe%25eth0]",  # with a zone id
    "[fd00:ec2::254]",  # AWS's IPv6 metadata endpoint
    "100.100.100.200",  # Alibaba Cloud metadata
    "168.63.129.16",  # Azure WireServer
    "0",  # 0.0.0.0: reaches this host
    "0.0.0.0",
    "[::]",
    "3758096385",  # 224.0.0.1, multicast
]


@pytest.fixture
def dns(monkeypatch):
    """A stand-in for DNS: ``dns["name"] = ["1.2.3.4", ...]``; numeric hosts
    and ``localhost`` still go to the real resolver (no network needed)."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            answers = table[name]
            if callable(answers):
                answers = answers()
            infos = []
            for address in answers:
                ip = ipaddress.ip_address(address)
                if ip.version == 6:
                    infos.append(
                        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
                    )
                else:
                    infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
            return infos
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


# ----------------------------------------------------------- every spelling


@pytest.mark.parametrize("host", SPELLINGS)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_every_spelling_of_a_forbidden_address_is_refused(scheme, host):
    with pytest.raises(Sms2faConfigurationError) as err:
        check_base_url(f"{scheme}://{host}:8443/api", alias="default")
    assert err.value.check_id == "sms2fa.E002"
    assert "base_url" in str(err.value)


@pytest.mark.parametrize("host", IPV4_SPELLINGS)
def test_the_spellings_are_real(host):
    """The attack is real: the platform's resolver turns each spelling into
    the metadata address, without any DNS."""
    addresses = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    assert addresses == {METADATA}


@pytest.mark.parametrize(
    "provider",
    [
        lambda url: GoSMSProvider(token=TOKEN, base_url=url),
        lambda url: TelefonIPProvider(token="tip-token", base_url=url),
        lambda url: IP1Provider(account_id="ip1-1", api_key="key-1", base_url=url),
        lambda url: SMSTokenProvider(key="key-1", base_url=url),
        lambda url: AxelNACProvider(username="u", password="p", source_id="s", base_url=url),
    ],
    ids=["gosms", "telefonip", "ip1", "smstoken", "axelnac"],
)
@pytest.mark.parametrize("host", ["2852039166", "[::ffff:a9fe:a9fe]", "169.254.43518"])
def test_every_provider_refuses_them(provider, host):
    with pytest.raises(Sms2faConfigurationError):
        provider(f"https://{host}")


# --------------------------------------------------------- names resolving


@pytest.mark.parametrize(
    "addresses",
    [
        [METADATA],
        ["93.184.216.34", METADATA],  # one bad address among good ones
        ["fe80::1"],
        ["::ffff:169.254.169.254"],
        ["fd00:ec2::254"],
    ],
    ids=["metadata", "one-of-two", "ipv6-link-local", "ipv4-mapped", "aws-ipv6"],
)
def test_a_name_resolving_to_a_forbidden_address_is_refused(dns, addresses):
    dns["sms.evil.example"] = addresses
    with pytest.raises(Sms2faConfigurationError) as err:
        check_base_url("https://sms.evil.example/v1", alias="default")
    assert "resolves to" in str(err.value)


def test_plain_http_to_a_name_resolving_away_from_loopback_is_refused(dns):
    dns["localhost"] = ["10.0.0.7"]
    with pytest.raises(Sms2faConfigurationError):
        check_base_url("http://localhost:8000", alias="default")


# -------------------------------------------------------- what still passes


@pytest.mark.parametrize(
    "url",
    [
        GoSMSProvider.default_base_url,
        TelefonIPProvider.default_base_url,
        IP1Provider.default_base_url,
        SMSTokenProvider.default_base_url,
        "https://nac.example.internal:9999",  # AxelNAC on premises
        "https://10.0.0.5:9999",
        "https://192.168.1.10",
        "https://[fd12:3456::5]:9999",  # a private IPv6 network
        "http://127.0.0.1:8000",
        "http://2130706433:8000",  # 127.0.0.1 spelled as one number: still loopback
        "http://localhost:8000",
        "http://[::1]:8000",
    ],
)
def test_legitimate_base_urls_pass(dns, url):
    for name in ("api.gosms.ru", "api.telefon-ip.ru", "api.ip1sms.com", "api.smstoken.com.br"):
        dns[name] = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    dns["nac.example.internal"] = ["10.0.0.5"]
    assert check_base_url(url, alias="default") == url.rstrip("/")


def test_a_name_that_does_not_resolve_here_is_judged_at_connect_time():
    # No DNS at build time (a CI box, a container before the network is up).
    assert check_base_url("https://api.gosms.ru/v1", alias="default")


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5/", "http://93.184.216.34/", "http://2852039166/", "ftp://x/"]
)
def test_plain_http_still_only_to_loopback(url):
    with pytest.raises(Sms2faConfigurationError):
        check_base_url(url, alias="default")


# ---------------------------------------------------- at connect time too


def test_a_name_rebound_after_the_build_is_refused_before_connecting(dns):
    """Checked at build time with a public address; by the first send the name
    points at the metadata service. Nothing is sent, so the flows may fail over."""
    dns["api.gosms.ru"] = ["93.184.216.34"]
    provider = GoSMSProvider(token=TOKEN, connect_retries=0)
    connects = []
    dns["api.gosms.ru"] = lambda: connects.append(1) or [METADATA]
    with pytest.raises(ProviderUnavailable) as err:
        provider.send(SMS)
    assert err.value.provider_code == "forbidden_address"
    assert err.value.may_have_sent is False
    assert connects  # it was looked up at connect time


def test_the_address_actually_connected_to_is_judged(dns, loopback, monkeypatch):
    """The check and the connection use one resolution each; a name that
    answers the check with one address and the connection with another is
    caught on the connected socket, before a byte of the request is sent.

    No metadata service listens here, so the loopback server plays it:
    127.0.0.1 is made a forbidden address for this test, and the name first
    resolves to 127.0.0.2 (allowed), then to 127.0.0.1.
    """
    port = int(loopback.url.rsplit(":", 1)[1])
    answers = iter([["127.0.0.2"], ["127.0.0.2"]])
    dns["localhost"] = lambda: next(answers, ["127.0.0.1"])
    provider = GoSMSProvider(token=TOKEN, base_url=f"http://localhost:{port}", connect_retries=0)
    monkeypatch.setattr(http, "METADATA_ADDRESSES", frozenset({ipaddress.ip_address("127.0.0.1")}))
    with pytest.raises(ProviderUnavailable) as err:
        provider.send(SMS)
    assert err.value.provider_code == "forbidden_address"
    assert err.value.may_have_sent is False
    assert loopback.requests == []


def test_a_provider_on_loopback_is_still_reached(loopback):
    loopback.respond(200, {"id": "6654a4e8f1527149588c89f2"})
    result = GoSMSProvider(
        token=TOKEN, base_url=loopback.url.replace("127.0.0.1", "localhost")
    ).send(SMS)
    assert result.message_id == "6654a4e8f1527149588c89f2"
    assert len(loopback.requests) == 1
