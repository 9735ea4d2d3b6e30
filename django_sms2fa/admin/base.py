"""Building blocks of the audit admin: read-only model admins that stay fast
on millions of rows.

What makes a Django changelist slow on a big table, and what replaces it here:

- ``COUNT(*)`` over the whole table for the paginator: :class:`AuditPaginator`
  counts at most ``COUNT_LIMIT`` rows; past that it takes PostgreSQL's own row
  estimate (``EXPLAIN``) and pages only through the newest rows.
- the "N total" count (``show_full_result_count``) and the facet counts: off.
- ``SELECT DISTINCT`` behind a filter's choices: the provider filter lists the
  aliases of ``SMS2FA["PROVIDERS"]``; the others are choice fields.
- ``LIKE '%term%'`` search over every row: :func:`search_terms` turns the term
  into exact, indexed matches (the phone normalized as a user types it, a
  username, an id).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import phonenumbers

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db import connections, router, transaction
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeData, mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import retention
from ..client import client_ip
from ..conf import app_settings
from ..exceptions import InvalidPhone
from ..models import AuditAction, AuditRecord
from ..phones import mask_phone, normalize_phone

PURGE_PERMISSION = "django_sms2fa.purge_challenge"
#: Shows full phone numbers on an object's admin page; each showing is an
#: AuditRecord. Lists, the CSV export and the statistics stay masked for all.
FULL_PHONE_PERMISSION = "django_sms2fa.view_full_phone"

#: Fields no changelist filters on from the URL, for anyone: numbers, texts
#: that may repeat one, and the code hash. (The search box finds a number by
#: exact match only.)
HIDDEN_LOOKUP_FIELDS = frozenset(
    {"phone", "number", "name", "error_text", "text_masked", "detail", "code_hash"}
)

# Rows counted exactly; also the deepest row the pages reach (100 pages of
# 100). Older rows are found with the date filter or a search.
COUNT_LIMIT = 10_000


class AuditPaginator(Paginator):
    """A paginator that never counts the whole table.

    ``count`` is exact up to :data:`COUNT_LIMIT` (one ``COUNT`` over a
    ``LIMIT``-ed subquery); above it, PostgreSQL's planner estimate for the
    same query (one ``EXPLAIN``, no rows read), or just "more than the limit"
    elsewhere. ``count_is_exact`` tells the template which it is.
    """

    count_limit = COUNT_LIMIT

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        counted = queryset.order_by().values("pk")[: self.count_limit + 1].count()
        if counted <= self.count_limit:
            return counted
        return max(_planner_estimate(queryset) or 0, self.count_limit + 1)

    @cached_property
    def count_is_exact(self) -> bool:
        return self.count <= self.count_limit

    @property
    def count_is_estimate(self) -> bool:
        """Whether ``count`` is the database's estimate (not a lower bound)."""
        return not self.count_is_exact and _is_postgres(self.object_list)

    @cached_property
    def num_pages(self) -> int:
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        hits = max(1, min(self.count, self.count_limit) - self.orphans)
        return math.ceil(hits / self.per_page)


def _is_postgres(queryset: Any) -> bool:
    return isinstance(queryset, QuerySet) and connections[queryset.db].vendor == "postgresql"


def _planner_estimate(queryset: QuerySet) -> int | None:
    """PostgreSQL's estimate of the rows ``queryset`` returns, without reading them."""
    if not _is_postgres(queryset):
        return None
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class ProviderFilter(admin.SimpleListFilter):
    """By provider alias, from the settings: never a ``DISTINCT`` over the table."""

    title = _("provider")
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(alias, alias) for alias in app_settings.PROVIDERS]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(provider=value) if value else queryset


# ------------------------------------------------------------ phone numbers

# A run of digits with the separators people and providers put between them
# ("+46 70-123 45 67", "(070) 123.45.67", "0046701234567").
_DIGIT_RUN = re.compile(r"\+?\d[\d\s().\-/]*\d")


def may_see_full_phone(request: HttpRequest) -> bool:
    """Whether the admin may show this user full numbers (one object at a time)."""
    return request.user.has_perm(FULL_PHONE_PERMISSION)


