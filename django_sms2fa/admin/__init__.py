"""The audit admin: who got a code, when, through which provider, and what happened.

Challenges, their messages, refusals and device events are read-only; rows
are deleted only with the ``django_sms2fa.purge_challenge`` permission, and
only those ``sms2fa_purge`` would delete (older than ``RETENTION_DAYS``); each
deletion is an :class:`~django_sms2fa.models.AuditRecord`. Staff need the
*view* permission to see them. A code or a code hash is never shown — not
even to superusers: no column, field, inline or export reads ``code_hash``.
Phone numbers are masked on every page (lists, change pages, inlines, CSV,
statistics); only ``django_sms2fa.view_full_phone`` shows them, on one
object's page at a time, and each showing is an audit record too. Phone
devices can be unlocked, have their failures reset, be removed, or be added
for a user (``admin/enrol.py``); each of these is recorded as a device event
with who and from where (``device_flows``).

Every changelist here stays fast on millions of rows: see ``admin/base.py``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import device_flows, retention
from ..client import client_ip
from ..models import AuditRecord, Challenge, DeviceEvent, Message, PhoneDevice, Refusal
from ..phones import mask_phone
from .base import (
    AuditAdmin,
    AuditPaginator,
    ProviderFilter,
    ReadOnlyInline,
    any_of,
    as_ip,
    as_phone,
    as_uuid,
    masked_display,
    masked_link,
    masked_user,
    redact_phone,
    user_ids,
)
from .export import stream_csv
from .methods import MethodEventAdmin, RecoveryCodeDeviceAdmin, RememberedBrowserAdmin

DATE_FILTER = ("created_at", admin.DateFieldListFilter)


def _label(model: Any, field: str) -> Any:
    return model._meta.get_field(field).verbose_name


def _challenge_link(model_admin: admin.ModelAdmin, challenge_id: Any) -> str:
    if challenge_id is None:
        return "-"
    url = reverse(
        "admin:django_sms2fa_challenge_change",
        args=[challenge_id],
        current_app=model_admin.admin_site.name,
    )
    return format_html('<a href="{}">{}</a>', url, str(challenge_id)[:8])


# ------------------------------------------------------------------ challenges


class MessageInline(ReadOnlyInline):
    model = Message
    fields = readonly_fields = (
        "created_at",
        "provider",
        "channel",
        "provider_message_id",
        "status",
        "provider_status",
        "error_code",
        "error_text",
        "latency_ms",
        "text_masked",
    )
    ordering = ("created_at",)
    # A provider may echo the destination in its error text.
    masked_fields = {"error_text": "error_text_redacted", "text_masked": "text_redacted"}
    error_text_redacted = masked_display(
        "error_text", lambda m: m.phone, _label(Message, "error_text")
    )
    text_redacted = masked_display("text_masked", lambda m: m.phone, _label(Message, "text_masked"))


@admin.register(Challenge)
class ChallengeAdmin(AuditAdmin):
    # The change list adds the Statistics and Export CSV links.
    change_list_template = "django_sms2fa/admin/challenge/change_list.html"
    stats_template = "django_sms2fa/admin/stats.html"
    list_display = (
        "created_at",
        "masked_phone",
        "user_masked",
        "purpose",
        "status",
        "attempts_shown",
        "provider",
        "channel",
        "message_id",
    )
    list_display_links = ("created_at",)
    list_select_related = ("user",)
    list_filter = ("status", "purpose", "channel", ProviderFilter, DATE_FILTER)
    # The search is get_search_results() below; this only turns the box on.
    search_fields = ("phone",)
    search_help_text = _(
        "A phone number (any format), an exact username, a provider message id or a challenge id."
    )
    ordering = ("-created_at",)
    # Sorting by another column would sort the whole table; the filters cover them.
    sortable_by = ("created_at",)
    inlines = (MessageInline,)
    # code_hash is in none of these, on purpose: it is never shown.
    fieldsets = (
        (None, {"fields": ("id", "purpose", "status", "user", "device", "phone", "region")}),
        (
            _("Code"),
            {
                "fields": (
                    "checked_by",
                    "provider",
                    "channel",
                    "delivery_uncertain",
                    "attempts",
                    "wrong_attempts",
                    "max_attempts",
                )
            },
        ),
        (
            _("Times"),
            {
                "fields": (
                    "created_at",
                    "last_sent_at",
                    "sends",
                    "expires_at",
                    "verified_at",
                    "closed_at",
                    "consumed_at",
                )
            },
        ),
        (_("Client"), {"fields": ("client_ip", "user_agent")}),
    )
    readonly_fields = tuple(field for _title, block in fieldsets for field in block["fields"])
    masked_fields = {"phone": "masked_phone", "device": "device_masked", "user": "user_masked"}
    device_masked = masked_link("device", _label(Challenge, "device"))
    user_masked = masked_user("user", _label(Challenge, "user"))

    def phone_of(self, obj: Challenge) -> str:
        return obj.phone

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        newest = Message.objects.filter(challenge=OuterRef("pk")).order_by("-created_at", "-pk")
        # Computed for the rows of one page only (a correlated subquery on the
        # message's challenge index), never for the whole table.
        return (
            super()
            .get_queryset(request)
            .defer("code_hash")  # never shown, so never even read
            .annotate(last_message_id=Subquery(newest.values("provider_message_id")[:1]))
        )

    def search_q(self, term: str) -> Q:
        conditions = []
        if challenge_id := as_uuid(term):
            conditions.append(Q(pk=challenge_id))
        if phone := as_phone(term):
            conditions.append(Q(phone=phone))
        # Looked up first (each one indexed query), so the challenge query
        # gets literal ids: a BitmapOr of index scans, never a subplan per row.
        if users := user_ids(term):
            conditions.append(Q(user_id__in=users))
        challenges = list(
            Message.objects.filter(provider_message_id=term[:128])
            .exclude(challenge=None)
            .values_list("challenge_id", flat=True)[:100]
        )
        if challenges:
            conditions.append(Q(pk__in=challenges))
        return any_of(conditions)

    @admin.display(description=_("phone"))
    def masked_phone(self, obj: Challenge) -> str:
        return mask_phone(obj.phone)

    @admin.display(description=_("attempts"))
    def attempts_shown(self, obj: Challenge) -> str:
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description=_("message id"))
    def message_id(self, obj: Challenge) -> str:
        return getattr(obj, "last_message_id", None) or "-"

    # ------------------------------------------------------ extra pages

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "stats/",
                self.admin_site.admin_view(self.stats_view),
                name="{}_{}_stats".format(*info),
            ),
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="{}_{}_export".format(*info),
            ),
            *super().get_urls(),
        ]

    def stats_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        from . import stats  # imported late: an optional page of its own

        return stats.stats_view(request, self)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The changelist's rows — same filters, search and order — as CSV."""
        from django.contrib.admin.options import IncorrectLookupParameters

        if not self.has_view_permission(request):
            raise PermissionDenied
        # Every row, not one page: the page number has no meaning here.
        request.GET = request.GET.copy()
        request.GET.pop("p", None)
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(
                reverse(
                    "admin:django_sms2fa_challenge_changelist", current_app=self.admin_site.name
                )
            )
        rows = changelist.queryset.iterator(chunk_size=2000)
        return stream_csv(rows, CHALLENGE_COLUMNS, filename="sms2fa-challenges")


