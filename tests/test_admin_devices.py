"""Phone devices in the admin, and the device events every change records."""

from __future__ import annotations

import pytest

from django.urls import reverse

from django_sms2fa import device_flows, ratelimit
from django_sms2fa.models import DeviceAction, DeviceEvent, PhoneDevice
from django_sms2fa.types import ClientInfo

from .admin_support import make_staff

pytestmark = pytest.mark.django_db
admin_urls = pytest.mark.urls("tests.admin_support")

PHONE = "+46701234567"
NEW_PHONE = "+46709876543"
IP = "203.0.113.7"
STAFF_IP = "198.51.100.9"


def url(name: str, *args) -> str:
    return reverse(f"admin:django_sms2fa_{name}", args=args)


def events(**filters) -> list[tuple[str, str, int | None, str | None]]:
    return [
        (e.action, e.number, e.actor_id, e.client_ip)
        for e in DeviceEvent.objects.filter(**filters).order_by("pk")
    ]


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)


@pytest.fixture
def manager(django_user_model):
    return make_staff(
        django_user_model,
        "manager",
        "view_phonedevice",
        "change_phonedevice",
        "delete_phonedevice",
        "view_deviceevent",
    )


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


def lock_out(user) -> None:
    from django_sms2fa.conf import app_settings

    for _ in range(app_settings.LOCKOUT_THRESHOLD):
        ratelimit.record_failure(f"user:{user.pk}")


# ------------------------------------------------------------------ the flows


def test_adding_and_confirming_a_phone_are_recorded(user, outbox):
    client = ClientInfo(ip=IP)
    device, challenge = device_flows.enrol_phone(user, PHONE, verified_session=True, client=client)
    device_flows.confirm_phone(user, device.pk, challenge.pk, outbox[-1].code, client=client)
    assert events(device=device) == [
        (DeviceAction.ADDED, PHONE, user.pk, IP),
        (DeviceAction.CONFIRMED, PHONE, user.pk, IP),
    ]
    assert DeviceEvent.objects.filter(device=device).exclude(user=user).count() == 0


def test_replacing_a_phone_records_both_sides_and_keeps_the_old_number(user, device, outbox):
    client = ClientInfo(ip=IP)
    new, challenge = device_flows.enrol_phone(
        user, NEW_PHONE, verified_session=True, replaces=device.pk, client=client
    )
    device_flows.confirm_phone(user, new.pk, challenge.pk, outbox[-1].code, client=client)
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()
    assert events(user=user) == [
        (DeviceAction.ADDED, NEW_PHONE, user.pk, IP),
        (DeviceAction.CONFIRMED, NEW_PHONE, user.pk, IP),
        (DeviceAction.REPLACED, PHONE, user.pk, IP),
    ]
    # The replaced device is gone; its event stays, with its number.
    assert DeviceEvent.objects.get(action=DeviceAction.REPLACED).device_id is None


def test_removing_a_phone_is_recorded(user, device):
    device_flows.remove_phone(user, device.pk, verified_session=True, client=ClientInfo(ip=IP))
    assert events(user=user) == [(DeviceAction.REMOVED, PHONE, user.pk, IP)]


def test_a_refused_removal_records_nothing(user, device):
    from django_sms2fa.exceptions import SecondFactorRequired

    with pytest.raises(SecondFactorRequired):
        device_flows.remove_phone(user, device.pk, verified_session=False)
    assert events() == []


def test_the_api_records_the_client_ip(client, user, outbox):
    client.force_login(user)
    meta = {"REMOTE_ADDR": IP}
    answer = client.post(
        "/api/2fa/devices/", {"phone": PHONE}, content_type="application/json", **meta
    ).json()
    device_id, challenge_id = answer["device"]["id"], answer["challenge"]["id"]
    response = client.post(
        f"/api/2fa/devices/{device_id}/confirm/",
        {"challenge": challenge_id, "code": outbox[-1].code},
        content_type="application/json",
        **meta,
    )
    assert response.status_code == 200
    assert client.delete(f"/api/2fa/devices/{device_id}/", **meta).status_code == 204
    assert events(user=user) == [
        (DeviceAction.ADDED, PHONE, user.pk, IP),
        (DeviceAction.CONFIRMED, PHONE, user.pk, IP),
        (DeviceAction.REMOVED, PHONE, user.pk, IP),
    ]


