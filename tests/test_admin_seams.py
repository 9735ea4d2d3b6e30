"""The audit admin as an attacker inside the staff would use it.

1. A full phone number is personal data: staff who may only *view* the audit
   see it masked on every admin page (lists, change pages, inlines, CSV,
   statistics); only the ``django_sms2fa.view_full_phone`` permission shows it,
   on one object's page at a time, and each showing is recorded. Nor can a
   masked number (or a code hash) be read back through the changelist's URL
   lookups (``?phone__startswith=``), one digit at a time.
2. The purge permission deletes only what ``sms2fa_purge`` would (rows older
   than ``RETENTION_DAYS``), never a fresh row one by one; every deletion, in
   the admin or by the command, leaves a record of its own, which nobody can
   change or delete in the admin.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import phonenumbers
import pytest

from django.contrib import admin
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from django_sms2fa.models import (
    Challenge,
    ChallengeStatus,
    DeviceEvent,
    Message,
    PhoneDevice,
    Purpose,
    Refusal,
)

from .admin_support import make_staff

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.admin_support")]

PHONE = "+46701234567"
STAFF_IP = "198.51.100.23"
APP = "django_sms2fa"


def url(name: str, *args) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


def every_form_of(e164: str) -> set[str]:
    """The number as anyone would write it: E.164, international, national,
    RFC 3966, and its bare digits with and without the country code or the
    trunk prefix."""
    number = phonenumbers.parse(e164, None)
    formats = phonenumbers.PhoneNumberFormat
    forms = {
        phonenumbers.format_number(number, getattr(formats, kind))
        for kind in ("E164", "INTERNATIONAL", "NATIONAL", "RFC3966")
    }
    national = str(number.national_number)
    forms |= {e164.lstrip("+"), national, "0" + national, "00" + e164.lstrip("+")}
    forms |= {form.replace(" ", "-") for form in forms} | {form.replace("-", "") for form in forms}
    return {form for form in forms if len(re.sub(r"\D", "", form)) >= 8}


def shown_forms(body: str, e164: str = PHONE) -> set[str]:
    return {form for form in every_form_of(e164) if form in body}


def body_of(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode()


def audit_model():
    """The app's audit record model (an ImportError fails the test on code without one)."""
    from django_sms2fa.models import AuditRecord

    return AuditRecord


def old(days: float) -> timezone.datetime:
    return timezone.now() - timedelta(days=days)


def make_challenge(created, *, status=ChallengeStatus.PENDING, **fields) -> Challenge:
    """A login challenge for PHONE created at ``created``, with its one SMS."""
    row = Challenge.objects.create(
        id=uuid.uuid4(),
        phone=PHONE,
        region="SE",
        purpose=Purpose.LOGIN,
        status=status,
        max_attempts=5,
        sends=1,
        created_at=created,
        expires_at=created + timedelta(minutes=5),
        **fields,
    )
    Message.objects.create(
        challenge=row,
        phone=PHONE,
        provider="default",
        provider_message_id=uuid.uuid4().hex,
        status="sent",
        created_at=created,
        text_masked="Your verification code is ••••••.",
    )
    return row


@pytest.fixture
def history(user):
    """Every kind of audit row about PHONE, the number also echoed in a
    provider's error text and in the device's name. Made directly, as the
    flows would leave them, so only the admin is under test here."""
    now = timezone.now()
    device = PhoneDevice.objects.create(
        user=user, number=PHONE, name=f"Work phone {PHONE}", confirmed=True
    )
    for action in ("added", "confirmed"):
        DeviceEvent.objects.create(
            created_at=now, action=action, device=device, user=user, number=PHONE
        )
    challenge = make_challenge(now, user=user, device=device)
    failed = make_challenge(now, user=user, status=ChallengeStatus.UNDELIVERABLE)
    # What a provider echoes back: the destination, in its own format.
    Message.objects.filter(challenge=failed).update(
        status="failed",
        error_code="provider_unavailable",
        error_text="Destination 46701234567 (070-123 45 67) rejected",
    )
    Message.objects.create(phone=PHONE, provider="default", created_at=now, text_masked="test SMS")
    Refusal.objects.create(
        created_at=now, reason="rate_limited", limit="phone", phone=PHONE, user=user
    )
    return challenge


