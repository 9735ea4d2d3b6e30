"""An admin site whose login is this app's: password, then the phone's code.

Django's plain admin logs a user in with a password alone. For a user with a
confirmed phone, ``SecondFactorMiddleware`` then treats that session as
anonymous until a code is checked, so the admin sends them back to its login
page, again and again, without a word. :class:`Sms2faAdminSite` sends its
login to this app's login page instead (``sms2fa:login``, with ``?next=`` back
to the admin), and, like django-otp's ``OTPAdminSite`` which it extends,
admits only sessions that proved a second factor.

Use it for the default ``admin.site``: autodiscovery registers every model
admin on that instance, so the instance is kept and its class changed, in the
project's ``urls.py``::

    from django.contrib import admin
    from django_sms2fa.admin.site import use_sms2fa_login

    use_sms2fa_login(admin.site)  # for admin.site: admin.site.__class__ = Sms2faAdminSite

    urlpatterns = [path("admin/", admin.site.urls), ...]

or make a site of your own: ``site = Sms2faAdminSite(name="admin")``. Staff
without a confirmed phone cannot use such an admin: the login sends them to
add one first. System check ``sms2fa.W010`` warns about a mounted admin site
that is not an ``OTPAdminSite``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django_otp.admin import OTPAdminSite

from django.contrib.admin import AdminSite
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from ..adapter import get_adapter


class Sms2faAdminSite(OTPAdminSite):
    """``OTPAdminSite`` (verified sessions only) with this app's login pages."""

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """Send the visitor to this app's login (or, for a logged-in user
        without a phone, to add one), coming back to the admin afterwards.

        Where this app's pages are not mounted, ``OTPAdminSite``'s own login
        (password and a django-otp token in one form) is used.
        """
        if self.has_permission(request):
            return HttpResponseRedirect(self._next(request))  # nothing to log in to
        user = request.user
        # Logged in, yet not let in: no second factor to prove (a user with a
        # phone is anonymous here until they prove it), or not staff at all.
        target: str | None = "sms2fa:login"
        if user.is_authenticated and not (user.is_active and user.is_staff):
            target = None  # the admin's page says who is logged in and may switch
        elif user.is_authenticated and not get_adapter().has_second_factor(user):
            target = "sms2fa:phone_add"  # the admin needs a phone to prove
        # (A session that logged in with a phone's code alone has one factor:
        # it logs in again, with the password.)
        try:
            url = reverse(target) if target is not None else None
        except NoReverseMatch:
            url = None
        if url is None:
            return super().login(request, extra_context)
        return HttpResponseRedirect(
            f"{url}?{urlencode({REDIRECT_FIELD_NAME: self._next(request)})}"
        )

    def _next(self, request: HttpRequest) -> str:
        """Where the login returns to: the admin page asked for, or the index."""
        wanted = request.GET.get(REDIRECT_FIELD_NAME, "")
        if wanted and url_has_allowed_host_and_scheme(
            wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return wanted
        return reverse("admin:index", current_app=self.name)


def use_sms2fa_login(site: AdminSite) -> AdminSite:
    """Turn ``site`` (``admin.site`` by default in ``urls.py``) into an
    :class:`Sms2faAdminSite` in place, keeping its registrations and name.

    A plain ``AdminSite`` becomes an ``Sms2faAdminSite``; a site of another
    ``AdminSite`` subclass gets a class made of both (``Sms2faAdminSite``
    first, so its login and permission rule win). Returns ``site``.
    """
    cls = site.__class__  # not type(): admin.site is a lazy proxy of the real site
    if not issubclass(cls, Sms2faAdminSite):
        if cls in (AdminSite, OTPAdminSite):
            site.__class__ = Sms2faAdminSite
        else:
            site.__class__ = type(f"Sms2fa{cls.__name__}", (Sms2faAdminSite, cls), {})
    return site
