from two_factor.urls import urlpatterns as tf_urls

from django.http import HttpResponse
from django.urls import include, path


def home(request):
    return HttpResponse("home")


urlpatterns = [
    path("", home),
    path("", include(tf_urls)),
]
