"""``manage.py sms2fa_add_phone USER PHONE [--confirmed] [--id]``."""

from __future__ import annotations

from io import StringIO

import pytest

from django.core.management import CommandError, call_command

from django_sms2fa.models import DeviceAction, DeviceEvent, PhoneDevice

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"


def run(*args: str) -> str:
    out = StringIO()
    call_command("sms2fa_add_phone", *args, stdout=out)
    return out.getvalue()


def test_adds_an_unconfirmed_phone_by_username(user):
    output = run("alice", "070-123 45 67")
    device = PhoneDevice.objects.get(user=user)
    assert (device.number, device.confirmed) == (PHONE, False)
    assert "unconfirmed" in output and PHONE not in output  # masked
    event = DeviceEvent.objects.get()
    assert (event.action, event.actor_id, event.client_ip) == (DeviceAction.ADDED, None, None)


def test_confirmed_by_id(user, outbox):
    run(str(user.pk), PHONE, "--id", "--confirmed")
    device = PhoneDevice.objects.get(user=user)
    assert device.confirmed
    actions = list(DeviceEvent.objects.order_by("pk").values_list("action", "actor_id"))
    assert actions == [(DeviceAction.ADDED, None), (DeviceAction.CONFIRMED, None)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody", PHONE), "No user with username 'nobody'"),
        (("999999", PHONE, "--id"), "No user with id '999999'"),
        (("x", PHONE, "--id"), "No user with id 'x'"),
        (("alice", "+46 70 ABC 45 67"), "Invalid phone number"),
        (("alice", "12"), "(invalid_phone)"),
    ],
)
def test_clear_errors(user, args, message):
    with pytest.raises(CommandError) as err:
        run(*args)
    assert message in str(err.value)
    assert not PhoneDevice.objects.exists() and not DeviceEvent.objects.exists()


def test_a_number_confirmed_on_another_account(user, other_user):
    PhoneDevice.objects.create(user=other_user, number=PHONE, confirmed=True)
    with pytest.raises(CommandError) as err:
        run("alice", PHONE, "--confirmed")
    assert "already confirmed on another account" in str(err.value)
    assert "phone_confirmed_elsewhere" in str(err.value)
    assert not PhoneDevice.objects.filter(user=user).exists()


def test_already_confirmed_on_this_account(user):
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True)
    with pytest.raises(CommandError) as err:
        run("alice", PHONE, "--confirmed")
    assert "phone_already_enrolled" in str(err.value)


def test_a_number_outside_the_allowed_regions(user, sms2fa_settings):
    sms2fa_settings(ALLOWED_REGIONS=["NO"])
    with pytest.raises(CommandError) as err:
        run("alice", PHONE)
    assert "number_not_allowed" in str(err.value)
