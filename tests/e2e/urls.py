"""URLs the browser tests are served: the example site's, plus a protected
page that names the logged-in user (the example's own page does too, but this
one needs no example template)."""

from django_otp.decorators import otp_required
from example.urls import urlpatterns as example_urlpatterns

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.html import escape


@otp_required
def whoami(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        f"<!doctype html><title>Signed in</title>"
        f"<p id='whoami'>Signed in as {escape(request.user.get_username())}</p>"
    )


urlpatterns = [path("e2e/whoami/", whoami, name="e2e_whoami"), *example_urlpatterns]
