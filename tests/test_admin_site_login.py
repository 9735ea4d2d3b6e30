"""The admin login with a phone: Django's plain admin loops, Sms2faAdminSite
sends its login through this app's pages and lets the verified session in.

The default ``admin.site`` (the one autodiscovery fills) is turned into an
``Sms2faAdminSite`` with the one line a project's ``urls.py`` holds —
``use_sms2fa_login(admin.site)`` — inside a fixture that puts the class back,
because other tests use the plain site in this process.
"""

from __future__ import annotations

from types import ModuleType
from urllib.parse import urlencode

import pytest
from django_otp.admin import OTPAdminSite

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.core.checks import run_checks
from django.urls import include, path

from django_sms2fa.admin.site import Sms2faAdminSite, use_sms2fa_login
from django_sms2fa.models import PhoneDevice

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
ADMIN_PASSWORD = "admin-site-login-pass"
LOGIN = "/2fa/login/"
LOGIN_CODE = "/2fa/login/code/"


def urlconf(*patterns) -> ModuleType:
    """A URLconf of its own for one test (a module: the resolver cache hashes it)."""
    module = ModuleType("admin_site_login_urls")
    module.urlpatterns = list(patterns)
    return module


def project_urls() -> ModuleType:
    """What a project's urls.py holds: the admin and the sms2fa pages. Built
    when called, as urls.py is imported: after use_sms2fa_login() there."""
    return urlconf(path("admin/", admin.site.urls), path("2fa/", include("django_sms2fa.urls")))


@pytest.fixture
def plain_admin(settings):
    assert admin.site.__class__ is AdminSite
    settings.ROOT_URLCONF = project_urls()
    return admin.site


@pytest.fixture
def sms2fa_admin(settings):
    """``admin.site`` as a project's urls.py makes it; restored afterwards."""
    original = admin.site.__class__
    use_sms2fa_login(admin.site)  # the line in urls.py, before admin.site.urls
    settings.ROOT_URLCONF = project_urls()
    yield admin.site
    admin.site.__class__ = original


@pytest.fixture
def superuser(django_user_model):
    person = django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password=ADMIN_PASSWORD
    )
    PhoneDevice.objects.create(user=person, number=PHONE, confirmed=True)
    return person


def with_next(url: str, target: str) -> str:
    return f"{url}?{urlencode({'next': target})}"


def test_the_plain_admin_loops_for_a_superuser_with_a_phone(client, superuser, plain_admin):
    """The bug: a right password, and the admin's login page again, silently."""
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": ADMIN_PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    again = client.get("/admin/")
    assert again.status_code == 302 and again["Location"].startswith("/admin/login/")


def test_sms2fa_admin_login_goes_through_the_pages(client, superuser, outbox, sms2fa_admin):
    # The default site, its registrations kept, now an Sms2faAdminSite.
    assert isinstance(admin.site, Sms2faAdminSite) and admin.site.name == "admin"
    assert admin.site.is_registered(PhoneDevice)

    index = client.get("/admin/")
    assert index.status_code == 302
    login = client.get(index["Location"])
    assert login.status_code == 302 and login["Location"] == with_next(LOGIN, "/admin/")

    password = client.post(
        login["Location"], {"username": "root", "password": ADMIN_PASSWORD, "next": "/admin/"}
    )
    assert password.status_code == 302
    assert password["Location"] == with_next(LOGIN_CODE, "/admin/")
    assert client.get("/admin/").status_code == 302  # a password alone: not yet

    code = client.post(password["Location"], {"code": outbox[-1].code, "next": "/admin/"})
    assert code.status_code == 302 and code["Location"] == "/admin/"
    page = client.get("/admin/")
    assert page.status_code == 200
    assert "/admin/django_sms2fa/phonedevice/" in page.content.decode()
    # Verified and let in: the admin's login page has nothing left to do.
    assert client.get("/admin/login/")["Location"] == "/admin/"


