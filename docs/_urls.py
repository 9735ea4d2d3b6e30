"""The URLconf the REST API reference is generated from: the API mounted
where the install guide mounts it."""

from django.urls import include, path

#: The prefix every path on the REST API page starts with.
API_PREFIX = "api/2fa/"

urlpatterns = [path(API_PREFIX, include("django_sms2fa.api.urls"))]
