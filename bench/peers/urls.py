from django.urls import include, path

urlpatterns = [
    path("pv/", include("phone_verify.urls")),
    path("trench/", include("trench.urls.authtoken")),
    # This app's REST API, driven through django.test.Client (run.py's REST rows).
    path("sms2fa/api/", include("django_sms2fa.api.urls")),
]