# Never a code, a code hash or a token: these are all the columns there are.
CHALLENGE_COLUMNS: list[tuple[str, Any]] = [
    ("created_at", lambda c: c.created_at),
    ("challenge", lambda c: c.pk),
    ("phone", lambda c: mask_phone(c.phone)),
    ("region", lambda c: c.region),
    ("user", lambda c: redact_phone(c.user.get_username(), c.phone) if c.user_id else ""),
    ("purpose", lambda c: c.purpose),
    ("status", lambda c: c.status),
    ("attempts", lambda c: c.attempts),
    ("max_attempts", lambda c: c.max_attempts),
    ("sends", lambda c: c.sends),
    ("provider", lambda c: c.provider),
    ("checked_by", lambda c: c.checked_by),
    ("message_id", lambda c: getattr(c, "last_message_id", "") or ""),
    ("verified_at", lambda c: c.verified_at),
    ("closed_at", lambda c: c.closed_at),
    ("client_ip", lambda c: c.client_ip),
]


# -------------------------------------------------------------------- messages


class MessageStatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return Message.Status.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(Message)
class MessageAdmin(AuditAdmin):
    # Provider and message id first: what staff look up (the id is what a
    # provider's support asks for). Beside the admin's two sidebars a 1280 px
    # window leaves the list about 630 px; the columns after these may scroll.
    list_display = (
        "created_at",
        "provider",
        "provider_message_id",
        "status",
        "error_code",
        "masked_phone",
        "channel",
        "provider_status",
        "latency_ms",
        "challenge_link",
    )
    list_display_links = ("created_at",)
    list_filter = (MessageStatusFilter, ProviderFilter, "channel", DATE_FILTER)
    search_fields = ("phone",)
    search_help_text = _("A phone number (any format), a provider message id or a challenge id.")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    fields = readonly_fields = (
        "created_at",
        "sent_at",
        "status_changed_at",
        "phone",
        "provider",
        "channel",
        "provider_message_id",
        "status",
        "provider_status",
        "error_code",
        "error_text",
        "latency_ms",
        "text_masked",
        "challenge_link",
    )
    masked_fields = {
        "phone": "masked_phone",
        "error_text": "error_text_redacted",
        "text_masked": "text_redacted",
    }
    error_text_redacted = MessageInline.error_text_redacted
    text_redacted = MessageInline.text_redacted

    def phone_of(self, obj: Message) -> str:
        return obj.phone

    def purgeable_q(self, cutoff: Any) -> Q:
        # As sms2fa_purge: a message goes with its challenge (even a fresh
        # resend of an old one), or by its own age when it has none.
        return Q(challenge__created_at__lt=cutoff) | Q(
            challenge__isnull=True, created_at__lt=cutoff
        )

    def is_purgeable(self, obj: Message) -> bool:
        anchor = obj.challenge if obj.challenge_id else obj
        return anchor.created_at < retention.cutoff_for()

    def search_q(self, term: str) -> Q:
        conditions = [Q(provider_message_id=term[:128])]
        if challenge_id := as_uuid(term):
            conditions.append(Q(challenge_id=challenge_id))
        if phone := as_phone(term):
            conditions.append(Q(phone=phone))
        return any_of(conditions)

    @admin.display(description=_("phone"))
    def masked_phone(self, obj: Message) -> str:
        return mask_phone(obj.phone)

    @admin.display(description=_("challenge"))
    def challenge_link(self, obj: Message) -> str:
        return _challenge_link(self, obj.challenge_id)


