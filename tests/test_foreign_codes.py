"""Codes made by another package (allauth, two_factor), sent through this app's
rules: django_sms2fa.foreign.send_foreign_code."""

from __future__ import annotations

import logging

import pytest

from django.db import transaction

from django_sms2fa import signals
from django_sms2fa.exceptions import (
    ChannelUnavailable,
    DeliveryFailed,
    InvalidPhone,
    NumberNotAllowed,
    ProviderLimited,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from django_sms2fa.foreign import allowed_phone, send_foreign_code
from django_sms2fa.models import Challenge, Message, Purpose, Refusal
from django_sms2fa.providers import locmem

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
LOCMEM = "django_sms2fa.providers.locmem.LocmemProvider"
# Made by "the other package": digits, as two_factor's tokens are, and
# letters with a dash, as allauth's default codes are.
DIGITS = "482913"
LETTERS = "KQ7W-X2PM"


def providers(sms2fa_settings, first="text", second=None, **options):
    config = {"default": {"BACKEND": LOCMEM, "OPTIONS": {"mode": first, **options}}}
    if second is not None:
        config["backup"] = {"BACKEND": LOCMEM, "OPTIONS": {"mode": second}}
    sms2fa_settings(PROVIDERS=config, FALLBACKS=["backup"] if second else [])


def send(code=DIGITS, **kwargs):
    kwargs.setdefault("purpose", Purpose.LOGIN)
    return send_foreign_code(phone=kwargs.pop("phone", PHONE), code=code, **kwargs)


def rows():
    return list(Message.objects.order_by("id").values_list("provider", "status"))


def surely_not_sent(**kwargs):
    return ProviderUnavailable(provider_text="503", http_status=503, **kwargs)


def maybe_sent():
    return ProviderUnavailable(provider_text="read timeout", may_have_sent=True)


# ------------------------------------------------------------------ the send


def test_the_code_goes_out_in_the_sms_template_and_is_masked_in_the_audit(outbox, user):
    seen = []

    def receiver(sender, message, **kwargs):
        seen.append(message.pk)

    signals.message_sent.connect(receiver)
    try:
        message = send(LETTERS, user=user, lifetime=180)
    finally:
        signals.message_sent.disconnect(receiver)
    assert [(sms.to, sms.code) for sms in outbox] == [(PHONE, LETTERS)]
    assert LETTERS in outbox[0].text and "3 minutes" in outbox[0].text
    stored = Message.objects.get()
    assert stored.pk == message.pk and seen == [message.pk]
    assert stored.challenge_id is None and stored.status == "sent"
    assert LETTERS not in stored.text_masked and "•" * len(LETTERS) in stored.text_masked
    assert stored.text_masked == outbox[0].text.replace(LETTERS, "•" * len(LETTERS))
    assert not Challenge.objects.exists()  # the other package keeps the code


def test_a_call_goes_to_a_provider_that_calls(sms2fa_settings, outbox):
    providers(sms2fa_settings, channels=("sms", "call"))
    send(channel="call")
    assert [sms.channel for sms in outbox] == ["call"]
    assert Message.objects.get().channel == "call"


def test_no_provider_that_calls_is_refused_before_anything_is_counted(send_limits, outbox):
    with pytest.raises(ChannelUnavailable):
        send(channel="call")
    send()  # the number's budget is intact
    assert len(outbox) == 1


def test_a_bad_number_is_refused():
    with pytest.raises(InvalidPhone):
        send(phone="not a number")
    assert not Message.objects.exists()


# ---------------------------------------------------------------- the limits


def test_the_send_limits_refuse_and_nothing_goes_out(sms2fa_settings, outbox, user):
    sms2fa_settings(LIMITS={"phone": ["1/30s"]})
    send(user=user)
    with pytest.raises(RateLimited) as refused:
        send(user=user)
    assert refused.value.retry_after > 0
    assert len(outbox) == 1 and Message.objects.count() == 1
    assert Refusal.objects.get().reason == "rate_limited"


def test_a_count_without_a_send_spends_the_same_budget(sms2fa_settings, outbox):
    """What a number without an account gets (deliver=False) counts like a
    real code, so the limits answer alike for every number."""
    sms2fa_settings(LIMITS={"phone": ["1/30s"]})
    assert send(purpose=Purpose.PASSWORDLESS, deliver=False) is None
    assert outbox == [] and not Message.objects.exists()
    with pytest.raises(RateLimited):
        send(purpose=Purpose.PASSWORDLESS)
    assert outbox == []


def test_a_region_this_site_does_not_send_to_is_refused(sms2fa_settings, outbox):
    sms2fa_settings(ALLOWED_REGIONS=["SE"])
    with pytest.raises(NumberNotAllowed):
        send(phone="+12025550143")
    assert outbox == [] and Refusal.objects.get().reason == "number_not_allowed"
    assert allowed_phone("070-123 45 67") == PHONE
    with pytest.raises(NumberNotAllowed):
        allowed_phone("+12025550143")


def test_a_send_that_surely_failed_gives_its_cooldown_back(sms2fa_settings, outbox, user):
    providers(sms2fa_settings)
    sms2fa_settings(LIMITS={"phone": ["1/30s"]})
    locmem.fail_next(surely_not_sent())
    with pytest.raises(DeliveryFailed):
        send(user=user)
    send(user=user)  # asked again at once
    assert len(outbox) == 1


def test_an_anonymous_send_that_failed_keeps_its_cooldown(sms2fa_settings, outbox):
    providers(sms2fa_settings)
    sms2fa_settings(LIMITS={"phone": ["1/30s"]})
    locmem.fail_next(surely_not_sent())
    with pytest.raises(DeliveryFailed):
        send(purpose=Purpose.PASSWORDLESS)
    with pytest.raises(RateLimited):
        send(purpose=Purpose.PASSWORDLESS)


# ------------------------------------------------------------------ failover


def test_surely_not_sent_fails_over_with_the_same_code(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "text")
    locmem.fail_next(surely_not_sent())
    message = send()
    assert [(sms.alias, sms.code) for sms in outbox] == [("backup", DIGITS)]
    assert rows() == [("default", "failed"), ("backup", "sent")]
    assert message.provider == "backup"


def test_an_uncertain_send_is_followed_only_by_the_same_code(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "code")
    locmem.fail_next(maybe_sent())
    send()
    assert [sms.code for sms in locmem.maybe_sent] == [DIGITS]
    assert [(sms.alias, sms.code) for sms in outbox] == [("backup", DIGITS)]
    assert rows() == [("default", "unknown"), ("backup", "sent")]


def test_an_uncertain_send_with_nothing_after_it_is_not_a_failure(sms2fa_settings, outbox):
    providers(sms2fa_settings)
    locmem.fail_next(maybe_sent())
    message = send()
    assert message.status == "unknown" and rows() == [("default", "unknown")]


def test_no_failover_to_a_provider_that_checks_its_own_codes(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "verifies_code")
    locmem.fail_next(surely_not_sent())
    with pytest.raises(DeliveryFailed):
        send()
    assert outbox == [] and rows() == [("default", "failed")]


@pytest.mark.parametrize("mode", ["verifies_code", "returns_code"])
def test_a_route_to_a_provider_that_makes_its_codes_goes_to_the_fallback(
    sms2fa_settings, outbox, mode
):
    providers(sms2fa_settings, mode, "text")
    send()
    assert [(sms.alias, sms.code) for sms in outbox] == [("backup", DIGITS)]
    assert rows() == [("backup", "sent")]


def test_only_providers_that_make_their_codes_is_a_failure_before_any_count(
    sms2fa_settings, send_limits, outbox
):
    providers(sms2fa_settings, "verifies_code")
    with pytest.raises(DeliveryFailed):
        send()
    assert outbox == [] and not Message.objects.exists() and not Refusal.objects.exists()


def test_a_provider_that_takes_only_digits_is_skipped_for_letters(sms2fa_settings, outbox):
    providers(sms2fa_settings, "code", "text")
    send(LETTERS)
    assert [sms.alias for sms in outbox] == ["backup"]
    send(DIGITS)
    assert [sms.alias for sms in outbox] == ["backup", "default"]


def test_a_code_longer_than_a_provider_takes_skips_it(sms2fa_settings, outbox):
    config = {
        "default": {"BACKEND": LOCMEM, "OPTIONS": {"mode": "code"}},
        "backup": {"BACKEND": LOCMEM},
    }
    sms2fa_settings(PROVIDERS=config, FALLBACKS=["backup"])
    from django_sms2fa.providers import get_provider

    get_provider("default").capabilities = locmem.Capabilities(accepts_code=True, max_code_length=4)
    send(DIGITS)
    assert [sms.alias for sms in outbox] == ["backup"]


def test_a_refused_message_is_not_tried_elsewhere(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "text")
    locmem.fail_next(ProviderRejected(provider_code="21211", provider_text="invalid To"))
    with pytest.raises(DeliveryFailed):
        send()
    assert outbox == [] and rows() == [("default", "failed")]


def test_a_providers_own_limit_is_a_rate_limit(sms2fa_settings, outbox):
    providers(sms2fa_settings, "text", "text")
    locmem.fail_next(ProviderUnavailable(provider_limit="send", retry_after=90))
    with pytest.raises(ProviderLimited) as limited:
        send()
    assert limited.value.retry_after == 90 and outbox == []


# --------------------------------------------------------------- transactions


def test_inside_a_transaction_the_provider_is_called_after_the_commit(
    outbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            assert send() is None
            assert outbox == []
    assert [(sms.code, sms.in_transaction) for sms in outbox] == [(DIGITS, False)]
    assert Message.objects.count() == 1


# --------------------------------------------------------------------- leaks


def test_the_code_never_reaches_the_logs_or_the_audit(sms2fa_settings, outbox, caplog):
    providers(sms2fa_settings, "text", "text")
    code = "731904"
    # A provider that echoes our request back in its error.
    locmem.fail_next(surely_not_sent(provider_code=code))
    echo = f"timeout sending {code}"
    locmem.fail_next(ProviderUnavailable(provider_text=echo, may_have_sent=True))
    with caplog.at_level(logging.DEBUG):
        send(code)
        sms2fa_settings(LIMITS={"phone": ["1/30s"]})
        send(code, purpose=Purpose.PASSWORDLESS)
        with pytest.raises(RateLimited):
            send(code, purpose=Purpose.PASSWORDLESS)
    assert [sms.code for sms in outbox] == [code]
    assert code not in caplog.text and caplog.records
    for message in Message.objects.all():
        for field in ("text_masked", "error_code", "error_text", "provider_status"):
            assert code not in getattr(message, field)
