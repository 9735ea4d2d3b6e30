from django_otp.admin import OTPAdminSite

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from . import views

# An admin site that asks for a second factor (password, then an SMS code).
# It offers the same models as the normal admin site.
otp_admin_site = OTPAdminSite(name="otpadmin")
for model, model_admin in admin.site._registry.items():
    otp_admin_site.register(model, model_admin.__class__)

urlpatterns = [
    path("", views.home, name="home"),
    # Two admins, both for the demo user: /admin/ is django-otp's OTPAdminSite
    # (its own login form: password, device, code); /plain-admin/ is Django's
    # admin, whose login is the sms2fa pages (example/admin_site.py).
    path("admin/", otp_admin_site.urls),
    path("otp-admin/", RedirectView.as_view(url="/admin/", query_string=True)),
    path("plain-admin/", admin.site.urls),
    # The HTML pages: log in, the code, passwordless login, phones.
    path("2fa/", include("django_sms2fa.urls")),
    # DEBUG only (404 otherwise): the SMS the site sent, codes in clear.
    path("dev/outbox/", views.dev_outbox, name="dev_outbox"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="example/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("protected/", views.protected, name="protected"),
    path("api/2fa/", include("django_sms2fa.api.urls")),
    # Delivery reports from providers (SMS2FA["WEBHOOK_SECRETS"] turns them on per alias).
    path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls")),
]

if "drf_spectacular" in settings.INSTALLED_APPS:
    from drf_spectacular.views import SpectacularAPIView

    urlpatterns.append(path("api/schema/", SpectacularAPIView.as_view(), name="schema"))
