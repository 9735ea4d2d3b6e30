from django_otp.decorators import otp_required

from django.shortcuts import render

DEMO = {
    "username": "demo",
    "password": "demo-password",
    "phone": "+46 70 123 45 67",
}


def home(request):
    return render(request, "example/home.html", {"demo": DEMO})


@otp_required
def protected(request):
    """Only users who passed a second factor (e.g. an SMS code) get here."""
    return render(request, "example/protected.html")
