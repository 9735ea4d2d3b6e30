"""The HTML edge: Django form views over the flows, no JavaScript needed.

Mount with ``path("2fa/", include("django_sms2fa.urls"))``. Each request makes
one flow call; every domain error becomes a page message in one place
(:func:`page_error`); the session rules (pending login, new session key,
``django_otp.login``) are those of the REST edge, from ``session.py``.

Templates live in ``django_sms2fa/`` and extend ``django_sms2fa/base.html``,
which a site overrides to give the pages its own layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django_otp import login as otp_login

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from . import device_flows, flows, login_flows, methods, ratelimit, session
from . import exceptions as domain
from .client import client_info, limit_key
from .conf import app_settings
from .forms import AppCodeForm, CodeForm, LoginForm, PhoneForm, RecoveryCodeForm
from .masked import MaskedStr
from .models import Challenge, PhoneDevice, Purpose
from .session_keys import is_passwordless
from .types import CALL, CHANNELS, SMS, WHATSAPP

#: Session keys of the page flows (the challenge each code page is about).
PASSWORDLESS_KEY = "sms2fa_page_passwordless"
ENROL_KEY = "sms2fa_page_enrol"

#: What every page carries itself, whatever the site's middleware: Django's
#: LoginView's protections (CSRF, no caching, POST fields hidden from error
#: reports) plus a refusal to be framed (the phones page has one-click
#: buttons), and no local variable of a page or of anything it calls in an
#: error report (passwords and codes pass through them).
PAGE_PROTECTIONS = [
    sensitive_post_parameters(),
    sensitive_variables(),
    never_cache,
    xframe_options_deny,
    csrf_protect,
]

# ------------------------------------------------------------------- errors


@dataclass(frozen=True)
class PageError:
    """How a page shows a domain error."""

    code: str  # the stable error code (exceptions.py)
    message: str
    field: str | None  # the form field it belongs to, if any
    status: int
    retry_after: int | None = None
    restart: bool = False  # this code can no longer work: start again


#: Errors that belong to one form field.
FIELD_OF: dict[str, str] = {
    domain.InvalidCode.code: "code",
    domain.IncorrectCode.code: "code",
    domain.InvalidPhone.code: "phone",
    domain.NumberNotAllowed.code: "phone",
    domain.PhoneAlreadyEnrolled.code: "phone",
}

#: Errors after which the code page cannot go on: the user starts again.
RESTART: frozenset[str] = frozenset(
    {
        domain.ChallengeExpired.code,
        domain.ChallengeAlreadyUsed.code,
        domain.TooManyAttempts.code,
        domain.ChallengeCancelled.code,
        domain.ChallengeUndeliverable.code,
        domain.ChallengeNotFound.code,
        domain.LoginExpired.code,
    }
)


def page_error(exc: domain.Sms2faError, *, resend: bool = False) -> PageError:
    """The one place where domain errors become page messages and statuses.

    Messages are the errors' own translatable texts, with the attempts left or
    the wait in seconds added; a provider's detail is for the audit only.
    """
    if isinstance(exc, domain.ProviderError):
        return PageError(
            domain.DeliveryFailed.code, str(domain.DeliveryFailed.default_message), None, 503
        )
    code = exc.code
    message = str(exc.message)
    if isinstance(exc, domain.IncorrectCode) and exc.attempts_left == 0:
        # Nothing more to try with this code: say so now, not on the next guess.
        message = _("Wrong code, and no attempts are left. Start again to get a new code.")
        return PageError(code, message, None, 410, restart=True)
    if isinstance(exc, domain.IncorrectCode) and exc.attempts_left is not None:
        left = exc.attempts_left
        message = ngettext(
            "Wrong code. You have %(count)d attempt left.",
            "Wrong code. You have %(count)d attempts left.",
            left,
        ) % {"count": left}
    if isinstance(exc, (domain.RateLimited, domain.ProviderLimited)):
        seconds = max(exc.retry_after, 1)
        if isinstance(exc, domain.VerificationLocked):
            text = ngettext(
                "Too many wrong codes. Try again in %(seconds)d second.",
                "Too many wrong codes. Try again in %(seconds)d seconds.",
                seconds,
            )
        elif isinstance(exc, domain.DestinationSuspended):
            text = ngettext(
                "Codes cannot be sent to this number right now. Try again in %(seconds)d second.",
                "Codes cannot be sent to this number right now. Try again in %(seconds)d seconds.",
                seconds,
            )
        elif resend:
            text = ngettext(
                "You can ask for a new code in %(seconds)d second.",
                "You can ask for a new code in %(seconds)d seconds.",
                seconds,
            )
        else:
            text = ngettext(
                "Too many requests. Try again in %(seconds)d second.",
                "Too many requests. Try again in %(seconds)d seconds.",
                seconds,
            )
        return PageError(code, text % {"seconds": seconds}, None, 429, retry_after=seconds)
    if code in FIELD_OF:
        return PageError(code, message, FIELD_OF[code], 200)
    if code in RESTART:
        return PageError(code, message, None, 410, restart=True)
    if isinstance(exc, domain.SecondFactorRequired):
        return PageError(code, message, None, 403)
    if code in (domain.DeviceNotFound.code,):
        return PageError(code, message, None, 404)
    if isinstance(exc, (domain.DeliveryFailed, domain.LimitsUnavailable)):
        return PageError(code, message, None, 503)
    return PageError(code, message, None, 400)


# ------------------------------------------------------------------ helpers


def is_verified(request: HttpRequest) -> bool:
    check = getattr(request.user, "is_verified", None)
    return bool(check and check())


def next_url(request: HttpRequest, default: str | None = None) -> str:
    """Where to go after a login: a safe ``next`` (same host), or ``default``,
    or ``LOGIN_REDIRECT_URL``."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default if default is not None else resolve_url(settings.LOGIN_REDIRECT_URL)


