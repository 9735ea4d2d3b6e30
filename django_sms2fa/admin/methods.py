"""The audit of the sign-in methods beside the phone: authenticator apps,
recovery codes and remembered browsers — what happened, who did it, from
where. Read-only, like the rest of the audit; nothing here shows a code, a
code's hash or an authenticator app's secret.

django-otp's own admin for ``TOTPDevice`` shows the secret key (and a link to
its QR code) to any staff member who may change devices: whoever reads it can
make the user's codes. Where it is registered on the default admin site, it
is replaced by :class:`AuthenticatorAppAdmin`, which shows neither.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .. import methods
from ..client import client_info
from ..models import MethodEvent, RecoveryCodeDevice, RememberedBrowser
from .base import AuditAdmin, any_of, masked_user, user_ids

DATE_FILTER = ("created_at", admin.DateFieldListFilter)


@admin.register(MethodEvent)
class MethodEventAdmin(AuditAdmin):
    """Every event of an authenticator app, recovery codes or a remembered
    browser: kept when the user is gone, never deleted here."""

    deletable = False
    list_display = ("created_at", "method", "action", "user_masked", "actor", "client_ip", "detail")
    list_select_related = ("user", "actor")
    list_filter = ("method", "action", DATE_FILTER)
    search_fields = ("user__username",)
    search_help_text = _("An exact username (owner or actor).")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    fields = readonly_fields = (
        "created_at",
        "method",
        "action",
        "user",
        "actor",
        "client_ip",
        "detail",
    )
    masked_fields = {"user": "user_masked"}
    user_masked = masked_user("user", _("user"))

    def search_q(self, term: str) -> Q:
        conditions = []
        if users := user_ids(term):
            conditions.append(Q(user_id__in=users) | Q(actor_id__in=users))
        return any_of(conditions)


@admin.register(RememberedBrowser)
class RememberedBrowserAdmin(AuditAdmin):
    """Which browsers skip the second factor, until when, and which were
    forgotten. The row id (what the signed cookie carries) is not shown."""

    deletable = False
    list_display = (
        "user_masked",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "client_ip",
        "user_agent",
    )
    list_select_related = ("user",)
    list_filter = (DATE_FILTER,)
    search_fields = ("user__username",)
    search_help_text = _("An exact username.")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    fields = readonly_fields = (
        "user",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "client_ip",
        "user_agent",
    )
    masked_fields = {"user": "user_masked"}
    user_masked = masked_user("user", _("user"))

    def search_q(self, term: str) -> Q:
        return any_of([Q(user_id__in=users)] if (users := user_ids(term)) else [])


@admin.register(RecoveryCodeDevice)
class RecoveryCodeDeviceAdmin(AuditAdmin):
    """Who has recovery codes and how many are left; never the codes."""

    deletable = False
    list_display = ("user_masked", "codes_left", "last_used_at", "created_at")
    list_select_related = ("user",)
    search_fields = ("user__username",)
    search_help_text = _("An exact username.")
    ordering = ("-pk",)
    sortable_by = ()
    fields = readonly_fields = ("user", "codes_left", "last_used_at", "created_at")
    masked_fields = {"user": "user_masked"}
    user_masked = masked_user("user", _("user"))

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(_left=Count("codes", filter=Q(codes__used_at=None)))
        )

    @admin.display(description=_("codes left"))
    def codes_left(self, obj: Any) -> int:
        return getattr(obj, "_left", None) or obj.codes.filter(used_at=None).count()

    def is_purgeable(self, obj: Any) -> bool:
        return False

    def search_q(self, term: str) -> Q:
        return any_of([Q(user_id__in=users)] if (users := user_ids(term)) else [])


def _replace_totp_admin() -> None:
    """Swap django-otp's ``TOTPDevice`` admin (it shows the secret key) for
    one that shows the device and never its key."""
    if not apps.is_installed("django_otp.plugins.otp_totp"):
        return
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if admin.site.is_registered(TOTPDevice):
        admin.site.unregister(TOTPDevice)
    admin.site.register(TOTPDevice, AuthenticatorAppAdmin)


class AuthenticatorAppAdmin(admin.ModelAdmin):
    """An authenticator app's device without its secret: staff may see and
    remove it (the user then enrols anew), never read or change the key."""

    list_display = ("user", "name", "confirmed", "created_at", "last_used_at")
    list_filter = ("confirmed",)
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
    fields = readonly_fields = ("user", "name", "confirmed", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        # Recorded with the staff member as the actor; the owner is told.
        methods.remove_totp(obj.user, actor=request.user, client=client_info(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for device in queryset.select_related("user"):
            self.delete_model(request, device)


_replace_totp_admin()
