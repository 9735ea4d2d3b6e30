from django.urls import include, path

urlpatterns = [
    path("pv/", include("phone_verify.urls")),
    path("trench/", include("trench.urls.authtoken")),
]
