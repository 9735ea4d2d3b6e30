from django_otp.decorators import otp_required

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse_lazy

from django_sms2fa.providers import locmem
from django_sms2fa.session_keys import METHOD_KEY

from . import sms

DEMO = {
    "username": "demo",
    "password": "demo-password",
    "phone": "+46 70 123 45 67",
}


def home(request):
    return render(
        request,
        "example/home.html",
        {"demo": DEMO, "login_method": request.session.get(METHOD_KEY), "debug": settings.DEBUG},
    )


# The login page is named, not read from OTP_LOGIN_URL: otp_required reads that
# setting once, when this module is imported, not on each request.
@otp_required(login_url=reverse_lazy("sms2fa:login"))
def protected(request):
    """Only users who passed a second factor (e.g. an SMS code) get here."""
    return render(request, "example/protected.html")


def dev_outbox(request):
    """DEVELOPMENT ONLY: the SMS this process sent, newest first, codes in clear.

    It stands in for the phone, so a newcomer can log in from the browser
    alone. With DEBUG off it does not exist (404).
    """
    if not settings.DEBUG:
        raise Http404()
    entries = [
        {"sent_at": sent.sent_at, "to": sent.to, "text": sent.text} for sent in sms.sent_messages()
    ]
    # The test provider's outbox too, for test runs that drive this site
    # with django_sms2fa.providers.locmem (it keeps no time: oldest first).
    entries += [{"sent_at": None, "to": s.to, "text": s.text} for s in reversed(locmem.outbox)]
    return render(request, "example/dev_outbox.html", {"entries": entries})
