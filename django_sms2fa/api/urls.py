"""Mount with ``path("api/2fa/", include("django_sms2fa.api.urls"))``."""

from django.urls import path

from . import views

app_name = "sms2fa_api"

urlpatterns = [
    path("challenges/", views.ChallengeListView.as_view(), name="challenges"),
    path("challenges/<str:challenge_id>/", views.ChallengeDetailView.as_view(), name="challenge"),
    path(
        "challenges/<str:challenge_id>/resend/",
        views.ChallengeResendView.as_view(),
        name="challenge-resend",
    ),
    path(
        "challenges/<str:challenge_id>/verify/",
        views.ChallengeVerifyView.as_view(),
        name="challenge-verify",
    ),
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", views.LoginVerifyView.as_view(), name="login-verify"),
    path("login/method/", views.LoginMethodView.as_view(), name="login-method"),
    path("devices/", views.DeviceListView.as_view(), name="devices"),
    path("devices/<int:device_id>/", views.DeviceDetailView.as_view(), name="device"),
    path(
        "devices/<int:device_id>/confirm/",
        views.DeviceConfirmView.as_view(),
        name="device-confirm",
    ),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("methods/", views.MethodsView.as_view(), name="methods"),
    path("totp/", views.TotpView.as_view(), name="totp"),
    path("totp/confirm/", views.TotpConfirmView.as_view(), name="totp-confirm"),
    path("recovery-codes/", views.RecoveryCodesView.as_view(), name="recovery-codes"),
    path("browsers/", views.BrowserListView.as_view(), name="browsers"),
    path(
        "browsers/forget-all/",
        views.BrowserForgetAllView.as_view(),
        name="browsers-forget-all",
    ),
    # After forget-all/ (which it would match). str, not uuid: a malformed id
    # answers 404 in the API's error shape.
    path("browsers/<str:browser_id>/", views.BrowserDetailView.as_view(), name="browser"),
    path("step-up/", views.StepUpView.as_view(), name="step-up"),
    path("step-up/challenge/", views.StepUpChallengeView.as_view(), name="step-up-challenge"),
]