def with_next(url: str, request: HttpRequest) -> str:
    """``url`` carrying the request's ``next`` along (only a safe one)."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return f"{url}?{urlencode({'next': candidate})}"
    return url


def notify(request: HttpRequest, text: str) -> None:
    # fail_silently: a site without the messages app just shows no note.
    messages.success(request, text, fail_silently=True)


def render_page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    error: PageError | None = None,
) -> HttpResponse:
    status = 200
    if error is not None:
        context = {**context, "error": error}
        status = error.status
    response = TemplateResponse(request, f"django_sms2fa/{template}", context, status=status)
    if error is not None and error.retry_after:
        response["Retry-After"] = str(error.retry_after)
    return response


def show_form_error(form: Any, error: PageError) -> None:
    """Put ``error`` on its field (or the whole form). A code is never echoed.

    An unbound form (a resend from the code page) has no errors to hold it:
    the template shows ``error`` itself."""
    if not form.is_bound:
        return
    if error.field == "code" and isinstance(form, CodeForm):
        form.reject(error.message)
    elif error.field in form.fields:
        form.add_error(error.field, error.message)
    else:
        form.add_error(None, error.message)


def step_up_first(request: HttpRequest, back: str) -> HttpResponse | None:
    """Before a sign-in method is added, replaced or removed, or recovery codes
    are made anew: ``None`` when the session proved a second factor within
    ``STEP_UP_WINDOW`` (or the user has none yet), else a redirect to the
    step-up page, which comes back to ``back`` (a page to GET).

    :raises SecondFactorRequired: the session cannot step up: it never proved
        a second factor (a passwordless login); the caller shows the error.
    """
    try:
        session.require_fresh_second_factor(request, request.user)
    except domain.StepUpRequired:
        if is_passwordless(request.session):
            raise domain.SecondFactorRequired() from None
        return HttpResponseRedirect(f"{reverse('sms2fa:step_up')}?{urlencode({'next': back})}")
    return None


# ---------------------------------------------------------------- log in


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class LoginView(View):
    """Password first; then, for a user with a confirmed phone, the code page."""

    template_name = "login.html"

    def context(self, request: HttpRequest, form: LoginForm) -> dict[str, Any]:
        return {"form": form, "next": request.GET.get("next") or request.POST.get("next", "")}

    def get(self, request: HttpRequest) -> HttpResponse:
        return render_page(request, self.template_name, self.context(request, LoginForm()))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = LoginForm(request.POST)
        if not form.is_valid():
            return render_page(request, self.template_name, self.context(request, form))
        username = form.cleaned_data["username"]
        try:
            # Counted per username and per IP before the password is checked,
            # one count with the API's login/ (ratelimit.password_guess).
            with ratelimit.password_guess(username, limit_key(client_info(request).ip)) as guess:
                user = authenticate(
                    request, username=username, password=MaskedStr(form.cleaned_data["password"])
                )
                guess.right = user is not None
        except (domain.RateLimited, domain.LimitsUnavailable) as exc:
            error = page_error(exc)
            show_form_error(form, error)
            return render_page(
                request, self.template_name, self.context(request, form), error=error
            )
        if user is None:
            form.add_error(None, domain.InvalidCredentials.default_message)
            return render_page(request, self.template_name, self.context(request, form))
        session.clear_pending_login(request)
        remembered = methods.recognised_browser(user, session.browser_cookie(request))
        if remembered is not None:
            # A browser the user asked us to remember: verified without a code.
            session.complete_remembered_login(
                request, user, backend=user.backend, device=remembered
            )
            return HttpResponseRedirect(next_url(request))
        try:
            step = login_flows.begin_second_factor(user, client=client_info(request))
        except domain.Sms2faError as exc:
            error = page_error(exc)
            show_form_error(form, error)
            return render_page(
                request, self.template_name, self.context(request, form), error=error
            )
        if step is None:
            login(request, user)  # no second factor: the password alone decides
            if app_settings.REQUIRE_SECOND_FACTOR:
                return HttpResponseRedirect(with_next(reverse("sms2fa:phone_add"), request))
            return HttpResponseRedirect(next_url(request))
        start_method(request, user, user.backend, step)
        return HttpResponseRedirect(with_next(reverse("sms2fa:login_code"), request))


def start_method(
    request: HttpRequest, user: Any, backend: str, step: login_flows.SecondFactorStep
) -> None:
    """Keep the pending login for ``step`` (the method the code page asks for)."""
    session.set_pending_login(
        request, user, backend, step.challenge, method=step.method, methods=step.methods
    )
    if step.challenge is not None:
        session.remember_challenge(request, step.challenge)


#: The links of the code page to the user's other methods.
METHOD_LABELS: dict[str, Any] = {
    methods.PHONE: gettext_lazy("Send a code to my phone instead"),
    methods.TOTP: gettext_lazy("Use my authenticator app instead"),
    methods.RECOVERY: gettext_lazy("Use a recovery code instead"),
}


#: The button that switches a challenge to another channel.
SWITCH_LABELS: dict[str, Any] = {
    SMS: gettext_lazy("Send an SMS instead"),
    CALL: gettext_lazy("Call me instead"),
    WHATSAPP: gettext_lazy("Send it by WhatsApp instead"),
}


def intro_for(challenge: Challenge) -> str:
    """What the code page says about where the code went."""
    phone = {"phone": challenge.masked_phone}
    if challenge.channel == CALL:
        return _("We are calling %(phone)s to read you a code.") % phone
    if challenge.channel == WHATSAPP:
        return _("We sent a code by WhatsApp to %(phone)s.") % phone
    return _("We sent a code by SMS to %(phone)s.") % phone


def resent_text(challenge: Challenge) -> str:
    """The notice after a resend: the truth about where the new code is."""
    if flows.uncertain_delivery_told(challenge):
        return str(UNCERTAIN_TEXT)
    if challenge.channel == CALL:
        return _("We are calling you with a new code. The old one no longer works.")
    return _("We sent you a new code. The old one no longer works.")


#: What the code page says for the methods without a challenge.
METHOD_INTROS: dict[str, Any] = {
    methods.TOTP: gettext_lazy("Enter the 6-digit code your authenticator app shows."),
    methods.RECOVERY: gettext_lazy("Enter one of your recovery codes. Each code works once."),
}


def code_form_for(method: str, data: Any = None) -> CodeForm:
    """The code field, worded and typed for the method."""
    if method == methods.RECOVERY:
        return RecoveryCodeForm(data)
    if method == methods.TOTP:
        return AppCodeForm(data)
    return CodeForm(data)


#: Shown while no provider surely took the code but one may have.
UNCERTAIN_TEXT = gettext_lazy(
    "The code may be delayed: our SMS provider did not confirm it. If it does not "
    "arrive, you can ask for a new one now."
)


class CodePageView(View):
    """A page with a code field and a resend button, for one challenge.

    Subclasses say which challenge (``challenge_id``), what a right code does
    (``verify``), how to resend (``resend``) and where to start again.
    """

    template_name = "code.html"
    title: Any = gettext_lazy("Enter the code")
    submit_label: Any = gettext_lazy("Verify")
    restart_label: Any = gettext_lazy("Start again")
    restart_url_name = "sms2fa:login"

    def challenge_id(self, request: HttpRequest) -> str:
        raise NotImplementedError

    def verify(self, request: HttpRequest, challenge_id: str, code: str) -> HttpResponse:
        raise NotImplementedError

    def resend(
        self, request: HttpRequest, challenge_id: str, channel: str | None = None
    ) -> Challenge:
        raise NotImplementedError

    def switch_method(self, request: HttpRequest, method: str) -> HttpResponse:
        """Another way to prove the same thing; only the login offers one."""
        raise domain.MethodUnavailable(method=method)

    def intro(self, challenge: Challenge) -> str:
        return intro_for(challenge)

    def make_form(self, request: HttpRequest, data: Any = None) -> CodeForm:
        return CodeForm(data)

    def extra_context(self, request: HttpRequest) -> dict[str, Any]:
        return {}

    def restart_url(self, request: HttpRequest) -> str:
        return with_next(reverse(self.restart_url_name), request)

    def context(
        self, request: HttpRequest, form: CodeForm, challenge: Challenge | None
    ) -> dict[str, Any]:
        wait = 0
        switches: list[tuple[str, str, bool]] = []
        uncertain = False
        if challenge is not None:
            ready_at = flows.resend_ready_at(challenge)
            wait = max(math.ceil((ready_at - timezone.now()).total_seconds()), 0)
            uncertain = flows.uncertain_delivery_told(challenge)
            # Leaving SMS is never held back; any other switch waits like a resend.
            held = bool(wait) and challenge.channel != SMS
            switches = [
                (channel, str(SWITCH_LABELS[channel]), held)
                for channel in flows.channels_for(challenge.phone)
                if channel != challenge.channel
            ]
        return {
            # No challenge (an authenticator app, a recovery code): nothing to resend.
            "can_resend": challenge is not None,
            # "Call me instead" and the like: the other ways the route offers.
            "channel_switches": switches,
            "delivery_uncertain": uncertain,
            "form": form,
            "title": self.title,
            "submit_label": self.submit_label,
            "intro": self.intro(challenge) if challenge is not None else "",
            "resend_wait": wait,
            "restart_url": self.restart_url(request),
            "restart_label": self.restart_label,
            "next": request.GET.get("next") or request.POST.get("next", ""),
            "page_url": request.path,
            **self.extra_context(request),
        }

    def _challenge(self, request: HttpRequest) -> Challenge | None:
        challenge_id = self.challenge_id(request)
        if not challenge_id:
            return None  # a method without a challenge
        challenge = Challenge.objects.filter(pk=challenge_id).first()
        if challenge is None:
            raise domain.ChallengeNotFound()
        return challenge

    def failed(
        self, request: HttpRequest, form: CodeForm, exc: domain.Sms2faError, *, resend: bool = False
    ) -> HttpResponse:
        error = page_error(exc, resend=resend)
        challenge = None
        if not error.restart:
            try:
                challenge = self._challenge(request)
            except domain.Sms2faError:
                pass
        if not error.restart:
            show_form_error(form, error)
        return render_page(
            request, self.template_name, self.context(request, form, challenge), error=error
        )

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        form = self.make_form(request)
        try:
            challenge = self._challenge(request)
        except domain.Sms2faError as exc:
            return self.failed(request, form, exc)
        return render_page(request, self.template_name, self.context(request, form, challenge))

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        form = self.make_form(request, request.POST)
        try:
            challenge_id = self.challenge_id(request)
        except domain.Sms2faError as exc:
            return self.failed(request, form, exc)
        if "method" in request.POST:
            try:
                return self.switch_method(request, str(request.POST["method"]))
            except domain.Sms2faError as exc:
                return self.failed(request, self.make_form(request), exc)
        if "resend" in request.POST:
            channel = request.POST.get("channel") or None
            try:
                if channel is not None and channel not in CHANNELS:
                    raise domain.ChannelUnavailable()
                challenge = self.resend(request, challenge_id, channel)
            except domain.Sms2faError as exc:
                return self.failed(request, self.make_form(request), exc, resend=True)
            notify(request, resent_text(challenge))
            return HttpResponseRedirect(with_next(request.path, request))
        if not form.is_valid():
            challenge = Challenge.objects.filter(pk=challenge_id).first() if challenge_id else None
            return render_page(request, self.template_name, self.context(request, form, challenge))
        try:
            return self.verify(request, challenge_id, form.cleaned_data["code"])
        except domain.Sms2faError as exc:
            return self.failed(request, form, exc)


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class LoginCodeView(CodePageView):
    """The code after the password: logs in with the session verified."""

    def pending(self, request: HttpRequest) -> tuple[dict[str, str], Any]:
        # One look-up per request (a view instance serves one request).
        if not hasattr(self, "_pending"):
            self._pending = session.pending_login_user(request)
        return self._pending

    def method(self, request: HttpRequest) -> str:
        return self.pending(request)[0].get("method", methods.PHONE)

    def challenge_id(self, request: HttpRequest) -> str:
        return self.pending(request)[0]["challenge_id"]

    def make_form(self, request: HttpRequest, data: Any = None) -> CodeForm:
        try:
            method = self.method(request)
        except domain.Sms2faError:
            method = methods.PHONE
        return code_form_for(method, data)

    def extra_context(self, request: HttpRequest) -> dict[str, Any]:
        try:
            pending = self.pending(request)[0]
        except domain.Sms2faError:
            return {}
        method = pending.get("method", methods.PHONE)
        others = [m for m in pending.get("methods", []) if m != method and m in METHOD_LABELS]
        extra: dict[str, Any] = {
            "other_methods": [(m, str(METHOD_LABELS[m])) for m in others],
            "offer_remember": methods.remembering_enabled(),
            "remember_days": app_settings.REMEMBER_BROWSER_DAYS,
        }
        if method != methods.PHONE:
            extra["intro"] = METHOD_INTROS[method]
        return extra

    def verify(self, request: HttpRequest, challenge_id: str, code: str) -> HttpResponse:
        pending, user = self.pending(request)
        client = client_info(request)
        device = login_flows.finish_with_method(
            user, self.method(request), code, challenge_id=challenge_id, client=client
        )
        session.complete_login(request, user, backend=pending["backend"], device=device)
        response = HttpResponseRedirect(next_url(request))
        if request.POST.get("remember") and methods.remembering_enabled():
            cookie = methods.remember_browser(user, device, client=client)
            session.set_browser_cookie(response, request, cookie)
        if methods.method_of(device) == methods.RECOVERY:
            left = methods.recovery_codes_left(user)
            notify(
                request,
                ngettext(
                    "You signed in with a recovery code. %(count)d code is left.",
                    "You signed in with a recovery code. %(count)d codes are left.",
                    left,
                )
                % {"count": left},
            )
        return response

    def switch_method(self, request: HttpRequest, method: str) -> HttpResponse:
        pending, user = self.pending(request)
        step = login_flows.begin_second_factor(user, method=method, client=client_info(request))
        if step is None:  # every method was removed meanwhile
            session.clear_pending_login(request)
            raise domain.LoginExpired()
        start_method(request, user, pending["backend"], step)
        return HttpResponseRedirect(with_next(request.path, request))

    def resend(
        self, request: HttpRequest, challenge_id: str, channel: str | None = None
    ) -> Challenge:
        _pending, user = self.pending(request)
        challenge = flows.resend_challenge(
            challenge_id,
            user=user,
            purpose=Purpose.LOGIN,
            client=client_info(request),
            channel=channel,
        )
        # A pending login lives as long as its code: a resend extends both.
        session.extend_pending_login(request, challenge)
        return challenge


# ------------------------------------------------------- passwordless login


class PasswordlessEnabledMixin:
    """Passwordless login is opt-in (``PASSWORDLESS_LOGIN`` and
    ``PhoneCodeBackend``): off, its pages do not exist and send nothing."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not session.passwordless_enabled():
            raise Http404(_("Passwordless login is not enabled on this site."))
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class PasswordlessView(PasswordlessEnabledMixin, View):
    """Log in with the phone alone: the number, then its code."""

    template_name = "passwordless.html"

    def context(self, request: HttpRequest, form: PhoneForm) -> dict[str, Any]:
        return {"form": form, "next": request.GET.get("next") or request.POST.get("next", "")}

    def get(self, request: HttpRequest) -> HttpResponse:
        return render_page(request, self.template_name, self.context(request, PhoneForm()))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = PhoneForm(request.POST)
        if not form.is_valid():
            return render_page(request, self.template_name, self.context(request, form))
        try:
            challenge = login_flows.start_passwordless(
                form.cleaned_data["phone"], client=client_info(request)
            )
        except domain.Sms2faError as exc:
            error = page_error(exc)
            show_form_error(form, error)
            return render_page(
                request, self.template_name, self.context(request, form), error=error
            )
        # Same answer whether or not the number has an account (no enumeration).
        request.session[PASSWORDLESS_KEY] = str(challenge.pk)
        session.remember_challenge(request, challenge)
        return HttpResponseRedirect(with_next(reverse("sms2fa:passwordless_code"), request))


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class PasswordlessCodeView(PasswordlessEnabledMixin, CodePageView):
    restart_url_name = "sms2fa:passwordless"

    def intro(self, challenge: Challenge) -> str:
        # Worded for both cases: the page must not tell whether the number
        # has an account.
        phone = {"phone": challenge.masked_phone}
        if challenge.channel == CALL:
            return _("If %(phone)s belongs to an account, we are calling it with a code.") % phone
        if challenge.channel == WHATSAPP:
            return (
                _("If %(phone)s belongs to an account, we sent a code to it by WhatsApp.") % phone
            )
        return _("If %(phone)s belongs to an account, we sent a code to it by SMS.") % phone

    def challenge_id(self, request: HttpRequest) -> str:
        challenge_id = request.session.get(PASSWORDLESS_KEY)
        if not challenge_id:
            raise domain.LoginExpired()
        return str(challenge_id)

    def verify(self, request: HttpRequest, challenge_id: str, code: str) -> HttpResponse:
        user, device = login_flows.finish_passwordless(challenge_id, code)
        request.session.pop(PASSWORDLESS_KEY, None)
        session.complete_passwordless_login(request, user, device)
        return HttpResponseRedirect(next_url(request))

    def resend(
        self, request: HttpRequest, challenge_id: str, channel: str | None = None
    ) -> Challenge:
        return flows.resend_challenge(
            challenge_id, purpose=Purpose.PASSWORDLESS, client=client_info(request), channel=channel
        )


