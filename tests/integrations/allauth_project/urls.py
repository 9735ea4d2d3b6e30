from django.http import HttpResponse
from django.urls import include, path


def home(request):
    return HttpResponse("home")


urlpatterns = [
    path("", home),
    path("accounts/", include("allauth.urls")),
]
