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
import uuid
from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from ..conf import app_settings
from ..exceptions import InvalidPhone
from ..phones import normalize_phone

PURGE_PERMISSION = "django_sms2fa.purge_challenge"

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


class AuditAdmin(admin.ModelAdmin):
    """Read-only: nothing is added or changed here; rows are deleted only by
    staff who hold ``django_sms2fa.purge_challenge``."""

    paginator = AuditPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts scan the table
    list_per_page = 100
    list_max_show_all = 200
    deletable = True  # with the purge permission; False: never

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.deletable and request.user.has_perm(PURGE_PERMISSION)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(self.search_q(term)), False

    def search_q(self, term: str) -> Q:  # pragma: no cover - every subclass defines it
        raise NotImplementedError(f"{type(self).__name__} must define search_q()")


class ReadOnlyInline(admin.TabularInline):
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