def test_the_next_page_is_kept_and_must_be_local(client, sms2fa_admin):
    deep = "/admin/django_sms2fa/phonedevice/"
    response = client.get(with_next("/admin/login/", deep))
    assert response["Location"] == with_next(LOGIN, deep)
    response = client.get(with_next("/admin/login/", "https://evil.example/"))
    assert response["Location"] == with_next(LOGIN, "/admin/")


def test_staff_without_a_phone_are_sent_to_add_one(client, django_user_model, sms2fa_admin):
    staff = django_user_model.objects.create_user(
        username="staffer", password="staffer-pass", is_staff=True
    )
    client.force_login(staff)
    # Logged in with a password alone, no second factor: not the admin's
    # (OTPAdminSite's rule), and told where to get one.
    assert client.get("/admin/").status_code == 302
    response = client.get(with_next("/admin/login/", "/admin/"))
    assert response["Location"] == with_next("/2fa/phones/add/", "/admin/")


def test_a_logged_in_non_staff_user_gets_the_admins_own_page(client, user, sms2fa_admin):
    client.force_login(user)
    response = client.get("/admin/login/")
    assert response.status_code == 200  # "you are logged in as …, not authorized"


def test_without_the_pages_the_otp_admin_login_is_used(rf, settings, sms2fa_admin):
    settings.ROOT_URLCONF = urlconf(path("admin/", admin.site.urls))
    from django.contrib.auth.models import AnonymousUser

    request = rf.get("/admin/login/")
    request.user = AnonymousUser()
    request.user.is_verified = lambda: False
    request.session = {}
    response = admin.site.login(request)
    assert response.status_code == 200
    response.render()
    assert 'name="otp_token"' in response.content.decode()


def test_has_permission_is_otpadminsites(rf, admin_user):
    site = Sms2faAdminSite()
    request = rf.get("/admin/")
    request.user = admin_user
    admin_user.is_verified = lambda: False
    assert not site.has_permission(request)
    admin_user.is_verified = lambda: True
    assert site.has_permission(request)


def test_use_sms2fa_login_keeps_a_custom_sites_class():
    class BrandedSite(AdminSite):
        site_header = "Branded"

    site = BrandedSite(name="branded")
    assert use_sms2fa_login(site) is site
    assert isinstance(site, Sms2faAdminSite) and isinstance(site, BrandedSite)
    assert site.site_header == "Branded" and site.name == "branded"
    assert site.login.__func__ is Sms2faAdminSite.login
    mixed = site.__class__
    use_sms2fa_login(site)
    assert site.__class__ is mixed  # once is enough


# ---------------------------------------------------------------- check W010


def w010(settings, *patterns) -> list:
    settings.ROOT_URLCONF = urlconf(*patterns)
    return [m for m in run_checks(tags=["sms2fa"]) if m.id == "sms2fa.W010"]


def test_w010_warns_about_a_mounted_plain_admin(settings):
    found = w010(settings, path("admin/", admin.site.urls))
    assert len(found) == 1
    assert "cannot log in" in found[0].msg and "Sms2faAdminSite" in found[0].hint


def test_w010_is_gone_with_sms2fa_admin(settings, sms2fa_admin):
    assert w010(settings, path("admin/", admin.site.urls)) == []


def test_w010_leaves_otp_sites_and_sites_with_their_own_login_alone(settings):
    class OwnLogin(AdminSite):
        def login(self, request, extra_context=None):  # sends it elsewhere
            raise NotImplementedError

    assigned = AdminSite(name="assigned")
    assigned.login = lambda request, extra_context=None: None
    assert (
        w010(
            settings,
            path("otp/", OTPAdminSite(name="otp").urls),
            path("own/", OwnLogin(name="own").urls),
            path("assigned/", assigned.urls),
        )
        == []
    )


def test_w010_ignores_an_unmounted_admin(settings):
    # tests/urls.py does not mount admin.site (plain): no warning there.
    assert w010(settings, path("2fa/", include("django_sms2fa.urls"))) == []


def test_w010_runs_no_query(settings, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert len(w010(settings, path("admin/", admin.site.urls))) == 1
