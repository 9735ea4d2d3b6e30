"""The failover rule, through the flows and the edges, with in-memory providers.

One rule (docs/failover.md): a provider that surely did not send is followed
by the next fallback; an uncertain outcome is followed by the next fallback
with the same code where we made the code and check it, and by nothing where
the provider made or checks it; whenever delivery stays uncertain the user is
told so and may resend at once (not in passwordless login, whose answers must
be the same for every number). tests/test_failover_loopback.py runs the same
rule through real HTTP against each provider.
"""

from __future__ import annotations

import pytest

from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_sms2fa import flows
from django_sms2fa.exceptions import (
    ChannelUnavailable,
    DeliveryFailed,
    IncorrectCode,
    ProviderLimited,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    TooManyAttempts,
)
from django_sms2fa.models import Challenge, ChallengeStatus, Message, PhoneDevice, Purpose
from django_sms2fa.providers import locmem

from .api_support import api_post, assert_error

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
LOCMEM = "django_sms2fa.providers.locmem.LocmemProvider"


def maybe_sent(**kwargs):
    return ProviderUnavailable(provider_text="read timeout", may_have_sent=True, **kwargs)


def surely_not_sent():
    return ProviderUnavailable(provider_text="503", http_status=503, may_have_sent=False)


def providers(sms2fa_settings, first="text", second=None, **options):
    config = {"default": {"BACKEND": LOCMEM, "OPTIONS": {"mode": first, **options}}}
    if second is not None:
        config["backup"] = {"BACKEND": LOCMEM, "OPTIONS": {"mode": second}}
    sms2fa_settings(PROVIDERS=config, FALLBACKS=["backup"] if second else [])


def request(purpose=Purpose.VERIFY_PHONE, **kwargs):
    return flows.request_challenge(phone=PHONE, purpose=purpose, **kwargs)


def messages():
    return list(Message.objects.order_by("id").values_list("provider", "status"))


# ----------------------------------------------------------------- the rule


def test_uncertain_then_a_fallback_that_takes_our_code_gets_the_same_code(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "code")
    locmem.fail_next(maybe_sent())
    challenge = request()
    assert [sms.alias for sms in outbox] == ["backup"]
    # What may arrive from the first and what surely arrives carry one code.
    assert [sms.code for sms in locmem.maybe_sent] == [outbox[0].code]
    assert messages() == [("default", "unknown"), ("backup", "sent")]
    assert not Challenge.objects.get(pk=challenge.pk).delivery_uncertain
    flows.verify_challenge(challenge.pk, outbox[0].code)


def test_uncertain_skips_fallbacks_that_would_need_another_code(sms2fa_settings, outbox):
    # A provider-checked fallback would send its own code: a second, different
    # code may reach the phone. It is skipped, and the delivery stays uncertain.
    providers(sms2fa_settings, "text", "verifies_code")
    locmem.fail_next(maybe_sent())
    challenge = request()
    assert outbox == []
    assert messages() == [("default", "unknown")]
    fresh = Challenge.objects.get(pk=challenge.pk)
    assert fresh.status == ChallengeStatus.PENDING
    assert fresh.delivery_uncertain
    assert flows.uncertain_delivery_told(fresh)
    # The code that may have arrived still works.
    flows.verify_challenge(challenge.pk, locmem.maybe_sent[0].code)


def test_where_the_provider_checks_the_code_nothing_follows_an_uncertain_send(
    sms2fa_settings, outbox
):
    providers(sms2fa_settings, "verifies_code", "verifies_code")
    locmem.fail_next(maybe_sent())
    challenge = request()
    assert outbox == []
    assert messages() == [("default", "unknown")]
    assert Challenge.objects.get(pk=challenge.pk).delivery_uncertain


def test_a_lost_returned_code_is_undeliverable_and_nothing_follows(sms2fa_settings, outbox):
    # The provider made the code and its answer (with the code) was lost:
    # nothing can check what may arrive, and a fallback's code would differ.
    providers(sms2fa_settings, "returns_code", "text")
    locmem.fail_next(maybe_sent())
    with pytest.raises(DeliveryFailed):
        request()
    assert outbox == []
    assert Challenge.objects.get().status == ChallengeStatus.UNDELIVERABLE


