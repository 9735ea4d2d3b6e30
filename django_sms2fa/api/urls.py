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
    path("devices/", views.DeviceListView.as_view(), name="devices"),
    path("devices/<int:device_id>/", views.DeviceDetailView.as_view(), name="device"),
    path(
        "devices/<int:device_id>/confirm/",
        views.DeviceConfirmView.as_view(),
        name="device-confirm",
    ),
]
