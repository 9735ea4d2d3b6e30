"""The client IP the limits key on (docs/security.md item 23).

``REMOTE_ADDR`` by default: ``X-Forwarded-For`` is whatever the client wrote,
so it must neither change the IP nor reset or dodge the per-IP limit
(django-allauth 65.14.2 was bypassed that way). With
``TRUSTED_PROXY_COUNT = n`` the n-th entry from the right — the one the
outermost trusted proxy added — is used; an entry that is not an IP address,
or too few entries, fall back to ``REMOTE_ADDR``.
"""

from __future__ import annotations

import pytest

from django.test import RequestFactory

from django_sms2fa.client import client_info, client_ip
from django_sms2fa.models import Challenge, Refusal

from .test_send_limits import api_post, assert_sent, frozen, mobiles

pytestmark = pytest.mark.django_db

REMOTE = "203.0.113.7"
PROXY = "10.0.0.2"
CLIENT = "198.51.100.9"
OTHER_CLIENT = "198.51.100.10"


def request(remote: str | None = REMOTE, xff: str | None = None):
    extra = {}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    req = RequestFactory().post("/", **extra)
    if remote is None:
        del req.META["REMOTE_ADDR"]
    else:
        req.META["REMOTE_ADDR"] = remote
    return req


# ------------------------------------------------------------ which address


@pytest.mark.parametrize(
    "xff", [None, "", CLIENT, f"{CLIENT}, {OTHER_CLIENT}", "127.0.0.1", "garbage"]
)
def test_remote_addr_by_default(xff):
    assert client_ip(request(REMOTE, xff)) == REMOTE
    assert client_info(request(REMOTE, xff)).ip == REMOTE


def test_no_remote_addr_means_no_ip():
    assert client_ip(request(None, CLIENT)) is None


@pytest.mark.parametrize(
    "proxies,xff,expected",
    [
        (1, "1.1.1.1, 2.2.2.2", "2.2.2.2"),
        (2, "1.1.1.1, 2.2.2.2", "1.1.1.1"),
        (1, "2.2.2.2", "2.2.2.2"),
        (2, "spoofed, 1.1.1.1, 2.2.2.2", "1.1.1.1"),  # what the client wrote is left of it
        (1, "1.1.1.1,2.2.2.2", "2.2.2.2"),
        (1, "1.1.1.1 ,  2.2.2.2 ", "2.2.2.2"),
        (1, "2001:DB8::1", "2001:db8::1"),  # normalised, so one client has one key
        (3, "1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4", "2.2.2.2"),
    ],
)
def test_trusted_proxies_pick_the_entry_the_outermost_proxy_added(
    proxies, xff, expected, sms2fa_settings
):
    sms2fa_settings(TRUSTED_PROXY_COUNT=proxies)
    assert client_ip(request(PROXY, xff)) == expected


GARBAGE = [
    "",
    " ",
    ",",
    " , ",
    "not-an-ip",
    "unknown",
    # Ports and brackets are parsed (tests/test_client_ip_seams.py); malformed
    # ones are still garbage.
    "1.2.3.4:",
    "[2001:db8::1",
    "999.1.1.1",
    "1.2.3.4.5",
    "01.2.3.4",
    "1.2.3",
    "1.1.1.1, garbage",  # the trusted entry is the garbage one
    "1.1.1.1, 2.2.2.2 3.3.3.3",
    "\x00",
    "1.2.3.4\x00",
    "\uff11.\uff12.\uff13.\uff14",  # full-width digits
    "x" * 10_000,
]


@pytest.mark.parametrize("xff", GARBAGE)
def test_garbage_entries_fall_back_to_remote_addr(xff, sms2fa_settings):
    sms2fa_settings(TRUSTED_PROXY_COUNT=1)
    assert client_ip(request(PROXY, xff)) == PROXY


