"""The HTML pages. Mount with ``path("2fa/", include("django_sms2fa.urls"))``."""

from django.urls import path

from . import views

app_name = "sms2fa"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/code/", views.LoginCodeView.as_view(), name="login_code"),
    path("phone-login/", views.PasswordlessView.as_view(), name="passwordless"),
    path("phone-login/code/", views.PasswordlessCodeView.as_view(), name="passwordless_code"),
    path("phones/", views.PhoneListView.as_view(), name="phones"),
    path("phones/add/", views.PhoneAddView.as_view(), name="phone_add"),
    path("phones/confirm/", views.PhoneConfirmView.as_view(), name="phone_confirm"),
    path("phones/<int:pk>/change/", views.PhoneAddView.as_view(), name="phone_change"),
    path("phones/<int:pk>/remove/", views.PhoneRemoveView.as_view(), name="phone_remove"),
    path("security/", views.SecurityView.as_view(), name="security"),
    path("security/confirm/", views.StepUpView.as_view(), name="step_up"),
    path("security/app/", views.TotpAddView.as_view(), name="totp_add"),
    path("security/app/remove/", views.TotpRemoveView.as_view(), name="totp_remove"),
    path("security/recovery-codes/", views.RecoveryCodesView.as_view(), name="recovery_codes"),
    path(
        "security/browsers/<uuid:pk>/forget/",
        views.BrowserForgetView.as_view(),
        name="browser_forget",
    ),
    path(
        "security/browsers/forget-all/",
        views.BrowsersForgetAllView.as_view(),
        name="browsers_forget_all",
    ),
    path("logout/", views.LogoutView.as_view(), name="logout"),
]