@pytest.fixture
def viewer(django_user_model):
    """Staff who may view every model of the app, and nothing more."""
    from django.contrib.auth.models import Permission

    user = make_staff(django_user_model, "viewer")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label=APP, codename__startswith="view_"
        ).exclude(codename="view_full_phone")
    )
    return user


def every_admin_page() -> dict[str, str]:
    """The changelist and every object's change page of every model of the
    app registered in the admin, plus the CSV export and the statistics."""
    pages = {"csv": url("challenge_export"), "stats": url("challenge_stats")}
    for model in admin.site._registry:
        if model._meta.app_label != APP:
            continue
        name = model._meta.model_name
        pages[f"{name} list"] = url(f"{name}_changelist")
        for pk in model._default_manager.values_list("pk", flat=True):
            pages[f"{name} {pk}"] = url(f"{name}_change", pk)
            pages[f"{name} {pk} history"] = url(f"{name}_history", pk)
    return pages


# ------------------------------------------------------------- full numbers


@pytest.mark.parametrize("username", ["alice", "0701234567"])
def test_view_only_staff_never_see_a_full_number(client, viewer, user, history, username):
    """Every page, also where the site uses phone numbers as usernames."""
    user.username = username
    user.save()
    client.force_login(viewer)
    pages = every_admin_page()
    kinds = {name.split()[0] for name in pages}
    assert {"challenge", "message", "refusal", "deviceevent", "phonedevice"} <= kinds
    leaks = {}
    for name, address in pages.items():
        response = client.get(address)
        assert response.status_code == 200, name
        if found := shown_forms(body_of(response)):
            leaks[name] = sorted(found)
    print(
        f"\npages rendered for a view-only staff member: {len(pages)}; with a full number: {leaks}"
    )
    assert leaks == {}
    # ... and showing them nothing is not a "full number seen".
    assert not audit_model().objects.filter(action="viewed_full_phone").exists()


def test_the_leak_check_sees_a_number_on_a_page(client, admin_user, history):
    """The check above can fail: the page of a permitted user shows the number."""
    client.force_login(admin_user)
    body = body_of(client.get(url("challenge_change", history.pk)))
    assert PHONE in shown_forms(body)


def test_the_number_forms_searched_for():
    forms = every_form_of(PHONE)
    assert {"+46701234567", "46701234567", "0701234567", "070-123 45 67", "701234567"} <= forms


def test_view_only_staff_see_the_masked_number(client, viewer, history):
    client.force_login(viewer)
    body = body_of(client.get(url("challenge_change", history.pk)))
    assert "+46•••••••67" in body


@pytest.mark.parametrize("who", ["permitted", "superuser"])
def test_the_permission_shows_the_number_and_records_who_saw_it(
    client, django_user_model, admin_user, history, who
):
    AuditRecord = audit_model()
    if who == "superuser":
        person = admin_user
    else:
        person = make_staff(django_user_model, "support", "view_challenge", "view_full_phone")
    assert person.has_perm(f"{APP}.view_full_phone")
    client.force_login(person)
    response = client.get(url("challenge_change", history.pk), REMOTE_ADDR=STAFF_IP)
    assert response.status_code == 200
    assert PHONE in body_of(response)
    record = AuditRecord.objects.get(action="viewed_full_phone")
    assert record.actor == person
    assert record.actor_repr == person.get_username()
    assert record.client_ip == STAFF_IP
    assert (record.object_type, record.object_id) == (f"{APP}.challenge", str(history.pk))
    assert record.phone == PHONE
    assert abs(record.created_at - timezone.now()) < timedelta(minutes=1)
    # Each showing is one record.
    client.get(url("challenge_change", history.pk), REMOTE_ADDR=STAFF_IP)
    assert AuditRecord.objects.filter(action="viewed_full_phone").count() == 2


