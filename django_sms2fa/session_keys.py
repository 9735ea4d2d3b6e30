"""Names of what the app keeps in a Django session, shared by its edges."""

#: How the session logged in: "password+sms", or "passwordless" (the phone's
#: code alone: one factor, so the session is never django-otp verified).
METHOD_KEY = "sms2fa_login_method"
PASSWORDLESS = "passwordless"
PASSWORD_AND_SMS = "password+sms"