def redact_phone(text: Any, *numbers: str) -> str:
    """``text`` with each of ``numbers`` (E.164), written in any form, masked.

    A provider's error text or a device's name may carry the number in its
    own format (``46701234567``, ``070-123 45 67``): every run of digits that
    contains a number's national digits becomes its masked form.
    """
    text = "" if text is None else str(text)
    nationals = []
    for number in filter(None, numbers):
        try:
            national = str(phonenumbers.parse(number, None).national_number)
        except phonenumbers.NumberParseException:
            national = number.lstrip("+")
        nationals.append((national, mask_phone(number)))
    if not nationals or not text:
        return text

    def mask(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match[0])
        for national, masked in nationals:
            if national in digits:
                return masked
        return match[0]

    return _DIGIT_RUN.sub(mask, text)


class _Masked:
    """An object as a page shows it, its phone number masked in its ``str``."""

    def __init__(self, obj: Model, numbers: tuple[str, ...]) -> None:
        self._obj = obj
        self._numbers = numbers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)

    def __str__(self) -> str:
        return redact_phone(str(self._obj), *self._numbers)


def masked_display(field: str, phone_of: Callable[[Any], str], description: Any) -> Any:
    """An admin display of ``field`` with the row's number masked in it."""

    @admin.display(description=description)
    def show(model_admin: Any, obj: Any) -> str:
        return redact_phone(getattr(obj, field), phone_of(obj))

    show.__name__ = f"{field}_masked"
    return show


def masked_link(field: str, description: Any) -> Any:
    """A foreign key to a phone device as a link whose text shows the number masked."""

    @admin.display(description=description)
    def show(model_admin: Any, obj: Any) -> str:
        device = getattr(obj, field)
        if device is None:
            return "-"
        link = reverse(
            f"admin:{device._meta.app_label}_{device._meta.model_name}_change",
            args=[device.pk],
            current_app=model_admin.admin_site.name,
        )
        return format_html('<a href="{}">{}</a>', link, redact_phone(str(device), device.number))

    show.__name__ = f"{field}_masked"
    return show


def masked_user(field: str, description: Any) -> Any:
    """A user as text, the row's number masked in it (a site may use phone
    numbers as usernames)."""

    @admin.display(description=description)
    def show(model_admin: Any, obj: Any) -> str:
        person = getattr(obj, field)
        if person is None:
            return "-"
        return redact_phone(str(person), model_admin.phone_of(obj))

    show.__name__ = f"{field}_masked"
    return show


def _swap(fields: Any, swaps: dict[str, str]) -> Any:
    """``fields`` (names, possibly nested in tuples) with ``swaps`` applied."""
    if isinstance(fields, str):
        return swaps.get(fields, fields)
    return type(fields)(_swap(field, swaps) for field in fields)


def record_full_phone_shown(request: HttpRequest, obj: Model, phone: str) -> AuditRecord:
    """Write down that ``request.user`` was just shown ``obj``'s full number."""
    return AuditRecord.objects.create(
        created_at=timezone.now(),
        action=AuditAction.VIEWED_FULL_PHONE,
        actor=request.user,
        actor_repr=request.user.get_username()[:150],
        client_ip=client_ip(request),
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        phone=phone,
    )


