"""Mount with ``path("api/2fa/", include("django_sms2fa.api.urls"))``.

URL names use underscores, like the pages' (``sms2fa:login_code``):
``reverse("sms2fa_api:challenge_verify", args=[challenge_id])``. The
hyphenated names of earlier releases (``sms2fa_api:challenge-verify``) still
reverse, to the same path, for one release: each is a second ``path()`` right
after its new name's, with the same route and the same view, listed in
:data:`DEPRECATED_NAMES`. A request always resolves to the first, so
``request.resolver_match.url_name`` is the new name.
"""

from django.urls import path

from . import views

app_name = "sms2fa_api"

#: Deprecated URL name → its new name; the old names go in the next release.
#: (Names added since, such as ``login_method``, never had a hyphenated form.)
DEPRECATED_NAMES = {
    "challenge-resend": "challenge_resend",
    "challenge-verify": "challenge_verify",
    "login-verify": "login_verify",
    "device-confirm": "device_confirm",
}

# Each view is made once, so a deprecated alias routes to the very same callable.
_challenge_resend = views.ChallengeResendView.as_view()
_challenge_verify = views.ChallengeVerifyView.as_view()
_login_verify = views.LoginVerifyView.as_view()
_login_method = views.LoginMethodView.as_view()
_device_confirm = views.DeviceConfirmView.as_view()
_totp_confirm = views.TotpConfirmView.as_view()
_recovery_codes = views.RecoveryCodesView.as_view()
_browsers_forget_all = views.BrowserForgetAllView.as_view()
_step_up = views.StepUpView.as_view()
_step_up_challenge = views.StepUpChallengeView.as_view()

urlpatterns = [
    path("challenges/", views.ChallengeListView.as_view(), name="challenges"),
    path("challenges/<str:challenge_id>/", views.ChallengeDetailView.as_view(), name="challenge"),
    path("challenges/<str:challenge_id>/resend/", _challenge_resend, name="challenge_resend"),
    # Deprecated alias (one release): the old hyphenated name.
    path("challenges/<str:challenge_id>/resend/", _challenge_resend, name="challenge-resend"),
    path("challenges/<str:challenge_id>/verify/", _challenge_verify, name="challenge_verify"),
    # Deprecated alias (one release): the old hyphenated name.
    path("challenges/<str:challenge_id>/verify/", _challenge_verify, name="challenge-verify"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", _login_verify, name="login_verify"),
    # Deprecated alias (one release): the old hyphenated name.
    path("login/verify/", _login_verify, name="login-verify"),
    path("login/method/", _login_method, name="login_method"),
    path("devices/", views.DeviceListView.as_view(), name="devices"),
    path("devices/<int:device_id>/", views.DeviceDetailView.as_view(), name="device"),
    path("devices/<int:device_id>/confirm/", _device_confirm, name="device_confirm"),
    # Deprecated alias (one release): the old hyphenated name.
    path("devices/<int:device_id>/confirm/", _device_confirm, name="device-confirm"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("methods/", views.MethodsView.as_view(), name="methods"),
    path("totp/", views.TotpView.as_view(), name="totp"),
    path("totp/confirm/", _totp_confirm, name="totp_confirm"),
    path("recovery-codes/", _recovery_codes, name="recovery_codes"),
    path("browsers/", views.BrowserListView.as_view(), name="browsers"),
    path("browsers/forget-all/", _browsers_forget_all, name="browsers_forget_all"),
    # After forget-all/ (which it would match). str, not uuid: a malformed id
    # answers 404 in the API's error shape.
    path("browsers/<str:browser_id>/", views.BrowserDetailView.as_view(), name="browser"),
    path("step-up/", _step_up, name="step_up"),
    path("step-up/challenge/", _step_up_challenge, name="step_up_challenge"),
]