# ------------------------------------------------------------------- phones


class PhonePageMixin(LoginRequiredMixin):
    """Phone pages are for a logged-in user (``settings.LOGIN_URL`` otherwise)."""


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class PhoneListView(PhonePageMixin, View):
    template_name = "phones.html"

    def context(self, request: HttpRequest) -> dict[str, Any]:
        phones = PhoneDevice.objects.filter(user=request.user).order_by("pk")
        return {
            "phones": phones,
            "verified": is_verified(request),
            "enrolling": bool(request.session.get(ENROL_KEY)),
        }

    def get(self, request: HttpRequest) -> HttpResponse:
        return render_page(request, self.template_name, self.context(request))


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class PhoneRemoveView(PhonePageMixin, View):
    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        try:
            # A confirmed phone is a sign-in method: removing it needs a fresh
            # second factor. One still being enrolled goes at any time.
            fresh = False
            if PhoneDevice.objects.filter(user=request.user, pk=pk, confirmed=True).exists():
                redirect = step_up_first(request, reverse("sms2fa:phones"))
                if redirect is not None:
                    return redirect
                fresh = True
            device_flows.remove_phone(
                request.user, pk, verified_session=fresh, client=client_info(request)
            )
        except domain.Sms2faError as exc:
            return render_page(
                request,
                PhoneListView.template_name,
                PhoneListView().context(request),
                error=page_error(exc),
            )
        notify(request, _("The phone was removed."))
        return HttpResponseRedirect(reverse("sms2fa:phones"))


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class PhoneAddView(PhonePageMixin, View):
    """Add a phone (or, with ``pk``, replace one): a code to it confirms it."""

    template_name = "phone_add.html"

    def replaced(self, request: HttpRequest, pk: int | None) -> PhoneDevice | None:
        if pk is None:
            return None
        device = PhoneDevice.objects.filter(user=request.user, pk=pk, confirmed=True).first()
        if device is None:
            raise Http404(str(domain.DeviceNotFound.default_message))
        return device

    def context(
        self, request: HttpRequest, form: PhoneForm, replaced: PhoneDevice | None
    ) -> dict[str, Any]:
        return {"form": form, "replaced": replaced, "next": request.GET.get("next", "")}

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        replaced = self.replaced(request, pk)
        try:
            # Step up before the form, not after the number is typed.
            redirect = step_up_first(request, request.get_full_path())
        except domain.SecondFactorRequired:
            redirect = None  # the POST says why it cannot
        if redirect is not None:
            return redirect
        return render_page(
            request, self.template_name, self.context(request, PhoneForm(), replaced)
        )

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        replaced = self.replaced(request, pk)
        form = PhoneForm(request.POST)
        if not form.is_valid():
            return render_page(request, self.template_name, self.context(request, form, replaced))
        try:
            redirect = step_up_first(request, request.get_full_path())
            if redirect is not None:
                return redirect
            device, challenge = device_flows.enrol_phone(
                request.user,
                form.cleaned_data["phone"],
                # The fresh second factor just checked is stricter than "verified".
                verified_session=True,
                replaces=pk,
                client=client_info(request),
            )
        except domain.Sms2faError as exc:
            error = page_error(exc)
            show_form_error(form, error)
            return render_page(
                request, self.template_name, self.context(request, form, replaced), error=error
            )
        request.session[ENROL_KEY] = {"device_id": device.pk, "challenge_id": str(challenge.pk)}
        session.remember_challenge(request, challenge)
        return HttpResponseRedirect(reverse("sms2fa:phone_confirm"))


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class PhoneConfirmView(PhonePageMixin, CodePageView):
    title = gettext_lazy("Confirm your phone")
    submit_label = gettext_lazy("Confirm")
    restart_url_name = "sms2fa:phone_add"

    def _state(self, request: HttpRequest) -> dict[str, Any]:
        state = request.session.get(ENROL_KEY)
        if not isinstance(state, dict) or "challenge_id" not in state:
            raise domain.ChallengeNotFound()
        return state

    def challenge_id(self, request: HttpRequest) -> str:
        return str(self._state(request)["challenge_id"])

    def verify(self, request: HttpRequest, challenge_id: str, code: str) -> HttpResponse:
        state = self._state(request)
        # The user's first sign-in method (no phone, no app, no recovery code yet)?
        first_method = not methods.user_methods(request.user)
        device = device_flows.confirm_phone(
            request.user, state["device_id"], challenge_id, code, client=client_info(request)
        )
        request.session.pop(ENROL_KEY, None)
        # The session has just proved this phone: verified with it from now on
        # (as in the REST edge).
        otp_login(request, device)
        notify(request, _("Your phone %(phone)s is confirmed.") % {"phone": device.masked_number})
        if first_method:
            # Nothing was proved before: this code is the session's second factor.
            session.mark_second_factor(request)
            shown = show_first_recovery_codes(request)
            if shown is not None:
                return shown
        return HttpResponseRedirect(reverse("sms2fa:phones"))

    def resend(
        self, request: HttpRequest, challenge_id: str, channel: str | None = None
    ) -> Challenge:
        return flows.resend_challenge(
            challenge_id,
            user=request.user,
            purpose=[Purpose.VERIFY_PHONE, Purpose.CHANGE_PHONE],
            client=client_info(request),
            channel=channel,
        )