def test_a_sure_failure_fails_over_with_a_fresh_arming(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "returns_code")
    locmem.fail_next(surely_not_sent())
    challenge = request()
    assert [sms.alias for sms in outbox] == ["backup"]
    fresh = Challenge.objects.get(pk=challenge.pk)
    assert fresh.provider == "backup"
    assert not fresh.delivery_uncertain
    # The backup's own code, hashed on arrival, is the one that works.
    flows.verify_challenge(challenge.pk, outbox[0].code)


def test_uncertain_then_sure_failure_stays_uncertain(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "text")
    locmem.fail_next(maybe_sent())
    locmem.fail_next(surely_not_sent())
    challenge = request()
    assert outbox == []
    assert messages() == [("default", "unknown"), ("backup", "failed")]
    assert Challenge.objects.get(pk=challenge.pk).delivery_uncertain


def test_uncertain_twice_sends_one_code_at_most_twice(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "text")
    locmem.fail_next(maybe_sent(), times=2)
    challenge = request()
    assert len({sms.code for sms in locmem.maybe_sent}) == 1
    assert len(locmem.maybe_sent) == 2
    assert Challenge.objects.get(pk=challenge.pk).delivery_uncertain


def test_a_refused_number_is_not_offered_to_the_fallbacks(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "text")
    locmem.fail_next(ProviderRejected(provider_code="21211", provider_text="invalid To"))
    with pytest.raises(DeliveryFailed):
        request()
    assert outbox == []
    assert messages() == [("default", "failed")]


# --------------------------------------------------- telling the user the truth


def test_uncertain_delivery_allows_an_immediate_resend(sms2fa_settings, send_limits, outbox):
    providers(sms2fa_settings)
    sms2fa_settings(RESEND_INTERVAL=30)
    client = Client()
    locmem.fail_next(maybe_sent())
    created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert created.status_code == 202
    body = created.json()
    assert body["delivery_uncertain"] is True
    # resend_at is now: neither RESEND_INTERVAL nor the phone's 1/30s cooldown holds it.
    assert parse_datetime(body["resend_at"]) <= timezone.now()
    resent = api_post(client, f"challenges/{body['id']}/resend/")
    assert resent.status_code == 202, resent.content
    assert resent.json()["delivery_uncertain"] is False
    assert [sms.alias for sms in outbox] == ["default"]
    # A send that surely went out restores the cooldown.
    again = api_post(client, f"challenges/{body['id']}/resend/")
    assert_error(again, 429, "rate_limited")


def test_a_sure_delivery_keeps_the_cooldown(sms2fa_settings, send_limits, outbox):
    providers(sms2fa_settings)
    sms2fa_settings(RESEND_INTERVAL=30)
    client = Client()
    created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert created.json()["delivery_uncertain"] is False
    resent = api_post(client, f"challenges/{created.json()['id']}/resend/")
    assert_error(resent, 429, "rate_limited")


def test_login_after_the_password_says_the_code_may_be_delayed(
    sms2fa_settings, send_limits, user, outbox
):
    providers(sms2fa_settings)
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    locmem.fail_next(maybe_sent())
    client = Client()
    answer = api_post(client, "login/", {"username": "alice", "password": "correct horse"})
    assert answer.status_code == 200
    challenge = answer.json()["challenge"]
    assert challenge["delivery_uncertain"] is True
    assert api_post(client, f"challenges/{challenge['id']}/resend/").status_code == 202
    assert len(outbox) == 1


def test_passwordless_never_tells_and_keeps_the_cooldown(
    sms2fa_settings, send_limits, user, outbox
):
    # A decoy for an unknown number is never uncertain: telling a known
    # number's uncertainty (or opening its resend early) would tell them apart.
    providers(sms2fa_settings)
    sms2fa_settings(RESEND_INTERVAL=30)
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    locmem.fail_next(maybe_sent())
    known = api_post(Client(), "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    unknown = api_post(
        Client(), "challenges/", {"phone": "+46701234599", "purpose": "passwordless"}
    )
    assert known.status_code == unknown.status_code == 202
    for body in (known.json(), unknown.json()):
        assert body["delivery_uncertain"] is False
        assert parse_datetime(body["resend_at"]) > timezone.now()
    assert Challenge.objects.get(pk=known.json()["id"]).delivery_uncertain  # the audit knows


