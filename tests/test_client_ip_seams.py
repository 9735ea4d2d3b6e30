"""The client IP at the seams with the server in front of the site.

* A dual-stack listener hands IPv4 clients over as IPv4-mapped IPv6
  (``::ffff:203.0.113.7``). Keyed by their ``/64`` they would all share the
  ``::/64`` limit — one client could spend every IPv4 client's sends. They
  are IPv4 addresses and are keyed as such.
* A server on a unix socket (gunicorn ``--bind unix:…``) leaves ``REMOTE_ADDR``
  empty. Such requests used to skip the per-IP limit; now they share one
  strict bucket, and the first one logs a warning saying why.
* ``X-Forwarded-For`` entries written with a port (``1.2.3.4:5678``) or in
  brackets (``[2001:db8::1]:443``, ``[2001:db8::1]``) are parsed, not taken
  for garbage (which fell back to the proxy's address: every client behind
  that proxy in one bucket).
"""

from __future__ import annotations

import logging

import pytest

from django.test import Client, RequestFactory

from django_sms2fa import client as client_module
from django_sms2fa.client import client_info, client_ip, limit_key
from django_sms2fa.models import Challenge, Refusal

from .test_send_limits import api_post, frozen, mobiles

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"


def request(remote: str | None, xff: str | None = None):
    req = RequestFactory().post("/")
    if xff is not None:
        req.META["HTTP_X_FORWARDED_FOR"] = xff
    if remote is None:
        del req.META["REMOTE_ADDR"]
    else:
        req.META["REMOTE_ADDR"] = remote
    return req


def post_code(phone: str, remote: str | None, xff: str | None = None) -> int:
    client = Client()
    extra = {"REMOTE_ADDR": remote if remote is not None else ""}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    response = api_post(client, "challenges/", {"phone": phone, "purpose": "verify_phone"}, **extra)
    return response.status_code


# ------------------------------------------------------- IPv4-mapped IPv6


@pytest.mark.parametrize(
    "remote,expected",
    [
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::FFFF:203.0.113.7", "203.0.113.7"),
        ("::ffff:cb00:7107", "203.0.113.7"),  # the same address in hex
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8::7", "2001:db8::7"),
    ],
)
def test_an_ipv4_mapped_address_is_the_ipv4_address(remote, expected):
    assert client_ip(request(remote)) == expected
    key = expected if "." in expected else "2001:db8::/64"
    assert limit_key(client_ip(request(remote))) == limit_key(remote) == key


def test_ipv4_clients_on_a_dual_stack_listener_each_have_their_own_limit(send_limits, outbox):
    numbers = mobiles(22)
    with frozen():
        first = [post_code(number, "::ffff:203.0.113.7") for number in numbers[:21]]
        other = post_code(numbers[21], "::ffff:198.51.100.9")
    assert first == [202] * 20 + [429]
    assert other == 202  # another IPv4 client: not the ::/64 the first one used up
    assert set(Challenge.objects.values_list("client_ip", flat=True)) == {
        "203.0.113.7",
        "198.51.100.9",
    }
    assert Refusal.objects.get().client_ip == "203.0.113.7"


# ---------------------------------------------------------- no REMOTE_ADDR


def test_requests_without_an_address_share_one_strict_bucket(
    send_limits, sms2fa_settings, outbox, caplog, monkeypatch
):
    monkeypatch.setattr(client_module, "_warned_no_address", False, raising=False)
    sms2fa_settings(LIMITS={**send_limits, "ip": ["3/h"]})
    caplog.set_level(logging.WARNING, logger="django_sms2fa")
    with frozen():
        statuses = [post_code(number, None) for number in mobiles(5)]
    assert statuses == [202, 202, 202, 429, 429]
    refusals = Refusal.objects.all()
    assert [(r.limit, r.client_ip) for r in refusals] == [("ip", None), ("ip", None)]
    warnings = [r.getMessage() for r in caplog.records if "REMOTE_ADDR" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per process, not once per request
    print(f"\nno REMOTE_ADDR: {warnings[0]}")


def test_a_request_without_an_address_is_keyed_unknown():
    info = client_info(request(None))
    assert info.ip == ""  # a request whose address is missing (not "no request")
    assert limit_key(info.ip) == "unknown"
    # A flow called without any request (django-otp's device, a shell) has no
    # IP limit at all, as before: it is not an anonymous web client.
    assert limit_key(None) is None


def test_behind_a_proxy_too_few_entries_and_no_address_use_the_bucket(sms2fa_settings):
    sms2fa_settings(TRUSTED_PROXY_COUNT=1)
    assert limit_key(client_info(request(None, None)).ip) == "unknown"


# ------------------------------------------- X-Forwarded-For with ports, brackets


@pytest.mark.parametrize(
    "xff,expected",
    [
        ("1.2.3.4:5678", "1.2.3.4"),
        ("9.9.9.9, 1.2.3.4:80", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:DB8::1]:8443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),  # bare IPv6: its last group is not a port
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("[::ffff:1.2.3.4]:1234", "1.2.3.4"),
    ],
)
def test_forwarded_for_entries_with_ports_and_brackets_are_parsed(xff, expected, sms2fa_settings):
    sms2fa_settings(TRUSTED_PROXY_COUNT=1)
    assert client_ip(request(PROXY, xff)) == expected


@pytest.mark.parametrize(
    "xff",
    [
        "1.2.3.4:",
        "1.2.3.4:port",
        "1.2.3.4:\uff18\uff10",  # full-width digits are not a port
        "[2001:db8::1",
        "[2001:db8::1]443",
        "[2001:db8::1]:",
        "[1.2.3.4",
        "[]:80",
        "[garbage]:80",
        "1.2.3.4:80:90",
    ],
)
def test_malformed_ports_and_brackets_still_fall_back_to_remote_addr(xff, sms2fa_settings):
    sms2fa_settings(TRUSTED_PROXY_COUNT=1)
    assert client_ip(request(PROXY, xff)) == PROXY


def test_clients_behind_a_proxy_that_adds_ports_each_have_their_own_limit(
    send_limits, sms2fa_settings, outbox
):
    sms2fa_settings(TRUSTED_PROXY_COUNT=1)
    numbers = mobiles(22)
    with frozen():
        first = [
            post_code(n, PROXY, f"198.51.100.9:{4000 + i}") for i, n in enumerate(numbers[:21])
        ]
        other = post_code(numbers[21], PROXY, "[2001:db8::9]:443")
    assert first == [202] * 20 + [429]
    assert other == 202
    assert Refusal.objects.get().client_ip == "198.51.100.9"