# ------------------------------------------------------------------- log out


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class LogoutView(View):
    """``logout/``: a button (GET) that posts the logout (POST).

    A GET never logs out (a link or an image on another site could). The
    session ends also when ``SecondFactorMiddleware`` shows its user as
    anonymous (password given, code not yet). Then to a safe ``next``,
    ``settings.LOGOUT_REDIRECT_URL``, or this app's login page.
    """

    template_name = "logout.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        from .logout import has_session_to_end

        signed_in = request.user.is_authenticated or has_session_to_end(request)
        context = {"signed_in": signed_in, "next": request.GET.get("next", "")}
        return render_page(request, self.template_name, context)

    def post(self, request: HttpRequest) -> HttpResponse:
        from .logout import end_session

        end_session(request)
        candidate = request.POST.get("next") or request.GET.get("next") or ""
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return HttpResponseRedirect(candidate)
        target = getattr(settings, "LOGOUT_REDIRECT_URL", None)
        return HttpResponseRedirect(resolve_url(target) if target else reverse("sms2fa:login"))


# ------------------------------------------------------------ security pages

#: Session keys of the security pages: the authenticator app being added (its
#: device id) and the phone challenge of a step-up.
TOTP_KEY = "sms2fa_page_totp"
STEP_UP_KEY = "sms2fa_page_step_up"