def test_the_code_page_tells_an_uncertain_delivery(sms2fa_settings, user, outbox):
    providers(sms2fa_settings)
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    locmem.fail_next(maybe_sent())
    client = Client()
    response = client.post(
        reverse("sms2fa:login"), {"username": "alice", "password": "correct horse"}, follow=True
    )
    assert b"sms2fa-delivery-uncertain" in response.content
    # and not once the code surely went out
    response = client.post(response.request["PATH_INFO"], {"resend": "1"}, follow=True)
    assert b"sms2fa-delivery-uncertain" not in response.content
    assert len(outbox) == 1


# ------------------------------------------------------ the provider's own limits


def test_a_providers_send_limit_is_told_as_rate_limited(sms2fa_settings, outbox):
    providers(sms2fa_settings, "verifies_code", "verifies_code")
    locmem.fail_next(
        ProviderRejected(provider_code="60203", provider_limit="send", retry_after=600)
    )
    answer = api_post(Client(), "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    error = assert_error(answer, 429, "rate_limited")
    assert error["retry_after"] == 600
    assert outbox == []  # the fallback is not asked either


def test_a_providers_send_limit_in_passwordless_answers_as_for_any_number(
    sms2fa_settings, user, outbox
):
    providers(sms2fa_settings, "verifies_code")
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    locmem.fail_next(ProviderRejected(provider_code="60203", provider_limit="send"))
    known = api_post(Client(), "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    assert known.status_code == 202


def test_a_providers_check_limit_closes_the_challenge(sms2fa_settings, outbox, monkeypatch):
    providers(sms2fa_settings, "verifies_code")
    challenge = request()

    def refuse(self, **kwargs):
        raise ProviderRejected(provider_code="60202", provider_limit="check")

    monkeypatch.setattr(locmem.LocmemProvider, "check_code", refuse)
    with pytest.raises(TooManyAttempts):
        flows.verify_challenge(challenge.pk, "123456")
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.FAILED


def test_provider_limited_is_a_delivery_failure():
    assert issubclass(ProviderLimited, DeliveryFailed)


# -------------------------------------------------------------------- channels


def test_call_me_instead_switches_the_channel_at_once(sms2fa_settings, send_limits, outbox):
    providers(sms2fa_settings, channels=("sms", "call"))
    sms2fa_settings(RESEND_INTERVAL=30)
    client = Client()
    created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    body = created.json()
    assert body["channel"] == "sms" and body["channels"] == ["sms", "call"]
    called = api_post(client, f"challenges/{body['id']}/resend/", {"channel": "call"})
    # Neither RESEND_INTERVAL nor the SMS's cooldown holds a switch: calls
    # have counts of their own.
    assert called.status_code == 202, called.content
    assert called.json()["channel"] == "call"
    assert [sms.channel for sms in outbox] == ["sms", "call"]
    challenge = Challenge.objects.get(pk=body["id"])
    assert challenge.channel == "call"
    assert list(challenge.messages.order_by("id").values_list("channel", flat=True)) == [
        "sms",
        "call",
    ]
    # The call channel's own cooldown holds the next call.
    assert_error(
        api_post(client, f"challenges/{body['id']}/resend/", {"channel": "call"}),
        429,
        "rate_limited",
    )
    flows.verify_challenge(challenge.pk, outbox[-1].code)


def test_a_channel_the_route_does_not_offer_is_refused(sms2fa_settings, outbox):
    providers(sms2fa_settings)
    client = Client()
    created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert created.json()["channels"] == ["sms"]
    refused = api_post(client, f"challenges/{created.json()['id']}/resend/", {"channel": "call"})
    assert_error(refused, 400, "channel_unavailable")
    assert_error(
        api_post(
            client,
            "challenges/",
            {"phone": PHONE, "purpose": "verify_phone", "channel": "whatsapp"},
        ),
        400,
        "channel_unavailable",
    )
    assert_error(
        api_post(client, f"challenges/{created.json()['id']}/resend/", {"channel": "fax"}),
        400,
        "invalid",
    )
    with pytest.raises(ChannelUnavailable):
        request(channel="call")
    assert len(outbox) == 1


def test_a_call_fails_over_only_to_providers_that_call(sms2fa_settings, outbox):
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": LOCMEM, "OPTIONS": {"channels": ("sms", "call")}},
            "sms_only": {"BACKEND": LOCMEM},
            "caller": {"BACKEND": LOCMEM, "OPTIONS": {"channels": ("call",)}},
        },
        FALLBACKS=["sms_only", "caller"],
    )
    locmem.fail_next(surely_not_sent())
    request(channel="call")
    assert [(sms.alias, sms.channel) for sms in outbox] == [("caller", "call")]