# -------------------------------------------------------------------- refusals


class RefusalReasonFilter(admin.SimpleListFilter):
    title = _("reason")
    parameter_name = "reason"
    REASONS = ("rate_limited", "verification_locked", "destination_suspended", "number_not_allowed")

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return [(reason, reason) for reason in self.REASONS]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(reason=self.value()) if self.value() else queryset


@admin.register(Refusal)
class RefusalAdmin(AuditAdmin):
    list_display = (
        "created_at",
        "reason",
        "limit",
        "masked_phone",
        "user_masked",
        "client_ip",
        "retry_after",
    )
    list_select_related = ("user",)
    list_filter = (RefusalReasonFilter, DATE_FILTER)
    search_fields = ("phone",)
    search_help_text = _("A phone number (any format), an exact username or an IP address.")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    fields = readonly_fields = (
        "created_at",
        "reason",
        "limit",
        "phone",
        "user",
        "client_ip",
        "retry_after",
    )
    masked_fields = {"phone": "masked_phone", "user": "user_masked"}
    user_masked = masked_user("user", _label(Refusal, "user"))

    def phone_of(self, obj: Refusal) -> str:
        return obj.phone

    def search_q(self, term: str) -> Q:
        conditions = []
        if phone := as_phone(term):
            conditions.append(Q(phone=phone))
        if ip := as_ip(term):
            conditions.append(Q(client_ip=ip))
        if users := user_ids(term):
            conditions.append(Q(user_id__in=users))
        return any_of(conditions)

    @admin.display(description=_("phone"))
    def masked_phone(self, obj: Refusal) -> str:
        return mask_phone(obj.phone)


