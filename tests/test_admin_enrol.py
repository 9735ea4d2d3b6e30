"""Staff add a phone for a user in the admin, and remove one: each a device
event naming the staff member and their IP; confirmed without a code only
when they tick it."""

from __future__ import annotations

import pytest

from django.urls import reverse

from django_sms2fa import device_flows, signals
from django_sms2fa.models import DeviceAction, DeviceEvent, PhoneDevice

from .admin_support import make_staff

pytestmark = pytest.mark.django_db
admin_urls = pytest.mark.urls("tests.admin_support")

PHONE = "+46701234567"
OTHER_PHONE = "+46709876543"
STAFF_IP = "198.51.100.23"
ADD_URL_NAME = "admin:django_sms2fa_phonedevice_add_for_user"


def add_url() -> str:
    return reverse(ADD_URL_NAME)


def events(**filters) -> list[tuple[str, str, int | None, str | None]]:
    return [
        (e.action, e.number, e.actor_id, e.client_ip)
        for e in DeviceEvent.objects.filter(**filters).order_by("pk")
    ]


@pytest.fixture
def enroller(django_user_model):
    return make_staff(django_user_model, "enroller", "add_phonedevice", "view_phonedevice")


@pytest.fixture
def enroller_client(client, enroller):
    client.force_login(enroller)
    return client


@pytest.fixture
def notices():
    seen: list[tuple[int, str]] = []

    def receiver(sender, user, event, context, **kwargs):
        seen.append((user.pk, event))

    signals.security_event.connect(receiver)
    yield seen
    signals.security_event.disconnect(receiver)


def post_add(client, **data):
    return client.post(add_url(), data, REMOTE_ADDR=STAFF_IP)


@admin_urls
def test_the_page_shows_a_form_and_the_list_links_to_it(enroller_client):
    page = enroller_client.get(add_url())
    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="username"' in body and 'name="phone"' in body and 'name="confirmed"' in body
    listing = enroller_client.get(reverse("admin:django_sms2fa_phonedevice_changelist"))
    assert add_url() in listing.content.decode()


@admin_urls
def test_unconfirmed_by_default_the_user_confirms_later(
    enroller_client, enroller, user, outbox, notices
):
    response = post_add(enroller_client, username="alice", phone="070-123 45 67")
    assert response.status_code == 302, response.content.decode()[:2000]
    device = PhoneDevice.objects.get(user=user)
    assert (device.number, device.confirmed) == (PHONE, False)
    assert events() == [(DeviceAction.ADDED, PHONE, enroller.pk, STAFF_IP)]
    assert outbox == [] and notices == []  # nothing happened to the sign-in factors yet
    # The user confirms it themselves, with a code: the same device.
    same, challenge = device_flows.enrol_phone(user, PHONE, verified_session=False)
    assert same.pk == device.pk
    device_flows.confirm_phone(user, device.pk, challenge.pk, outbox[-1].code)
    device.refresh_from_db()
    assert device.confirmed
    assert notices == [(user.pk, "phone_added")]


@admin_urls
def test_confirmed_only_when_ticked_and_the_tick_is_recorded(
    enroller_client, enroller, user, outbox, notices
):
    PhoneDevice.objects.create(user=user, number=OTHER_PHONE, confirmed=True)
    response = post_add(enroller_client, username="alice", phone=PHONE, confirmed="on")
    assert response.status_code == 302
    device = PhoneDevice.objects.get(user=user, number=PHONE)
    assert device.confirmed
    assert events(device=device) == [
        (DeviceAction.ADDED, PHONE, enroller.pk, STAFF_IP),
        (DeviceAction.CONFIRMED, PHONE, enroller.pk, STAFF_IP),
    ]
    # Told as for a phone the user confirms: by email and on the other phone.
    assert notices == [(user.pk, "phone_added")]
    assert [sms.to for sms in outbox] == [OTHER_PHONE]
    # The message after the redirect shows the number masked only.
    page = enroller_client.get(response["Location"]).content.decode()
    assert "+46•••••••67" in page and PHONE not in page


@admin_urls
def test_a_number_confirmed_on_another_account_is_not_taken(
    enroller_client, user, other_user, notices
):
    theirs = PhoneDevice.objects.create(user=other_user, number=PHONE, confirmed=True)
    response = post_add(enroller_client, username="alice", phone=PHONE, confirmed="on")
    assert response.status_code == 200
    assert "already confirmed on another account" in response.content.decode()
    theirs.refresh_from_db()
    assert theirs.confirmed and theirs.user_id == other_user.pk
    assert not PhoneDevice.objects.filter(user=user).exists()
    assert events() == [] and notices == []