def test_passwordless_call_me_instead_answers_alike_for_unknown_numbers(
    sms2fa_settings, user, outbox
):
    providers(sms2fa_settings, channels=("sms", "call"))
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    answers = []
    for phone in (PHONE, "+46701234599"):
        client = Client()
        created = api_post(client, "challenges/", {"phone": phone, "purpose": "passwordless"})
        called = api_post(client, f"challenges/{created.json()['id']}/resend/", {"channel": "call"})
        answers.append((created.status_code, called.status_code, sorted(called.json())))
        assert called.json()["channel"] == "call"
    assert answers[0] == answers[1]
    assert [(sms.to, sms.channel) for sms in outbox] == [(PHONE, "sms"), (PHONE, "call")]


def test_the_code_page_offers_call_me_instead(sms2fa_settings, user, outbox):
    providers(sms2fa_settings, channels=("sms", "call"))
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    client = Client()
    response = client.post(
        reverse("sms2fa:login"), {"username": "alice", "password": "correct horse"}, follow=True
    )
    assert b'name="channel" value="call"' in response.content
    assert b"Call me instead" in response.content
    response = client.post(
        response.request["PATH_INFO"], {"resend": "1", "channel": "call"}, follow=True
    )
    assert response.status_code == 200
    assert [sms.channel for sms in outbox] == ["sms", "call"]
    assert b"We are calling" in response.content
    # Now the page offers the SMS back, not the call.
    assert b'name="channel" value="sms"' in response.content
    assert b'name="channel" value="call"' not in response.content
    # A made-up channel is a clear error, not a 500.
    response = client.post(response.request["PATH_INFO"], {"resend": "1", "channel": "fax"})
    assert response.status_code == 400
    assert len(outbox) == 2


def test_limits_count_per_channel_per_phone(sms2fa_settings, outbox):
    providers(sms2fa_settings, channels=("sms", "call"))
    sms2fa_settings(LIMITS={"phone": ["1/d"]})
    request()
    with pytest.raises(RateLimited):
        request()
    request(channel="call")
    with pytest.raises(RateLimited):
        request(channel="call")
    assert [sms.channel for sms in outbox] == ["sms", "call"]


class CancellingLocmem(locmem.LocmemProvider):
    """A provider-checked provider that allows one verification per number."""

    cancelled: list[str] = []

    def cancel(self, message_id: str) -> bool:
        self.cancelled.append(message_id)
        return True


def test_a_resend_cancels_the_verification_it_replaces(sms2fa_settings, outbox):
    CancellingLocmem.cancelled = []
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": f"{__name__}.CancellingLocmem",
                "OPTIONS": {"mode": "verifies_code", "channels": ("sms", "call")},
            }
        }
    )
    challenge = request()
    first = outbox[0].message_id
    flows.resend_challenge(challenge.pk, channel="call")
    assert CancellingLocmem.cancelled == [first]
    assert [sms.channel for sms in outbox] == ["sms", "call"]
    # The replaced code is dead; the new one works.
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, outbox[0].code)
    flows.verify_challenge(challenge.pk, outbox[1].code)


def test_a_failed_cancel_does_not_stop_the_resend(sms2fa_settings, outbox, monkeypatch):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": f"{__name__}.CancellingLocmem",
                "OPTIONS": {"mode": "verifies_code"},
            }
        }
    )

    def refuse(self, message_id):
        raise ProviderUnavailable(provider_code="503", may_have_sent=False)

    monkeypatch.setattr(CancellingLocmem, "cancel", refuse)
    challenge = request()
    flows.resend_challenge(challenge.pk)
    assert len(outbox) == 2
