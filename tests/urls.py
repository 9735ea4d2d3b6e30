from django_otp.admin import OTPAdminSite
from django_otp.decorators import otp_required

from django.http import HttpResponse
from django.urls import include, path

otp_admin_site = OTPAdminSite(name="otpadmin")


@otp_required
def protected(request):
    return HttpResponse(f"hello {request.user.get_username()}")


urlpatterns = [
    path("otpadmin/", otp_admin_site.urls),
    path("protected/", protected, name="protected"),
    path("api/2fa/", include("django_sms2fa.api.urls")),
    path("2fa/", include("django_sms2fa.urls")),
]