# ----------------------------------------------------------------- device events


class DeviceEventInline(ReadOnlyInline):
    model = DeviceEvent
    fk_name = "device"
    fields = readonly_fields = ("created_at", "action", "actor", "client_ip")
    ordering = ("-created_at",)


@admin.register(DeviceEvent)
class DeviceEventAdmin(AuditAdmin):
    # The record of every phone ever bound (NIST SP 800-63B-4 §4.1): kept
    # even after the device and the user are gone, and never deleted here.
    deletable = False
    list_display = (
        "created_at",
        "action",
        "masked_number",
        "user_masked",
        "actor",
        "client_ip",
        "device_masked",
    )
    list_select_related = ("user", "actor", "device")
    list_filter = ("action", DATE_FILTER)
    search_fields = ("number",)
    search_help_text = _("A phone number (any format) or an exact username (owner or actor).")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    fields = readonly_fields = (
        "created_at",
        "action",
        "number",
        "user",
        "actor",
        "client_ip",
        "device",
    )
    masked_fields = {"number": "masked_number", "device": "device_masked", "user": "user_masked"}
    device_masked = masked_link("device", _label(DeviceEvent, "device"))
    user_masked = masked_user("user", _label(DeviceEvent, "user"))

    def phone_of(self, obj: DeviceEvent) -> str:
        return obj.number

    def search_q(self, term: str) -> Q:
        conditions = []
        if phone := as_phone(term):
            conditions.append(Q(number=phone))
        if users := user_ids(term):
            conditions.append(Q(user_id__in=users) | Q(actor_id__in=users))
        return any_of(conditions)

    @admin.display(description=_("phone"))
    def masked_number(self, obj: DeviceEvent) -> str:
        return mask_phone(obj.number)


# ------------------------------------------------------------------------ devices


