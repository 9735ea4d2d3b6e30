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
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from . import device_flows, flows, login_flows, ratelimit, session
from . import exceptions as domain
from .client import client_info, limit_key
from .conf import app_settings
from .forms import CodeForm, LoginForm, PhoneForm
from .masked import MaskedStr
from .models import Challenge, PhoneDevice, Purpose
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


def next_url(request: HttpRequest) -> str:
    """Where to go after a login: a safe ``next`` (same host), or ``LOGIN_REDIRECT_URL``."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return resolve_url(settings.LOGIN_REDIRECT_URL)


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
        try:
            challenge = login_flows.start_second_factor(user, client=client_info(request))
        except domain.Sms2faError as exc:
            error = page_error(exc)
            show_form_error(form, error)
            return render_page(
                request, self.template_name, self.context(request, form), error=error
            )
        if challenge is None:
            login(request, user)  # no phone: the password alone decides
            if app_settings.REQUIRE_SECOND_FACTOR:
                return HttpResponseRedirect(with_next(reverse("sms2fa:phone_add"), request))
            return HttpResponseRedirect(next_url(request))
        session.set_pending_login(request, user, user.backend, challenge)
        session.remember_challenge(request, challenge)
        return HttpResponseRedirect(with_next(reverse("sms2fa:login_code"), request))


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

    def intro(self, challenge: Challenge) -> str:
        return intro_for(challenge)

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
        }

    def _challenge(self, request: HttpRequest) -> Challenge:
        challenge = Challenge.objects.filter(pk=self.challenge_id(request)).first()
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
        form = CodeForm()
        try:
            challenge = self._challenge(request)
        except domain.Sms2faError as exc:
            return self.failed(request, form, exc)
        return render_page(request, self.template_name, self.context(request, form, challenge))

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        form = CodeForm(request.POST)
        try:
            challenge_id = self.challenge_id(request)
        except domain.Sms2faError as exc:
            return self.failed(request, form, exc)
        if "resend" in request.POST:
            channel = request.POST.get("channel") or None
            try:
                if channel is not None and channel not in CHANNELS:
                    raise domain.ChannelUnavailable()
                challenge = self.resend(request, challenge_id, channel)
            except domain.Sms2faError as exc:
                return self.failed(request, CodeForm(), exc, resend=True)
            notify(request, resent_text(challenge))
            return HttpResponseRedirect(with_next(request.path, request))
        if not form.is_valid():
            challenge = Challenge.objects.filter(pk=challenge_id).first()
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

    def challenge_id(self, request: HttpRequest) -> str:
        return self.pending(request)[0]["challenge_id"]

    def verify(self, request: HttpRequest, challenge_id: str, code: str) -> HttpResponse:
        pending, user = self.pending(request)
        device = login_flows.finish_second_factor(challenge_id, code, user=user)
        session.complete_login(request, user, backend=pending["backend"], device=device)
        return HttpResponseRedirect(next_url(request))

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
            device_flows.remove_phone(
                request.user, pk, verified_session=is_verified(request), client=client_info(request)
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
        return render_page(
            request, self.template_name, self.context(request, PhoneForm(), replaced)
        )

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        replaced = self.replaced(request, pk)
        form = PhoneForm(request.POST)
        if not form.is_valid():
            return render_page(request, self.template_name, self.context(request, form, replaced))
        try:
            device, challenge = device_flows.enrol_phone(
                request.user,
                form.cleaned_data["phone"],
                verified_session=is_verified(request),
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
        device = device_flows.confirm_phone(
            request.user, state["device_id"], challenge_id, code, client=client_info(request)
        )
        request.session.pop(ENROL_KEY, None)
        # The session has just proved this phone: verified with it from now on
        # (as in the REST edge).
        otp_login(request, device)
        notify(request, _("Your phone %(phone)s is confirmed.") % {"phone": device.masked_number})
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