def test_unlock_and_reset_flows(user, device, admin_user):
    assert device_flows.unlock_device(device, actor=admin_user, client_ip=STAFF_IP) is False
    assert device_flows.reset_device_failures(device, actor=admin_user, client_ip=STAFF_IP) is False
    assert events() == []  # nothing to do, nothing recorded
    lock_out(user)
    assert device_flows.lock_state(device).locked_for > 0
    assert device_flows.unlock_device(device, actor=admin_user, client_ip=STAFF_IP) is True
    assert device_flows.lock_state(device) == ratelimit.LockState(0, 0)
    ratelimit.record_failure(f"user:{user.pk}")
    assert device_flows.reset_device_failures(device, actor=admin_user, client_ip=STAFF_IP)
    assert device_flows.lock_state(device).failures == 0
    assert events(device=device) == [
        (DeviceAction.UNLOCKED, PHONE, admin_user.pk, STAFF_IP),
        (DeviceAction.FAILURES_RESET, PHONE, admin_user.pk, STAFF_IP),
    ]


# ------------------------------------------------------------------ the admin


@admin_urls
def test_device_list_shows_lock_state_and_failures(manager_client, user, device):
    response = manager_client.get(url("phonedevice_changelist"))
    html = response.content.decode()
    assert "+46•••••••67" in html and "not locked" in html
    lock_out(user)
    html = manager_client.get(url("phonedevice_changelist")).content.decode()
    assert "locked for" in html
    assert '<td class="field-failures">10</td>' in html


@admin_urls
@pytest.mark.parametrize("action", ["unlock", "reset_failures"])
def test_admin_actions_unlock_and_record(manager_client, manager, user, device, action):
    lock_out(user)
    response = manager_client.post(
        url("phonedevice_changelist"),
        {"action": action, "_selected_action": [device.pk]},
        REMOTE_ADDR=STAFF_IP,
    )
    assert response.status_code == 302
    assert device_flows.lock_state(device) == ratelimit.LockState(0, 0)
    expected = DeviceAction.UNLOCKED if action == "unlock" else DeviceAction.FAILURES_RESET
    assert events(device=device) == [(expected, PHONE, manager.pk, STAFF_IP)]


@admin_urls
def test_viewers_cannot_unlock(client, django_user_model, user, device):
    client.force_login(make_staff(django_user_model, "viewer", "view_phonedevice"))
    lock_out(user)
    client.post(
        url("phonedevice_changelist"), {"action": "unlock", "_selected_action": [device.pk]}
    )
    assert device_flows.lock_state(device).locked_for > 0
    assert events() == []


@admin_urls
def test_devices_cannot_be_added_or_edited_in_the_admin(manager_client, device):
    assert manager_client.get(url("phonedevice_add")).status_code == 403
    manager_client.post(url("phonedevice_change", device.pk), {"number": NEW_PHONE})
    device.refresh_from_db()
    assert device.number == PHONE


@admin_urls
def test_removing_a_device_in_the_admin_is_recorded_and_stays_visible(
    manager_client, manager, user, device
):
    device_flows.record_event(device, DeviceAction.ADDED, actor=user, client_ip=IP)
    page = manager_client.get(url("phonedevice_change", device.pk)).content.decode()
    assert "Added" in page  # the events inline under the device
    response = manager_client.post(
        url("phonedevice_delete", device.pk), {"post": "yes"}, REMOTE_ADDR=STAFF_IP
    )
    assert response.status_code == 302
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()
    assert events(user=user)[-1] == (DeviceAction.REMOVED, PHONE, manager.pk, STAFF_IP)
    listing = manager_client.get(url("deviceevent_changelist"), {"q": "070-123 45 67"})
    assert {e.action for e in listing.context["cl"].result_list} == {"added", "removed"}
    assert "manager" in listing.content.decode()


@admin_urls
def test_bulk_removal_records_each_device(manager_client, manager, user, device):
    other = PhoneDevice.objects.create(user=user, number=NEW_PHONE, confirmed=True)
    response = manager_client.post(
        url("phonedevice_changelist"),
        {"action": "delete_selected", "_selected_action": [device.pk, other.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert sorted(e[:3] for e in events(user=user)) == [
        (DeviceAction.REMOVED, PHONE, manager.pk),
        (DeviceAction.REMOVED, NEW_PHONE, manager.pk),
    ]


@admin_urls
def test_device_search_by_phone_and_username(manager_client, user, other_user, device):
    PhoneDevice.objects.create(user=other_user, number=NEW_PHONE, confirmed=True)
    for term in ("070-123 45 67", "alice"):
        found = manager_client.get(url("phonedevice_changelist"), {"q": term})
        assert [d.pk for d in found.context["cl"].result_list] == [device.pk]