@admin.register(PhoneDevice)
class PhoneDeviceAdmin(AuditAdmin):
    """Phones bound to accounts. Read-only, except for four recorded actions:
    unlock, reset failures (``change`` permission), remove (``delete``) and
    add for a user (``add`` permission, on the page of ``admin/enrol.py``)."""

    # The change list adds the "Add a phone for a user" link.
    change_list_template = "django_sms2fa/admin/phonedevice/change_list.html"
    add_for_user_template = "django_sms2fa/admin/phonedevice/add_for_user.html"

    list_display = (
        "masked_number",
        "user_masked",
        "name_redacted",
        "confirmed",
        "last_used_at",
        "lock_status",
        "failures",
    )
    list_select_related = ("user",)
    list_filter = ("confirmed",)
    search_fields = ("number",)
    search_help_text = _("A phone number (any format) or an exact username.")
    ordering = ("-pk",)
    sortable_by = ()
    actions = ("unlock", "reset_failures")
    # Removing a phone is not purging the audit: any device can be removed.
    deletes_like_the_purge = False
    inlines = (DeviceEventInline,)
    fields = readonly_fields = (
        "user",
        "name",
        "number",
        "confirmed",
        "created_at",
        "last_used_at",
        "lock_status",
        "failures",
    )
    # A site may name a device after its number.
    masked_fields = {"number": "masked_number", "name": "name_redacted", "user": "user_masked"}
    name_redacted = masked_display("name", lambda d: d.number, _label(PhoneDevice, "name"))
    user_masked = masked_user("user", _label(PhoneDevice, "user"))

    def phone_of(self, obj: PhoneDevice) -> str:
        return obj.number

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Removing a phone is an ordinary, recorded admin action (a lost phone).
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def has_add_for_user_permission(self, request: HttpRequest) -> bool:
        # Adding a phone for a user is a recorded action too (a user who cannot
        # enrol by themselves), on its own page (admin/enrol.py): Django's add
        # form, which would write any row, stays closed to everyone.
        return request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}")

    def add_for_user_view(self, request: HttpRequest) -> HttpResponse:
        from .enrol import add_phone_view

        return add_phone_view(self, request)

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "add-for-user/",
                self.admin_site.admin_view(self.add_for_user_view),
                name="{}_{}_add_for_user".format(*info),
            ),
            *super().get_urls(),
        ]

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def search_q(self, term: str) -> Q:
        conditions = []
        if phone := as_phone(term):
            conditions.append(Q(number=phone))
        if users := user_ids(term):
            conditions.append(Q(user_id__in=users))
        return any_of(conditions)

    @admin.display(description=_("phone"))
    def masked_number(self, obj: PhoneDevice) -> str:
        return mask_phone(obj.number)

    def _lock(self, obj: PhoneDevice) -> Any:
        # Read once per row from the cache (where the lockout lives), not the DB.
        if not hasattr(obj, "_sms2fa_lock"):
            obj._sms2fa_lock = device_flows.lock_state(obj)
        return obj._sms2fa_lock

    @admin.display(description=_("lockout"))
    def lock_status(self, obj: PhoneDevice) -> str:
        locked_for = self._lock(obj).locked_for
        if not locked_for:
            return str(_("not locked"))
        return str(_("locked for %(seconds)s s") % {"seconds": locked_for})

    @admin.display(description=_("consecutive failures"))
    def failures(self, obj: PhoneDevice) -> int:
        return self._lock(obj).failures

    @admin.action(description=_("Unlock (lift the wrong-code lockout)"), permissions=["manage"])
    def unlock(self, request: HttpRequest, queryset: QuerySet) -> None:
        ip = client_ip(request)
        done = sum(
            device_flows.unlock_device(device, actor=request.user, client_ip=ip)
            for device in queryset
        )
        self.message_user(
            request,
            ngettext("%(count)d device unlocked.", "%(count)d devices unlocked.", done)
            % {"count": done},
        )

    @admin.action(description=_("Reset wrong-code failures"), permissions=["manage"])
    def reset_failures(self, request: HttpRequest, queryset: QuerySet) -> None:
        ip = client_ip(request)
        done = sum(
            device_flows.reset_device_failures(device, actor=request.user, client_ip=ip)
            for device in queryset
        )
        self.message_user(
            request,
            ngettext(
                "Failures reset on %(count)d device.", "Failures reset on %(count)d devices.", done
            )
            % {"count": done},
        )

    def delete_model(self, request: HttpRequest, obj: PhoneDevice) -> None:
        device_flows.delete_device(obj, actor=request.user, client_ip=client_ip(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        ip = client_ip(request)
        for device in queryset:
            device_flows.delete_device(device, actor=request.user, client_ip=ip)


# ----------------------------------------------------------------- audit records


class AuditActionFilter(admin.SimpleListFilter):
    title = _("action")
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return AuditRecord._meta.get_field("action").choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(AuditRecord)
class AuditRecordAdmin(AuditAdmin):
    """Who was shown a full number, and every deletion of audit rows. Never
    changed or deleted here (nor by sms2fa_purge); the number stays masked
    even for staff who may see full numbers elsewhere."""

    deletable = False
    list_display = (
        "created_at",
        "action",
        "actor_repr",
        "client_ip",
        "object_type",
        "object_id",
        "masked_phone",
        "count",
        "cutoff",
    )
    list_filter = (AuditActionFilter, DATE_FILTER)
    search_fields = ("phone",)
    search_help_text = _("A phone number (any format), an exact username or an object id.")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    fields = readonly_fields = (
        "created_at",
        "action",
        "actor",
        "actor_repr",
        "client_ip",
        "object_type",
        "object_id",
        "masked_phone",
        "count",
        "cutoff",
        "detail",
    )

    def search_q(self, term: str) -> Q:
        conditions = [Q(object_id=term[:64])]
        if phone := as_phone(term):
            conditions.append(Q(phone=phone))
        if users := user_ids(term):
            conditions.append(Q(actor_id__in=users))
        return any_of(conditions)

    @admin.display(description=_("phone"))
    def masked_phone(self, obj: AuditRecord) -> str:
        return mask_phone(obj.phone)


__all__ = [
    "AuditPaginator",
    "AuditRecordAdmin",
    "ChallengeAdmin",
    "DeviceEventAdmin",
    "MessageAdmin",
    "MethodEventAdmin",
    "PhoneDeviceAdmin",
    "RecoveryCodeDeviceAdmin",
    "RefusalAdmin",
    "RememberedBrowserAdmin",
]
