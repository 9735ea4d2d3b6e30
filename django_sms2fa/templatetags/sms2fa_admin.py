"""``{% sms2fa_pagination cl %}``: the admin's paginator, from a template we name.

Django's own ``{% pagination cl %}`` only finds an app's pagination template
at ``admin/<app_label>/pagination.html``. All of this app's templates live
under ``django_sms2fa/``, so the change list
(``django_sms2fa/admin/change_list.html``) calls this tag instead: the same
context as Django's tag, rendered with the ModelAdmin's
``pagination_template``.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import pagination
from django.contrib.admin.views.main import ChangeList
from django.utils.safestring import SafeString

register = template.Library()

#: Used when the ModelAdmin names no ``pagination_template``.
DEFAULT_TEMPLATE = "admin/pagination.html"


@register.simple_tag(takes_context=True)
def sms2fa_pagination(context: template.Context, cl: ChangeList) -> SafeString:
    """The pagination block of change list ``cl``."""
    name = getattr(cl.model_admin, "pagination_template", None) or DEFAULT_TEMPLATE
    values: dict[str, Any] = pagination(cl)
    # Rendered like Django's inclusion tags: a fresh context of these values
    # only (autoescape and the request's context processors kept).
    return context.template.engine.get_template(name).render(context.new(values))