def test_the_flow_refuses_a_number_of_another_account_but_may_leave_it_pending(
    user, other_user, admin_user
):
    PhoneDevice.objects.create(user=other_user, number=PHONE, confirmed=True)
    with pytest.raises(device_flows.PhoneConfirmedElsewhere):
        device_flows.add_phone_for_user(user, PHONE, actor=admin_user, confirmed=True)
    # Unconfirmed is fine: its holder's code decides later (confirm_phone's rules).
    pending = device_flows.add_phone_for_user(user, PHONE, actor=admin_user, confirmed=False)
    assert not pending.confirmed
    with pytest.raises(device_flows.PhoneAlreadyEnrolled):
        device_flows.add_phone_for_user(other_user, PHONE, actor=admin_user, confirmed=True)


def test_the_flow_confirms_a_pending_device_of_the_user(user, admin_user):
    pending = PhoneDevice.objects.create(user=user, number=PHONE, confirmed=False)
    device = device_flows.add_phone_for_user(
        user, PHONE, actor=admin_user, confirmed=True, client_ip=STAFF_IP
    )
    assert device.pk == pending.pk and device.confirmed
    assert events() == [(DeviceAction.CONFIRMED, PHONE, admin_user.pk, STAFF_IP)]


def test_the_flow_refuses_numbers_no_code_can_reach(user, admin_user, sms2fa_settings):
    from django_sms2fa.exceptions import NumberNotAllowed

    sms2fa_settings(ALLOWED_REGIONS=["NO"])
    with pytest.raises(NumberNotAllowed):
        device_flows.add_phone_for_user(user, PHONE, actor=admin_user, confirmed=True)
    assert not PhoneDevice.objects.exists()


@admin_urls
@pytest.mark.parametrize(
    ("data", "field_text"),
    [
        ({"username": "nobody", "phone": PHONE}, "There is no user with this username."),
        ({"username": "alice", "phone": "+46 70 ABC 45 67"}, "Enter a valid phone number"),
        ({"username": "alice", "phone": "\x00"}, "Null characters are not allowed"),
        ({"username": "alice", "phone": "9" * 500}, "Ensure this value has at most 64"),
    ],
)
def test_bad_input_is_a_form_error(enroller_client, user, data, field_text):
    response = post_add(enroller_client, **data)
    assert response.status_code == 200
    assert field_text in response.content.decode()
    assert not PhoneDevice.objects.exists() and events() == []


@admin_urls
def test_the_add_permission_is_required(client, django_user_model, user):
    viewer = make_staff(django_user_model, "viewer", "view_phonedevice", "change_phonedevice")
    client.force_login(viewer)
    assert client.get(add_url()).status_code == 403
    assert post_add(client, username="alice", phone=PHONE, confirmed="on").status_code == 403
    listing = client.get(reverse("admin:django_sms2fa_phonedevice_changelist"))
    assert add_url() not in listing.content.decode()
    assert not PhoneDevice.objects.exists() and events() == []


@admin_urls
def test_non_staff_are_refused(client, django_user_model, user):
    from django.contrib.auth.models import Permission

    member = django_user_model.objects.create_user(username="member", password="member-pass")
    member.user_permissions.add(Permission.objects.get(codename="add_phonedevice"))
    client.force_login(member)
    response = post_add(client, username="alice", phone=PHONE, confirmed="on")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not PhoneDevice.objects.exists() and events() == []


@admin_urls
def test_djangos_own_add_form_stays_closed(enroller_client):
    # The model form would write any row (a confirmed number, no event).
    assert enroller_client.get(reverse("admin:django_sms2fa_phonedevice_add")).status_code == 403


@admin_urls
def test_staff_remove_a_phone_and_it_is_recorded(client, django_user_model, user, notices):
    remover = make_staff(django_user_model, "remover", "view_phonedevice", "delete_phonedevice")
    device = PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True)
    client.force_login(remover)
    response = client.post(
        reverse("admin:django_sms2fa_phonedevice_delete", args=[device.pk]),
        {"post": "yes"},
        REMOTE_ADDR=STAFF_IP,
    )
    assert response.status_code == 302
    assert not PhoneDevice.objects.exists()
    assert events() == [(DeviceAction.REMOVED, PHONE, remover.pk, STAFF_IP)]
    assert notices == [(user.pk, "phone_removed")]


@admin_urls
def test_removing_needs_the_delete_permission(enroller_client, user):
    device = PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True)
    response = enroller_client.post(
        reverse("admin:django_sms2fa_phonedevice_delete", args=[device.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert PhoneDevice.objects.filter(pk=device.pk).exists() and events() == []