def test_every_object_page_records_what_it_showed(client, admin_user, history):
    AuditRecord = audit_model()
    client.force_login(admin_user)
    opened = 0
    for model in (Challenge, Message, Refusal, DeviceEvent, PhoneDevice):
        for obj in model._default_manager.all():
            assert client.get(url(f"{model._meta.model_name}_change", obj.pk)).status_code == 200
            opened += 1
            record = AuditRecord.objects.filter(action="viewed_full_phone").latest("pk")
            assert (record.object_type, record.object_id) == (
                model._meta.label_lower,
                str(obj.pk),
            )
    assert AuditRecord.objects.filter(action="viewed_full_phone").count() == opened


def test_lists_csv_and_statistics_stay_masked_for_everyone_and_record_nothing(
    client, admin_user, history
):
    """A permitted user sees full numbers one object at a time, never in bulk."""
    client.force_login(admin_user)
    for name, address in every_admin_page().items():
        if name in ("csv", "stats") or name.endswith(" list"):
            assert shown_forms(body_of(client.get(address))) == set(), name
    assert not audit_model().objects.exists()


def test_statistics_mask_a_prefix_as_long_as_a_number(client, viewer, history, sms2fa_settings):
    sms2fa_settings(PUMPING={"PREFIX_DIGITS": 11})
    client.force_login(viewer)
    body = body_of(client.get(url("challenge_stats")))
    assert PHONE not in body
    assert "+46•••••••67" in body


def test_the_audit_records_show_numbers_masked(client, admin_user, history):
    AuditRecord = audit_model()
    client.force_login(admin_user)
    client.get(url("challenge_change", history.pk))
    record = AuditRecord.objects.get()
    for address in (url("auditrecord_changelist"), url("auditrecord_change", record.pk)):
        body = body_of(client.get(address))
        assert shown_forms(body) == set(), address
        assert "+46•••••••67" in body
    # Looking at the record did not add one.
    assert AuditRecord.objects.count() == 1


def test_staff_who_remove_a_phone_do_not_see_its_number(client, django_user_model, history):
    """The delete confirmation and the device list with its action checkboxes
    (labelled with each device's name) stay masked too."""
    device = PhoneDevice.objects.get()
    manager = make_staff(django_user_model, "manager", "view_phonedevice", "delete_phonedevice")
    client.force_login(manager)
    for address in (url("phonedevice_changelist"), url("phonedevice_delete", device.pk)):
        response = client.get(address)
        assert response.status_code == 200
        assert shown_forms(body_of(response)) == set(), address
    confirm = client.post(
        url("phonedevice_changelist"),
        {"action": "delete_selected", "_selected_action": [device.pk]},
    )
    assert confirm.status_code == 200 and shown_forms(body_of(confirm)) == set()
    removed = client.post(url("phonedevice_delete", device.pk), {"post": "yes"})
    assert removed.status_code == 302
    assert not PhoneDevice.objects.filter(pk=device.pk).exists()
    notice = " ".join(flashed(removed))
    assert "was deleted" in notice and shown_forms(notice) == set()
    # The next page shows that notice and "Recent actions" (the admin's log).
    assert shown_forms(body_of(client.get(removed["Location"]))) == set()
    assert shown_forms(body_of(client.get(reverse("admin:index")))) == set()


# ---------------------------------------------------------------- deletion


def make_row(kind: str, created):
    """A row of ``kind`` created at ``created``, as the purge would judge it."""
    if kind == "challenge":
        return make_challenge(created)
    if kind == "message":
        return Message.objects.create(phone=PHONE, provider="default", created_at=created)
    return Refusal.objects.create(created_at=created, reason="rate_limited", limit="ip")