class PhoneMasking:
    """Masks phone numbers on an admin page unless the user may see them.

    ``masked_fields`` maps each field that shows a number (or may contain
    one) to the display that masks it; ``phone_of`` gives the number of an
    object. Lists use the masked displays for everyone: they are in
    ``list_display`` directly.
    """

    masked_fields: dict[str, str] = {}

    def phone_of(self, obj: Any) -> str:
        return ""

    def _swaps(self, request: HttpRequest) -> dict[str, str]:
        return {} if may_see_full_phone(request) else self.masked_fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return _swap(super().get_fields(request, obj), self._swaps(request))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        swaps = self._swaps(request)
        return [
            (title, {**options, "fields": _swap(options["fields"], swaps)})
            for title, options in super().get_fieldsets(request, obj)
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return _swap(super().get_readonly_fields(request, obj), self._swaps(request))


class AuditAdmin(PhoneMasking, admin.ModelAdmin):
    """Read-only: nothing is added or changed here; rows are deleted only by
    staff who hold ``django_sms2fa.purge_challenge``, and only rows the purge
    would delete (older than ``RETENTION_DAYS``); each deletion is recorded."""

    paginator = AuditPaginator
    # Every template of the app lives under django_sms2fa/ and is named here,
    # not found by Django's admin/<app_label>/ look-up: the change list draws
    # the paginator from pagination_template ({% sms2fa_pagination %}), which
    # says when the count is an estimate or only "more than".
    change_list_template = "django_sms2fa/admin/change_list.html"
    pagination_template = "django_sms2fa/admin/pagination.html"
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts scan the table
    list_per_page = 100
    list_max_show_all = 200
    deletable = True  # with the purge permission; False: never
    # Deleting is purging: only rows older than the retention period. (Phone
    # devices turn this off: removing one is an ordinary, recorded action.)
    deletes_like_the_purge = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not (self.deletable and request.user.has_perm(PURGE_PERMISSION)):
            return False
        # No "Delete" button on a row the purge would keep.
        return obj is None or not self.deletes_like_the_purge or self.is_purgeable(obj)

    def lookup_allowed(self, lookup: str, value: Any, request: Any = None) -> bool:
        # Django's changelist takes any lookup on a model's own fields from the
        # URL: ?phone__startswith=+4670 answered row or no row would read a
        # masked number (or a code hash) back one digit at a time.
        if HIDDEN_LOOKUP_FIELDS.intersection(lookup.split("__")):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(self.search_q(term)), False

    def search_q(self, term: str) -> Q:  # pragma: no cover - every subclass defines it
        raise NotImplementedError(f"{type(self).__name__} must define search_q()")

    # ------------------------------------------------------- full numbers

    def action_checkbox(self, obj: Any) -> str:
        # Its label reads str(obj): a device's name may be its number.
        return super().action_checkbox(_Masked(obj, (self.phone_of(obj),)))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            phone = self.phone_of(obj)
            if not may_see_full_phone(request):
                # The title and breadcrumbs show str(obj): a device's name.
                context["original"] = _Masked(obj, (phone,))
                context["subtitle"] = str(context["original"])
            elif phone:
                record_full_phone_shown(request, obj, phone)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and not may_see_full_phone(request):
            masked = _Masked(obj, (self.phone_of(obj),))
            extra_context = {
                **(extra_context or {}),
                "object": masked,
                "title": _("Change history: %s") % masked,
            }
        return super().history_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        if not may_see_full_phone(request):
            numbers = tuple(self.phone_of(obj) for obj in objs)
            deleted = _redact_nested(deleted, numbers)
        return deleted, model_count, perms_needed, protected

    # ------------------------------------------------------------ deleting

    def purgeable_q(self, cutoff: datetime) -> Q:
        """The rows ``sms2fa_purge`` would delete at ``cutoff`` (by their own age here)."""
        return Q(created_at__lt=cutoff)

    def is_purgeable(self, obj: Any) -> bool:
        """Whether ``obj`` (as loaded) is one :meth:`purgeable_q` takes; read
        from the row, not the database. ``delete_model`` asks the database."""
        return obj.created_at < retention.cutoff_for()

    def _refuse_fresh(self, request: HttpRequest, fresh: int, cutoff: datetime) -> None:
        self.message_user(
            request,
            ngettext(
                "Nothing was deleted: %(count)d selected row is younger than the retention "
                "period (%(days)d days, before %(cutoff)s). Only rows sms2fa_purge would "
                "delete can be deleted here.",
                "Nothing was deleted: %(count)d selected rows are younger than the retention "
                "period (%(days)d days, before %(cutoff)s). Only rows sms2fa_purge would "
                "delete can be deleted here.",
                fresh,
            )
            % {
                "count": fresh,
                "days": app_settings.RETENTION_DAYS,
                "cutoff": formats.localize(timezone.localtime(cutoff)),
            },
            messages.ERROR,
        )

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return super().delete_view(request, object_id, extra_context)
        purging = self.deletes_like_the_purge and self.deletable
        if purging and request.user.has_perm(PURGE_PERMISSION) and not self.is_purgeable(obj):
            self._refuse_fresh(request, 1, retention.cutoff_for())
            return HttpResponseRedirect(
                reverse(
                    f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                    args=[obj.pk],
                    current_app=self.admin_site.name,
                )
            )
        if not may_see_full_phone(request):
            # "Are you sure you want to delete …" and "… was deleted" show
            # str(obj), a device's name.
            request._sms2fa_masked = (self.phone_of(obj),)
            masked = _Masked(obj, (self.phone_of(obj),))
            # Django 5.2's template reads "object"; 6.x's reads "escaped_object".
            extra_context = {
                **(extra_context or {}),
                "object": masked,
                "escaped_object": str(masked),
            }
        return super().delete_view(request, object_id, extra_context)

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        # The admin's "Recent actions" keep str(obj) for good: masked, for anyone.
        masked = [_Masked(obj, (self.phone_of(obj),)) for obj in queryset]
        return super().log_deletions(request, masked)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        numbers = getattr(request, "_sms2fa_masked", ())
        return super().response_delete(request, redact_phone(obj_display, *numbers), obj_id)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if self.deletes_like_the_purge and "delete_selected" in actions:
            _func, name, description = actions["delete_selected"]
            actions["delete_selected"] = (_delete_old_selected, name, description)
        return actions

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        if not self.deletes_like_the_purge:
            return super().delete_model(request, obj)
        self._delete_purgeable(request, [obj.pk], object_id=str(obj.pk))
        return None

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self.deletes_like_the_purge:
            return super().delete_queryset(request, queryset)
        self._delete_purgeable(request, queryset.values_list("pk", flat=True))
        return None

    def _delete_purgeable(self, request: HttpRequest, pks: Any, **record: Any) -> None:
        """Delete the rows of ``pks`` the purge would delete, and record it.

        The cutoff is checked again here, where the rows go: the confirmation
        page was only the question.
        """
        cutoff = retention.cutoff_for()
        with transaction.atomic(using=router.db_for_write(self.model)):
            manager = self.model._default_manager
            ids = list(
                manager.filter(self.purgeable_q(cutoff), pk__in=pks).values_list("pk", flat=True)
            )
            _total, per_model = manager.filter(pk__in=ids).delete()
            if "object_id" not in record:
                record["ids"] = [str(pk) for pk in ids]
            retention.record_deletion(
                AuditAction.DELETED_IN_ADMIN,
                cutoff=cutoff,
                per_model=per_model,
                actor=request.user,
                client_ip=client_ip(request),
                object_type=self.opts.label_lower,
                **record,
            )


def _delete_old_selected(
    model_admin: AuditAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """Django's "delete selected", refused whole (confirmation page and
    confirmation alike) when any selected row is younger than the cutoff."""
    cutoff = retention.cutoff_for()
    fresh = queryset.count() - queryset.filter(model_admin.purgeable_q(cutoff)).count()
    if fresh:
        model_admin._refuse_fresh(request, fresh, cutoff)
        return None
    return delete_selected(model_admin, request, queryset)


_delete_old_selected.allowed_permissions = delete_selected.allowed_permissions
_delete_old_selected.short_description = delete_selected.short_description


def _redact_nested(items: Any, numbers: tuple[str, ...]) -> Any:
    """Django's nested list of objects a deletion takes, numbers masked."""
    if isinstance(items, list):
        return [_redact_nested(item, numbers) for item in items]
    text = redact_phone(items, *numbers)
    # Only digits were replaced, by digits, "+" and bullets: still safe HTML.
    return mark_safe(text) if isinstance(items, SafeData) else text  # noqa: S308


class ReadOnlyInline(PhoneMasking, admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# ------------------------------------------------------------------ search


NOTHING = Q(pk__in=[])


def as_phone(term: str) -> str | None:
    """The E.164 form of ``term`` if it reads as a phone number, as typed anywhere."""
    try:
        return normalize_phone(term, app_settings.DEFAULT_REGION)
    except InvalidPhone:
        return None


def as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term)
    except ValueError:
        return None


def as_ip(term: str) -> str | None:
    try:
        return str(ipaddress.ip_address(term))
    except ValueError:
        return None


def user_ids(term: str, limit: int = 20) -> list[Any]:
    """Ids of the users whose username is exactly ``term`` (one indexed query)."""
    user_model = get_user_model()
    return list(
        user_model._default_manager.filter(**{user_model.USERNAME_FIELD: term}).values_list(
            "pk", flat=True
        )[:limit]
    )


def any_of(conditions: Iterable[Q]) -> Q:
    result = NOTHING
    for condition in conditions:
        result |= condition
    return result