@pytest.mark.parametrize("xff", [None, "", "1.1.1.1"])
def test_too_few_entries_fall_back_to_remote_addr(xff, sms2fa_settings):
    sms2fa_settings(TRUSTED_PROXY_COUNT=2)
    assert client_ip(request(PROXY, xff)) == PROXY


# --------------------------------------------------- the limiter, over HTTP


def post_code(client, phone: str, remote: str, xff: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    return api_post(client, "challenges/", {"phone": phone, "purpose": "verify_phone"}, **extra)


def test_a_spoofed_forwarded_for_does_not_change_the_recorded_ip(client, outbox):
    assert post_code(client, "+46701234567", REMOTE, CLIENT).status_code == 202
    assert Challenge.objects.get().client_ip == REMOTE


def test_a_spoofed_forwarded_for_does_not_dodge_the_ip_limit(client, send_limits, outbox):
    numbers = mobiles(25)
    with frozen():
        statuses = [
            post_code(client, number, REMOTE, f"192.0.2.{index + 1}").status_code
            for index, number in enumerate(numbers[:20])
        ]
        refused = post_code(client, numbers[20], REMOTE, "192.0.2.200")
        # Nor does leaving the header out, or writing the limit's own address.
        also = [
            post_code(client, numbers[21], REMOTE).status_code,
            post_code(client, numbers[22], REMOTE, f"{REMOTE}, 192.0.2.201").status_code,
        ]
    assert statuses == [202] * 20
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused["Retry-After"] == "3600"
    assert also == [429, 429]
    assert set(Challenge.objects.values_list("client_ip", flat=True)) == {REMOTE}
    assert set(Refusal.objects.values_list("limit", "client_ip")) == {("ip", REMOTE)}
    assert_sent(outbox, 20)


@pytest.mark.parametrize("proxies", [1, 2])
def test_behind_trusted_proxies_each_client_has_its_own_limit(
    proxies, client, send_limits, sms2fa_settings, outbox
):
    sms2fa_settings(TRUSTED_PROXY_COUNT=proxies)

    def forwarded(real_client: str, index: int) -> str:
        # The client's own (spoofed) entry, its address, then the inner proxies.
        hops = [f"192.0.2.{index % 250 + 1}", real_client] + ["10.0.0.1"] * (proxies - 1)
        return ", ".join(hops)

    numbers = mobiles(23)
    with frozen():
        statuses = [
            post_code(client, number, PROXY, forwarded(CLIENT, index)).status_code
            for index, number in enumerate(numbers[:21])
        ]
        other = post_code(client, numbers[21], PROXY, forwarded(OTHER_CLIENT, 0)).status_code
    assert statuses == [202] * 20 + [429]
    assert other == 202
    assert Refusal.objects.get().client_ip == CLIENT
    assert list(Challenge.objects.values_list("client_ip", flat=True).distinct().order_by()) in (
        [CLIENT, OTHER_CLIENT],
        [OTHER_CLIENT, CLIENT],
    )
    assert_sent(outbox, 21)


@pytest.mark.parametrize("xff", ["not-an-ip", "1.2.3.4:port", "", "1.1.1.1, garbage"])
def test_garbage_behind_a_proxy_counts_against_remote_addr(
    xff, client, send_limits, sms2fa_settings, outbox
):
    sms2fa_settings(TRUSTED_PROXY_COUNT=1, LIMITS={"ip": ["2/h"]})
    with frozen():
        statuses = [post_code(client, n, PROXY, xff).status_code for n in mobiles(3)]
    assert statuses == [202, 202, 429]
    assert set(Challenge.objects.values_list("client_ip", flat=True)) == {PROXY}
    assert Refusal.objects.get().client_ip == PROXY


def test_one_ipv6_64_is_one_client_for_the_ip_limit(client, send_limits, outbox):
    with frozen():
        statuses = [
            post_code(client, number, f"2001:db8:1:2::{index + 1:x}").status_code
            for index, number in enumerate(mobiles(21))
        ]
    assert statuses == [202] * 20 + [429]