#: The step-up page's links to the user's other methods.
STEP_UP_LABELS: dict[str, Any] = {
    methods.PHONE: gettext_lazy("Use my phone instead"),
    methods.TOTP: gettext_lazy("Use my authenticator app instead"),
    methods.RECOVERY: gettext_lazy("Use a recovery code instead"),
}

#: Refused "make new codes": recovery codes stand in for another method.
NO_METHOD_FOR_CODES = methods.NO_METHOD_FOR_CODES


class SecurityPageMixin(LoginRequiredMixin):
    """The security pages are for a logged-in user (``settings.LOGIN_URL`` otherwise)."""


def has_app(user: Any) -> bool:
    """Whether ``user`` has a confirmed authenticator app."""
    try:
        methods.device_for(user, methods.TOTP)
    except domain.MethodUnavailable:
        return False
    return True


def can_make_recovery_codes(user: Any) -> bool:
    """Recovery codes back up a phone or an app: a user needs one of them first."""
    return methods.can_have_recovery_codes(user)


def security_context(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    browsers = list(methods.browsers_of(user))
    return {
        "phones": PhoneDevice.objects.filter(user=user, confirmed=True).order_by("pk"),
        "totp_available": methods.totp_available(),
        "has_app": has_app(user),
        "recovery_left": methods.recovery_codes_left(user),
        "can_make_codes": can_make_recovery_codes(user),
        # Offered while the site remembers browsers, and listed while any of
        # the user's still count (the setting may have been turned off since).
        "show_browsers": methods.remembering_enabled() or bool(browsers),
        "browsers": browsers,
        "verified": is_verified(request),
    }


def security_page(request: HttpRequest, error: PageError | None = None) -> HttpResponse:
    return render_page(request, "security.html", security_context(request), error=error)


def recovery_codes_page(
    request: HttpRequest, made: list[str] | None = None, error: PageError | None = None
) -> HttpResponse:
    """The recovery codes page: how many are left, or (``made``) the new codes,
    shown this once: they are in this response only, never in the session."""
    context = {
        "codes": made or [],
        "left": methods.recovery_codes_left(request.user),
        "can_make_codes": can_make_recovery_codes(request.user),
        "done_url": reverse("sms2fa:security"),
    }
    return render_page(request, "recovery_codes.html", context, error=error)


def show_first_recovery_codes(request: HttpRequest) -> HttpResponse | None:
    """Right after the user's first sign-in method is confirmed: make recovery
    codes and show them, so that losing that method does not lock the user
    out. ``None`` when the user still has unused ones."""
    if methods.recovery_codes_left(request.user):
        return None
    made = methods.generate_recovery_codes(request.user, client=client_info(request))
    return recovery_codes_page(request, made)


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class SecurityView(SecurityPageMixin, View):
    """``security/``: every sign-in method of the user, and remembered browsers."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return security_page(request)


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class TotpAddView(SecurityPageMixin, View):
    """``security/app/``: a QR code and its secret (GET), then the app's first
    code confirms it (POST). Reloading the page keeps the secret being added:
    the user need not scan again."""

    template_name = "totp_add.html"

    def pending(self, request: HttpRequest) -> Any:
        """The app this session is adding, or ``None``."""
        device_id = request.session.get(TOTP_KEY)
        if device_id is None:
            return None
        try:
            return methods.pending_totp(request.user, device_id)
        except domain.DeviceNotFound:
            request.session.pop(TOTP_KEY, None)
            return None

    def context(self, request: HttpRequest, device: Any, form: CodeForm) -> dict[str, Any]:
        issuer = methods.issuer_for(request.get_host())
        return {
            "form": form,
            # segno's own SVG of the otpauth:// URI: no user input is markup in it.
            "qr_svg": mark_safe(methods.totp_qr_svg(device, issuer)),
            "secret": methods.totp_secret(device),
            "issuer": issuer,
        }

    def start(self, request: HttpRequest) -> Any:
        """The app being added: this session's, or a new one.

        :raises SecondFactorRequired, MethodUnavailable, MethodAlreadyEnrolled:
        """
        device = self.pending(request)
        if device is None:
            device = methods.start_totp(request.user, client=client_info(request))
            request.session[TOTP_KEY] = device.pk
        return device

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            redirect = step_up_first(request, reverse("sms2fa:totp_add"))
            if redirect is not None:
                return redirect
            device = self.start(request)
        except domain.Sms2faError as exc:
            return security_page(request, error=method_page_error(exc))
        return render_page(
            request, self.template_name, self.context(request, device, AppCodeForm())
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        form = AppCodeForm(request.POST)
        try:
            # Checked again: the window may have closed while the user scanned.
            # The step-up comes back to this page, with the same secret.
            redirect = step_up_first(request, reverse("sms2fa:totp_add"))
            if redirect is not None:
                return redirect
            device = self.pending(request)
            if device is None:
                raise domain.DeviceNotFound()
        except domain.Sms2faError as exc:
            return security_page(request, error=method_page_error(exc))
        if not form.is_valid():
            return render_page(request, self.template_name, self.context(request, device, form))
        try:
            device = methods.confirm_totp(
                request.user, device.pk, form.cleaned_data["code"], client=client_info(request)
            )
        except (domain.MethodAlreadyEnrolled, domain.DeviceNotFound) as exc:
            request.session.pop(TOTP_KEY, None)
            return security_page(request, error=method_page_error(exc))
        except domain.Sms2faError as exc:
            error = page_error(exc)
            show_form_error(form, error)
            return render_page(
                request, self.template_name, self.context(request, device, form), error=error
            )
        request.session.pop(TOTP_KEY, None)
        if not is_verified(request) and not is_passwordless(request.session):
            # A first method: the session has just proved it (as on the
            # phone's confirm page), or the next request would be anonymous.
            otp_login(request, device)
            session.mark_second_factor(request)
        notify(request, _("Your authenticator app is set up."))
        shown = show_first_recovery_codes(request)
        if shown is not None:
            return shown
        return HttpResponseRedirect(reverse("sms2fa:security"))


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class TotpRemoveView(SecurityPageMixin, View):
    """``security/app/remove/`` (POST): remove the authenticator app."""

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            redirect = step_up_first(request, reverse("sms2fa:security"))
            if redirect is not None:
                return redirect
        except domain.Sms2faError as exc:
            return security_page(request, error=method_page_error(exc))
        removed = methods.remove_totp(request.user, actor=request.user, client=client_info(request))
        request.session.pop(TOTP_KEY, None)
        if removed:
            notify(request, _("The authenticator app was removed."))
        return HttpResponseRedirect(reverse("sms2fa:security"))


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class RecoveryCodesView(SecurityPageMixin, View):
    """``security/recovery-codes/``: how many codes are left (GET); new codes,
    shown once, every earlier one void (POST)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return recovery_codes_page(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        if not can_make_recovery_codes(request.user):
            error = PageError(domain.MethodUnavailable.code, str(NO_METHOD_FOR_CODES), None, 400)
            return recovery_codes_page(request, error=error)
        try:
            redirect = step_up_first(request, reverse("sms2fa:recovery_codes"))
            if redirect is not None:
                return redirect
        except domain.Sms2faError as exc:
            return recovery_codes_page(request, error=method_page_error(exc))
        made = methods.generate_recovery_codes(request.user, client=client_info(request))
        return recovery_codes_page(request, made)


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class BrowserForgetView(SecurityPageMixin, View):
    """``security/browsers/<id>/forget/`` (POST). It only takes trust away:
    no step-up."""

    def post(self, request: HttpRequest, pk: Any) -> HttpResponse:
        try:
            methods.forget_browser(
                request.user, pk, actor=request.user, client=client_info(request)
            )
        except domain.DeviceNotFound:
            text = _("This browser is not remembered.")
            return security_page(
                request, error=PageError(domain.DeviceNotFound.code, text, None, 404)
            )
        notify(request, _("The browser was forgotten: it will be asked for a code again."))
        return HttpResponseRedirect(reverse("sms2fa:security"))


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class BrowsersForgetAllView(SecurityPageMixin, View):
    """``security/browsers/forget-all/`` (POST): forget every remembered
    browser, this one's cookie included."""

    def post(self, request: HttpRequest) -> HttpResponse:
        forgotten = methods.forget_browsers(
            request.user, actor=request.user, client=client_info(request)
        )
        notify(
            request,
            ngettext(
                "%(count)d browser was forgotten.",
                "%(count)d browsers were forgotten.",
                forgotten,
            )
            % {"count": forgotten},
        )
        response = HttpResponseRedirect(reverse("sms2fa:security"))
        session.delete_browser_cookie(response)
        return response


def method_page_error(exc: domain.Sms2faError) -> PageError:
    """:func:`page_error`, worded for the security pages where the generic
    text speaks of phones."""
    if isinstance(exc, domain.DeviceNotFound):
        text = _("No authenticator app is being added. Start again.")
        return PageError(exc.code, text, None, 404)
    if isinstance(exc, domain.MethodUnavailable):
        return PageError(exc.code, str(exc.message), None, 404)
    if isinstance(exc, domain.MethodAlreadyEnrolled):
        return PageError(exc.code, str(exc.message), None, 409)
    return page_error(exc)


# ----------------------------------------------------------------- step-up


@method_decorator(PAGE_PROTECTIONS, name="dispatch")
class StepUpView(SecurityPageMixin, View):
    """``security/confirm/``: prove a second factor again before changing a
    sign-in method; then back to a safe ``next``.

    The phone gets a code only when the user asks (a button); an app's code or
    a recovery code is typed at once. A passwordless session cannot step up:
    its one factor was the phone, and a second factor is no password.
    """

    template_name = "step_up.html"

    def available(self, request: HttpRequest) -> list[str]:
        return [m for m in methods.user_methods(request.user) if m in STEP_UP_LABELS]

    def chosen(self, request: HttpRequest, available: list[str]) -> str:
        """The method the page is about: asked for, or the user's default.

        :raises MethodUnavailable:
        """
        method = request.POST.get("method") or request.GET.get("method") or available[0]
        if method not in available:
            raise domain.MethodUnavailable(method=str(method)[:20])
        return str(method)

    def challenge(self, request: HttpRequest) -> Challenge | None:
        challenge_id = request.session.get(STEP_UP_KEY)
        if not challenge_id:
            return None
        return Challenge.objects.filter(pk=challenge_id, user_id=request.user.pk).first()

    def page_link(self, request: HttpRequest, method: str) -> str:
        query = {"method": method}
        nxt = request.GET.get("next") or request.POST.get("next")
        if nxt:
            query["next"] = nxt
        return f"{request.path}?{urlencode(query)}"

    def context(
        self, request: HttpRequest, available: list[str], method: str, form: CodeForm
    ) -> dict[str, Any]:
        challenge = self.challenge(request) if method == methods.PHONE else None
        phone = None
        wait = 0
        if method == methods.PHONE:
            from .adapter import get_adapter

            phone = get_adapter().get_login_device(request.user)
        if challenge is not None:
            ready_at = flows.resend_ready_at(challenge)
            wait = max(math.ceil((ready_at - timezone.now()).total_seconds()), 0)
        intro = intro_for(challenge) if challenge is not None else METHOD_INTROS.get(method, "")
        return {
            "method": method,
            "form": form,
            "challenge": challenge,
            "phone": phone.masked_number if phone is not None else "",
            "intro": intro,
            "resend_wait": wait,
            "other_methods": [
                (m, str(STEP_UP_LABELS[m]), self.page_link(request, m))
                for m in available
                if m != method
            ],
            "next": request.GET.get("next") or request.POST.get("next", ""),
            "page_url": self.page_link(request, method),
            "cancel_url": reverse("sms2fa:security"),
        }

    def refused(self, request: HttpRequest) -> HttpResponse:
        """A passwordless session: log in with the password and a code instead."""
        context = {"blocked": True, "security_url": reverse("sms2fa:security")}
        return render_page(
            request, self.template_name, context, error=page_error(domain.SecondFactorRequired())
        )

    def render(
        self,
        request: HttpRequest,
        available: list[str],
        method: str,
        form: CodeForm,
        error: PageError | None = None,
    ) -> HttpResponse:
        return render_page(
            request, self.template_name, self.context(request, available, method, form), error=error
        )

    def start(self, request: HttpRequest) -> tuple[list[str], str] | HttpResponse:
        """The user's methods and the one asked for, or the answer that ends
        the request here (a passwordless session, nothing to prove, a method
        the user lacks)."""
        if is_passwordless(request.session):
            return self.refused(request)
        available = self.available(request)
        if not available:  # nothing to prove: nothing asks for it
            return HttpResponseRedirect(next_url(request, reverse("sms2fa:security")))
        try:
            return available, self.chosen(request, available)
        except domain.Sms2faError as exc:
            method = available[0]
            return self.render(
                request, available, method, code_form_for(method), method_page_error(exc)
            )

    def get(self, request: HttpRequest) -> HttpResponse:
        started = self.start(request)
        if isinstance(started, HttpResponse):
            return started
        available, method = started
        return self.render(request, available, method, code_form_for(method))

    def post(self, request: HttpRequest) -> HttpResponse:
        started = self.start(request)
        if isinstance(started, HttpResponse):
            return started
        available, method = started
        if method == methods.PHONE and ("send" in request.POST or "resend" in request.POST):
            try:
                notice = self.send(request, resend="resend" in request.POST)
            except domain.Sms2faError as exc:
                if page_error(exc).restart:
                    request.session.pop(STEP_UP_KEY, None)
                return self.render(
                    request,
                    available,
                    method,
                    code_form_for(method),
                    page_error(exc, resend="resend" in request.POST),
                )
            if notice:
                notify(request, notice)
            return HttpResponseRedirect(self.page_link(request, method))
        form = code_form_for(method, request.POST)
        if not form.is_valid():
            return self.render(request, available, method, form)
        try:
            device = self.verify(request, method, form.cleaned_data["code"])
        except domain.Sms2faError as exc:
            error = page_error(exc)
            if error.restart:
                request.session.pop(STEP_UP_KEY, None)
                form = code_form_for(method)
            else:
                show_form_error(form, error)
            return self.render(request, available, method, form, error)
        request.session.pop(STEP_UP_KEY, None)
        if not is_verified(request):
            # Verified from now on: a new session key for the new privilege.
            request.session.cycle_key()
            otp_login(request, device)
        session.mark_second_factor(request)
        return HttpResponseRedirect(next_url(request, reverse("sms2fa:security")))

    def send(self, request: HttpRequest, *, resend: bool) -> str | None:
        """Send the phone a code (or a new one); returns the page's notice
        (none for the first code: the page says where it went)."""
        challenge_id = request.session.get(STEP_UP_KEY)
        if resend and challenge_id:
            challenge = flows.resend_challenge(
                challenge_id, user=request.user, purpose=Purpose.LOGIN, client=client_info(request)
            )
            return resent_text(challenge)
        step = login_flows.begin_second_factor(
            request.user, method=methods.PHONE, client=client_info(request)
        )
        if step is None or step.challenge is None:
            raise domain.MethodUnavailable(method=methods.PHONE)
        request.session[STEP_UP_KEY] = str(step.challenge.pk)
        session.remember_challenge(request, step.challenge)
        return None

    def verify(self, request: HttpRequest, method: str, code: str) -> Any:
        """Check the code; returns the device that proved it."""
        challenge_id = None
        if method == methods.PHONE:
            challenge_id = request.session.get(STEP_UP_KEY)
            if not challenge_id:
                raise domain.ChallengeNotFound()
        return login_flows.finish_with_method(
            request.user, method, code, challenge_id=challenge_id, client=client_info(request)
        )