@pytest.fixture
def purger(client, django_user_model):
    person = make_staff(
        django_user_model,
        "purger",
        "view_challenge",
        "view_message",
        "view_refusal",
        "purge_challenge",
    )
    client.force_login(person)
    return person


def flashed(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


KINDS = ["challenge", "message", "refusal"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_fresh_row_cannot_be_deleted_on_its_page(client, purger, kind):
    row = make_row(kind, old(1 / 1440))  # a minute ago
    model = type(row)
    response = client.post(url(f"{kind}_delete", row.pk), {"post": "yes"}, follow=True)
    assert model.objects.filter(pk=row.pk).exists()
    assert any("retention" in text for text in flashed(response)), flashed(response)
    assert not audit_model().objects.filter(action="deleted_in_admin").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_fresh_row_cannot_be_deleted_in_bulk(client, purger, kind, sms2fa_settings):
    sms2fa_settings(RETENTION_DAYS=30)
    fresh = make_row(kind, old(29))
    stale = make_row(kind, old(31))
    model = type(fresh)
    for step in ({}, {"post": "yes"}):  # the confirmation page, then the confirmation
        response = client.post(
            url(f"{kind}_changelist"),
            {"action": "delete_selected", "_selected_action": [fresh.pk, stale.pk], **step},
            follow=True,
        )
        assert response.status_code == 200
        assert model.objects.filter(pk__in=[fresh.pk, stale.pk]).count() == 2  # nothing
        assert any("retention" in text for text in flashed(response)), flashed(response)
    assert not audit_model().objects.filter(action="deleted_in_admin").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_an_old_row_is_deleted_and_recorded(client, purger, kind, sms2fa_settings):
    sms2fa_settings(RETENTION_DAYS=30)
    AuditRecord = audit_model()
    row = make_row(kind, old(31))
    model = type(row)
    response = client.post(url(f"{kind}_delete", row.pk), {"post": "yes"}, REMOTE_ADDR=STAFF_IP)
    assert response.status_code == 302
    assert not model.objects.filter(pk=row.pk).exists()
    record = AuditRecord.objects.get(action="deleted_in_admin")
    assert record.actor == purger and record.actor_repr == "purger"
    assert record.client_ip == STAFF_IP
    assert record.object_type == model._meta.label_lower
    assert record.object_id == str(row.pk)
    assert record.count == (2 if kind == "challenge" else 1)  # a challenge goes with its SMS
    assert record.cutoff is not None
    assert abs(record.cutoff - old(30)) < timedelta(minutes=1)


def test_old_rows_are_deleted_in_bulk_and_recorded_once(client, purger, sms2fa_settings):
    sms2fa_settings(RETENTION_DAYS=30)
    rows = [make_challenge(old(31 + i)) for i in range(3)]
    response = client.post(
        url("challenge_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [row.pk for row in rows],
            "post": "yes",
        },
        REMOTE_ADDR=STAFF_IP,
    )
    assert response.status_code == 302
    assert not Challenge.objects.exists() and not Message.objects.exists()
    record = audit_model().objects.get(action="deleted_in_admin")
    assert (record.actor, record.client_ip, record.count) == (purger, STAFF_IP, 6)
    assert record.object_type == f"{APP}.challenge"


def test_a_message_goes_with_an_old_challenge_not_by_its_own_age(client, purger, sms2fa_settings):
    """As the purge does: a fresh resend of an old challenge is old; an old
    message of a fresh challenge is not."""
    sms2fa_settings(RETENTION_DAYS=30)
    fresh_challenge = make_challenge(old(1))
    Message.objects.filter(challenge=fresh_challenge).update(created_at=old(40))
    kept = fresh_challenge.messages.get()
    client.post(url("message_delete", kept.pk), {"post": "yes"})
    assert Message.objects.filter(pk=kept.pk).exists()
    old_challenge = make_challenge(old(40))
    Message.objects.filter(challenge=old_challenge).update(created_at=old(1))
    resend = old_challenge.messages.get()
    client.post(url("message_delete", resend.pk), {"post": "yes"})
    assert not Message.objects.filter(pk=resend.pk).exists()


def test_the_purge_command_leaves_a_record(sms2fa_settings):
    sms2fa_settings(RETENTION_DAYS=30)
    AuditRecord = audit_model()
    make_challenge(old(40))
    make_row("refusal", old(40))
    make_challenge(old(1))
    call_command("sms2fa_purge", verbosity=0)
    record = AuditRecord.objects.get(action="purged")
    assert record.count == 3  # a challenge, its message, a refusal
    assert abs(record.cutoff - old(30)) < timedelta(minutes=1)
    assert record.actor is None and "sms2fa_purge" in record.actor_repr
    # A dry run deletes nothing and records nothing.
    call_command("sms2fa_purge", "--dry-run", verbosity=0)
    assert AuditRecord.objects.filter(action="purged").count() == 1


def test_audit_records_cannot_be_changed_or_deleted_in_the_admin(
    client, admin_user, history, sms2fa_settings
):
    AuditRecord = audit_model()
    client.force_login(admin_user)
    client.get(url("challenge_change", history.pk))
    record = AuditRecord.objects.get()
    AuditRecord.objects.filter(pk=record.pk).update(created_at=old(4000))  # past any cutoff
    assert client.get(url("auditrecord_add")).status_code == 403
    assert client.get(url("auditrecord_delete", record.pk)).status_code == 403
    assert client.post(url("auditrecord_delete", record.pk), {"post": "yes"}).status_code == 403
    response = client.post(url("auditrecord_change", record.pk), {"action": "purged"})
    assert response.status_code == 403
    changelist = client.get(url("auditrecord_changelist"))
    actions = changelist.context["cl"].model_admin.get_actions(changelist.wsgi_request)
    assert "delete_selected" not in actions
    client.post(
        url("auditrecord_changelist"),
        {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"},
    )
    record.refresh_from_db()
    assert record.action == "viewed_full_phone"
    # Nor does the purge command take them.
    call_command("sms2fa_purge", "--older-than", "1d", verbosity=0)
    assert AuditRecord.objects.filter(pk=record.pk).exists()


# ------------------------------------------------------- filtering by URL


def reconstruct(client, model: str, field: str, known: str = "+46") -> str:
    """Read a masked number digit by digit through ``?<field>__startswith=``,
    the way any admin changelist accepts lookups on a model's own fields."""
    while len(known) < 16:
        for digit in "0123456789":
            response = client.get(
                url(f"{model}_changelist"), {f"{field}__startswith": known + digit}
            )
            if response.status_code == 200 and response.context["cl"].result_count:
                known += digit
                break
        else:
            return known
    return known


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("challenge", "phone"),
        ("message", "phone"),
        ("refusal", "phone"),
        ("deviceevent", "number"),
        ("phonedevice", "number"),
    ],
)
def test_a_masked_number_cannot_be_read_back_through_url_lookups(
    client, viewer, history, model, field
):
    client.force_login(viewer)
    found = reconstruct(client, model, field)
    print(f"\n{model}.{field}: read back through ?{field}__startswith=: {found!r}")
    assert found != PHONE


@pytest.mark.parametrize(
    "query",
    [
        {"phone__startswith": "+4670"},
        {"phone__regex": "^[+]4670"},
        {"code_hash__startswith": "a"},
        {"device__number__startswith": "+4670"},
        {"device__name__contains": "Work"},
    ],
)
def test_lookups_on_numbers_and_hashes_are_refused(client, viewer, history, query):
    client.force_login(viewer)
    for page in ("challenge_changelist", "challenge_export"):
        response = client.get(url(page), query)
        # Django answers a refused lookup with its "?e=1" redirect or a 400.
        assert response.status_code in (302, 400), (page, response.status_code)
