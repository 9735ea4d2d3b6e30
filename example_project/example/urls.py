from django_otp.admin import OTPAdminSite

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

# An admin site that asks for a second factor (password, then an SMS code).
# It offers the same models as the normal admin site.
otp_admin_site = OTPAdminSite(name="otpadmin")
for model, model_admin in admin.site._registry.items():
    otp_admin_site.register(model, model_admin.__class__)

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("otp-admin/", otp_admin_site.urls),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="example/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("protected/", views.protected, name="protected"),
]
