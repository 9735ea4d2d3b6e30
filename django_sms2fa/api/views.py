"""The REST edge: validate → one flow call → answer. No business rule here.

Every view answers errors in one shape (see ``errors.py``) and authenticates
with the site's DRF authentication classes minus HTTP Basic, which would let a
password alone act for a user with a second factor.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django_otp import login as otp_login
from rest_framework import status
from rest_framework.authentication import BasicAuthentication
from rest_framework.fields import DateTimeField
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from django.contrib.auth import authenticate, login
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from .. import device_flows, flows, login_flows, methods, ratelimit, session
from ..adapter import get_adapter
from ..client import client_info, limit_key
from ..conf import app_settings
from ..exceptions import (
    ChallengeNotFound,
    DeviceNotFound,
    InvalidCredentials,
    LoginExpired,
    MethodUnavailable,
    PasswordlessDisabled,
    SecondFactorRequired,
)
from ..masked import MaskedStr
from ..models import Challenge, PhoneDevice, Purpose
from ..session_keys import VERIFIED_AT_KEY, is_passwordless
from . import serializers as s
from .errors import exception_handler
from .parsers import JSONOnlyNegotiation, JSONParser
from .schema import extend_schema

PHONE_BACKEND = "django_sms2fa.backends.PhoneCodeBackend"

#: What every endpoint that checks a code can answer (for the schema).
CODE_CHECK_ERRORS: dict[int, list[str]] = {
    400: ["invalid", "parse_error", "invalid_code", "incorrect_code"],
    409: ["challenge_queued"],
    410: ["challenge_expired", "challenge_used", "challenge_cancelled", "challenge_undeliverable"],
    413: ["request_too_large"],
    415: ["unsupported_media_type"],
    429: ["rate_limited", "too_many_attempts", "verification_locked"],
    503: ["delivery_failed", "service_unavailable"],
}


def is_verified(request: Request) -> bool:
    check = getattr(request.user, "is_verified", None)
    return bool(check and check())


# Passwords and codes arrive here: a 500's report (AdminEmailHandler) shows
# no POST field and no local variable of the view or of anything it calls.
@method_decorator([sensitive_post_parameters(), sensitive_variables()], name="dispatch")
class Sms2faAPIView(APIView):
    permission_classes = [AllowAny]
    # JSON only: a cross-site HTML form can post form-encoded bodies, and the
    # anonymous endpoints (login/, challenges/) are not CSRF-protected. The
    # parser turns any body it cannot take (deep nesting included) into 400.
    parser_classes = [JSONParser]
    # JSON answers only, whatever Accept says (no browsable HTML, no 406).
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation

    def get_authenticators(self) -> list[Any]:
        return [
            auth()
            for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES
            if not issubclass(auth, BasicAuthentication)
        ]

    def get_exception_handler(self):  # noqa: ANN201 - DRF's signature
        return exception_handler

    def owned_challenge(self, request: Request, challenge_id: Any) -> Challenge:
        """The challenge, if this client may act on it; else ChallengeNotFound.

        A client owns the challenges it created in this session, those of its
        pending login, and (when logged in) its user's own.
        """
        challenge = Challenge.objects.filter(pk=_uuid(challenge_id)).first()
        if challenge is None:
            raise ChallengeNotFound()
        self.check_owner(request, challenge)
        return challenge

    def check_owner(self, request: Request, challenge: Challenge) -> None:
        """:meth:`owned_challenge` on a challenge already read (a flow's
        ``accept=``): raises ChallengeNotFound unless this client owns it."""
        pending = session.get_pending_login(request)
        owned = (
            session.owns_challenge(request, challenge.pk)
            or (pending is not None and pending["challenge_id"] == str(challenge.pk))
            or (
                request.user.is_authenticated
                and challenge.user_id is not None
                and challenge.user_id == request.user.pk
            )
        )
        if not owned:
            raise ChallengeNotFound()


def _uuid(value: Any) -> Any:
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _challenge_body(challenge: Challenge) -> dict[str, Any]:
    return s.ChallengeSerializer(challenge).data


def _require_passwordless() -> None:
    """Passwordless login is opt-in (``PASSWORDLESS_LOGIN`` and
    ``PhoneCodeBackend``): off, its endpoints answer 404 and send nothing."""
    if not session.passwordless_enabled():
        raise PasswordlessDisabled()


# ------------------------------------------------------------------ challenges


class ChallengeListView(Sms2faAPIView):
    @extend_schema(
        request=s.ChallengeRequestSerializer,
        responses={
            202: s.answer(
                s.ChallengeSerializer,
                "The code is on its way (for passwordless and a number without an "
                "account, the same answer and no SMS).",
            ),
            **s.error_responses(
                {
                    400: [
                        "invalid",
                        "parse_error",
                        "invalid_phone",
                        "number_not_allowed",
                        "channel_unavailable",
                    ],
                    403: ["permission_denied"],
                    404: ["passwordless_disabled"],
                    413: ["request_too_large"],
                    415: ["unsupported_media_type"],
                    429: ["rate_limited", "verification_locked", "destination_suspended"],
                    503: ["delivery_failed", "service_unavailable"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        examples=s.request_examples(
            passwordless={"phone": "+46701234567", "purpose": "passwordless"},
            verify_phone={"phone": "+46701234567", "purpose": "verify_phone"},
        ),
        summary="Send a code to a phone (verify_phone or passwordless)",
        description="A passwordless request for a number without an account gets the same "
        "answer as one with an account, and no SMS.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.ChallengeRequestSerializer, request)
        if data["purpose"] == Purpose.PASSWORDLESS:
            _require_passwordless()
            challenge = login_flows.start_passwordless(
                data["phone"], client=client_info(request), channel=data["channel"]
            )
        else:
            user = request.user if request.user.is_authenticated else None
            challenge = flows.request_challenge(
                phone=data["phone"],
                purpose=Purpose.VERIFY_PHONE,
                user=user,
                client=client_info(request),
                channel=data["channel"],
            )
        session.remember_challenge(request, challenge)
        return Response(_challenge_body(challenge), status=status.HTTP_202_ACCEPTED)


class ChallengeDetailView(Sms2faAPIView):
    @extend_schema(
        responses={
            204: s.answer(None, "Cancelled: its code no longer works."),
            **s.error_responses(
                {
                    403: ["permission_denied"],
                    404: ["challenge_not_found"],
                    429: ["rate_limited"],
                }
            ),
        },
        parameters=s.schema_parameters(challenge_id=True),
        summary="Cancel a challenge",
    )
    def delete(self, request: Request, challenge_id: str) -> Response:
        challenge = self.owned_challenge(request, challenge_id)
        flows.cancel_challenge(challenge.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChallengeResendView(Sms2faAPIView):
    @extend_schema(
        request=s.ResendSerializer,
        responses={
            202: s.answer(s.ChallengeSerializer, "A new code is on its way."),
            **s.error_responses(
                {
                    400: ["invalid", "parse_error", "number_not_allowed", "channel_unavailable"],
                    403: ["permission_denied"],
                    404: ["challenge_not_found", "passwordless_disabled"],
                    409: ["challenge_queued"],
                    410: [
                        "challenge_expired",
                        "challenge_used",
                        "challenge_cancelled",
                        "challenge_undeliverable",
                    ],
                    429: [
                        "rate_limited",
                        "too_many_attempts",
                        "verification_locked",
                        "destination_suspended",
                    ],
                    503: ["delivery_failed", "service_unavailable"],
                }
            ),
        },
        parameters=s.schema_parameters(challenge_id=True),
        summary="Send a new code; the old one stops working",
        description="Sends are at least `RESEND_INTERVAL` seconds apart (`resend_at`); "
        'sooner answers 429 `rate_limited`. A body `{"channel": "call"}` switches the '
        "code to a voice call (or `whatsapp`) where the number's route offers it "
        "(`channels`); a switch is not held back by `RESEND_INTERVAL`. After a send that "
        "may not have happened (`delivery_uncertain`), a resend is open at once.",
    )
    def post(self, request: Request, challenge_id: str) -> Response:
        data = _valid(s.ResendSerializer, request)

        def accept(challenge: Challenge) -> None:
            self.check_owner(request, challenge)
            if challenge.purpose == Purpose.PASSWORDLESS:
                _require_passwordless()

        # Ownership is checked on the row the flow reads: one read.
        challenge = flows.resend_challenge(
            challenge_id,
            client=client_info(request),
            accept=accept,
            channel=data.get("channel"),
        )
        # A pending login lives as long as its code: a resend extends both.
        session.extend_pending_login(request, challenge)
        return Response(_challenge_body(challenge), status=status.HTTP_202_ACCEPTED)


class ChallengeVerifyView(Sms2faAPIView):
    @extend_schema(
        request=s.CodeSerializer,
        responses={
            200: s.answer(s.VerifiedSerializer, "The code is right."),
            **s.error_responses(
                {
                    **CODE_CHECK_ERRORS,
                    403: ["permission_denied"],
                    404: ["challenge_not_found", "passwordless_disabled"],
                }
            ),
        },
        parameters=s.schema_parameters(challenge_id=True),
        examples=s.request_examples(code={"code": "123456"}),
        summary="Check a code: a phone_token (verify_phone) or a login (passwordless)",
        description="For `verify_phone`, the answer's `phone_token` is redeemed by "
        "registration code (`login_flows.redeem_phone_token`); for `passwordless`, the user "
        "is logged in and the answer carries `user`.",
    )
    def post(self, request: Request, challenge_id: str) -> Response:
        data = _valid(s.CodeSerializer, request)

        def accept(challenge: Challenge) -> None:
            self.check_owner(request, challenge)
            if challenge.purpose == Purpose.PASSWORDLESS:
                _require_passwordless()
            elif challenge.device_id is not None:
                # Login codes go to login/verify/, device codes to devices/{id}/confirm/.
                raise ChallengeNotFound()

        # Ownership and purpose are checked on the row the flow reads: one read.
        verified = flows.verify_challenge(
            challenge_id,
            data["code"],
            purpose=(Purpose.PASSWORDLESS, Purpose.VERIFY_PHONE),
            accept=accept,
        )
        if verified.purpose == Purpose.PASSWORDLESS:
            user, device = login_flows.passwordless_login_of(verified)
            # Logged in but not verified: one factor, bound to that phone (session.py).
            session.complete_passwordless_login(request._request, user, device)
            body = get_adapter().login_response(request, user)
            return Response({"verified": True, "purpose": verified.purpose, **body})
        return Response(
            {
                "verified": True,
                "purpose": verified.purpose,
                "phone_token": login_flows.issue_phone_token(verified),
            }
        )


# ---------------------------------------------------------------------- login


class LoginView(Sms2faAPIView):
    @extend_schema(
        request=s.LoginSerializer,
        responses={
            200: s.answer(s.LoginAnswerSerializer, "The password is right."),
            **s.error_responses(
                {
                    400: ["invalid", "parse_error", "invalid_credentials", "number_not_allowed"],
                    403: ["permission_denied"],
                    413: ["request_too_large"],
                    415: ["unsupported_media_type"],
                    429: ["rate_limited", "verification_locked", "destination_suspended"],
                    503: ["delivery_failed", "service_unavailable"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        examples=s.request_examples(
            login={"username": "alice", "password": "correct horse battery staple"}
        ),
        summary="Password first; a code follows when the user has a phone",
        description="`mfa_required: true` with a `challenge` (the code went to the user's "
        "phone; nobody is logged in yet: send it to `login/verify/`), or `mfa_required: "
        "false` with `user`, logged in (`enrollment_required: true` when the site requires "
        "a second factor and the user has no phone yet).",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.LoginSerializer, request)
        # Counted per username and per IP before the password is checked
        # (ratelimit.password_guess); locked answers 429 alike for every username.
        client = client_info(request)
        with ratelimit.password_guess(data["username"], limit_key(client.ip)) as guess:
            user = authenticate(
                request._request, username=data["username"], password=MaskedStr(data["password"])
            )
            guess.right = user is not None
        if user is None:
            raise InvalidCredentials()
        session.clear_pending_login(request)
        remembered = methods.recognised_browser(user, session.browser_cookie(request))
        if remembered is not None:
            session.complete_remembered_login(
                request._request, user, backend=user.backend, device=remembered
            )
            body = {"mfa_required": False, "remembered": True}
            return Response({**body, **get_adapter().login_response(request, user)})
        step = login_flows.begin_second_factor(user, client=client)
        if step is not None:
            return Response(_start_method(request, user, user.backend, step))
        login(request._request, user)
        body = {"mfa_required": False, **get_adapter().login_response(request, user)}
        if app_settings.REQUIRE_SECOND_FACTOR:
            # Logged in, but only to enrol a phone (devices/): the site
            # requires a second factor before anything else.
            body["enrollment_required"] = True
        return Response(body)


class LoginVerifyView(Sms2faAPIView):
    @extend_schema(
        request=s.LoginVerifySerializer,
        responses={
            200: s.answer(s.LoginAnswerSerializer, "Logged in."),
            **s.error_responses(
                {
                    400: [
                        "invalid",
                        "parse_error",
                        "invalid_code",
                        "incorrect_code",
                        "method_unavailable",
                    ],
                    403: ["permission_denied"],
                    404: ["challenge_not_found"],
                    409: ["challenge_queued"],
                    410: [
                        "login_expired",
                        "challenge_expired",
                        "challenge_used",
                        "challenge_cancelled",
                        "challenge_undeliverable",
                    ],
                    413: ["request_too_large"],
                    415: ["unsupported_media_type"],
                    429: ["rate_limited", "too_many_attempts", "verification_locked"],
                    503: ["delivery_failed", "service_unavailable"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        examples=s.request_examples(
            code={"challenge": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "code": "123456"}
        ),
        summary="The code after the password; logs in with the phone verified",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.LoginVerifySerializer, request)
        pending, user = session.pending_login_user(request)
        method = pending.get("method", methods.PHONE)
        if method == methods.PHONE and pending["challenge_id"] != str(data.get("challenge")):
            raise ChallengeNotFound()
        client = client_info(request)
        device = login_flows.finish_with_method(
            user, method, data["code"], challenge_id=pending["challenge_id"], client=client
        )
        # New session key, verified with the device (see session.py).
        session.complete_login(request._request, user, backend=pending["backend"], device=device)
        body = {"mfa_required": False, **get_adapter().login_response(request, user)}
        if methods.method_of(device) == methods.RECOVERY:
            body["recovery_codes_left"] = methods.recovery_codes_left(user)
        response = Response(body)
        if data["remember"] and methods.remembering_enabled():
            cookie = methods.remember_browser(user, device, client=client)
            session.set_browser_cookie(response, request._request, cookie)
        return response


class LoginMethodView(Sms2faAPIView):
    @extend_schema(
        request=s.LoginMethodSerializer,
        responses={
            200: s.answer(s.LoginAnswerSerializer, "The pending login now asks for this method."),
            **s.error_responses(
                {
                    400: ["invalid", "parse_error", "method_unavailable", "number_not_allowed"],
                    403: ["permission_denied"],
                    410: ["login_expired"],
                    413: ["request_too_large"],
                    415: ["unsupported_media_type"],
                    429: ["rate_limited", "verification_locked", "destination_suspended"],
                    503: ["delivery_failed", "service_unavailable"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        examples=s.request_examples(totp={"method": "totp"}),
        summary="Between password and code: use another of the user's methods",
        description="`phone` sends a code (a new challenge); `totp` and `recovery` send "
        "nothing. The answer is the one `login/` gives with `mfa_required: true`.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.LoginMethodSerializer, request)
        pending, user = session.pending_login_user(request)
        step = login_flows.begin_second_factor(
            user, method=data["method"], client=client_info(request), channel=data["channel"]
        )
        if step is None:  # every method was removed meanwhile
            session.clear_pending_login(request)
            raise LoginExpired()
        return Response(_start_method(request, user, pending["backend"], step))


def _start_method(
    request: Request, user: Any, backend: str, step: login_flows.SecondFactorStep
) -> dict[str, Any]:
    """Keep the pending login for ``step``; the answer that says so."""
    session.set_pending_login(
        request, user, backend, step.challenge, method=step.method, methods=step.methods
    )
    if step.challenge is not None:
        session.remember_challenge(request, step.challenge)
    return {
        "mfa_required": True,
        "method": step.method,
        "methods": step.methods,
        "challenge": _challenge_body(step.challenge) if step.challenge is not None else None,
    }


# -------------------------------------------------------------------- devices


class DeviceListView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: s.answer(s.DeviceSerializer(many=True), "The user's phones, oldest first."),
            **s.error_responses({403: ["not_authenticated"], 429: ["rate_limited"]}),
        },
        parameters=s.schema_parameters(),
        summary="The user's phones",
    )
    def get(self, request: Request) -> Response:
        devices = PhoneDevice.objects.filter(user=request.user).order_by("pk")
        return Response(s.DeviceSerializer(devices, many=True).data)

    @extend_schema(
        request=s.DeviceEnrolSerializer,
        responses={
            202: s.answer(
                s.EnrolmentSerializer, "The phone is added unconfirmed; a code is on its way to it."
            ),
            **s.error_responses(
                {
                    400: ["invalid", "parse_error", "invalid_phone", "number_not_allowed"],
                    403: [
                        "not_authenticated",
                        "permission_denied",
                        "second_factor_required",
                        "step_up_required",
                    ],
                    404: ["device_not_found"],
                    409: ["phone_already_enrolled"],
                    413: ["request_too_large"],
                    415: ["unsupported_media_type"],
                    429: ["rate_limited", "verification_locked", "destination_suspended"],
                    503: ["delivery_failed", "service_unavailable"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        examples=s.request_examples(
            add={"phone": "+46701234567"}, replace={"phone": "+46701234567", "replaces": 1}
        ),
        summary="Add a phone (or replace one); a code confirms it",
        description="A user who already has a second factor must have proved one in this "
        "session within `STEP_UP_WINDOW` (403 `second_factor_required`, or `step_up_required`: "
        "prove one again with `step-up/`). The new phone is confirmed with "
        "`devices/{device_id}/confirm/`.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.DeviceEnrolSerializer, request)
        session.require_fresh_second_factor(request._request, request.user)
        device, challenge = device_flows.enrol_phone(
            request.user,
            data["phone"],
            # The flow's own guard stays: a site adapter may not count a phone
            # as a second factor (``has_second_factor``) that the flow counts.
            verified_session=is_verified(request),
            replaces=data.get("replaces"),
            client=client_info(request),
        )
        session.remember_challenge(request, challenge)
        return Response(
            {"device": s.DeviceSerializer(device).data, "challenge": _challenge_body(challenge)},
            status=status.HTTP_202_ACCEPTED,
        )


class DeviceConfirmView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=s.DeviceConfirmSerializer,
        responses={
            200: s.answer(
                s.DeviceConfirmedSerializer,
                "The phone is confirmed. `recovery_codes` (shown once) when it is the "
                "user's first sign-in method.",
            ),
            **s.error_responses(
                {
                    **CODE_CHECK_ERRORS,
                    403: ["not_authenticated", "permission_denied"],
                    404: ["device_not_found", "challenge_not_found"],
                }
            ),
        },
        parameters=s.schema_parameters(device_id=True),
        examples=s.request_examples(
            code={"challenge": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "code": "123456"}
        ),
        summary="Confirm a phone with its code",
    )
    def post(self, request: Request, device_id: int) -> Response:
        data = _valid(s.DeviceConfirmSerializer, request)
        user, client = request.user, client_info(request)
        first_method = not methods.user_methods(user)
        device = device_flows.confirm_phone(
            user, device_id, data["challenge"], data["code"], client=client
        )
        # The session has just proved this phone: verified with it from now on
        # (also when it replaced the phone the session was verified with).
        otp_login(request._request, device)
        body = dict(s.DeviceSerializer(device).data)
        if not first_method:
            return Response(body)
        # Nothing was proved before: this code is the session's second factor,
        # and the user's first recovery codes are made and shown, once.
        session.mark_second_factor(request._request)
        body["recovery_codes"] = methods.generate_recovery_codes(user, actor=user, client=client)
        return _no_store(Response(body))


class DeviceDetailView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            204: s.answer(None, "Removed."),
            **s.error_responses(
                {
                    403: [
                        "not_authenticated",
                        "permission_denied",
                        "second_factor_required",
                        "step_up_required",
                    ],
                    404: ["device_not_found"],
                    429: ["rate_limited"],
                }
            ),
        },
        parameters=s.schema_parameters(device_id=True),
        summary="Remove a phone (a fresh second factor required)",
        description="Needs a second factor proved within `STEP_UP_WINDOW` (else 403 "
        "`step_up_required`: `step-up/` first). Every remembered browser is forgotten.",
    )
    def delete(self, request: Request, device_id: int) -> Response:
        session.require_fresh_second_factor(request._request, request.user)
        device_flows.remove_phone(
            request.user,
            device_id,
            verified_session=is_verified(request),
            client=client_info(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# -------------------------------------------------------------- sign-in methods

#: The phone challenge ``step-up/challenge/`` sent: ``step-up/`` takes that
#: one only (not a login's, not another session's).
STEP_UP_CHALLENGE_KEY = "sms2fa_step_up_challenge"

#: A change of sign-in method: refused without a recent second factor.
STEP_UP_ERRORS: dict[int, list[str]] = {
    403: ["not_authenticated", "permission_denied", "second_factor_required", "step_up_required"],
}


def _step_up_until(request: Request) -> Any:
    """Until when this session may change sign-in methods without stepping up."""
    django_request = request._request
    if not session.second_factor_fresh(django_request):
        return None
    proved = django_request.session[VERIFIED_AT_KEY]
    return datetime.fromtimestamp(proved + app_settings.STEP_UP_WINDOW, tz=UTC)


def _iso(value: Any) -> Any:
    return DateTimeField().to_representation(value) if value else None


def _no_store(response: Response) -> Response:
    """Secrets shown once (a TOTP secret, recovery codes) must not be cached."""
    add_never_cache_headers(response)
    return response


def _totp_summary(user: Any) -> dict[str, Any] | None:
    if not methods.totp_available():
        return None
    try:
        device = methods.device_for(user, methods.TOTP)
    except MethodUnavailable:
        try:
            device = methods.pending_totp(user)
        except DeviceNotFound:
            return None
    return s.TotpSummarySerializer(device).data


def _recovery_summary(user: Any) -> dict[str, int] | None:
    try:
        methods.device_for(user, methods.RECOVERY)
    except MethodUnavailable:
        return None
    return {"left": methods.recovery_codes_left(user)}


def _browsers(user: Any) -> Any:
    return s.BrowserSerializer(methods.browsers_of(user), many=True).data


class MethodsView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: s.answer(s.MethodsSerializer, "The user's sign-in methods."),
            **s.error_responses({403: ["not_authenticated"], 429: ["rate_limited"]}),
        },
        parameters=s.schema_parameters(),
        summary="The user's sign-in methods, remembered browsers and step-up window",
        description="`methods` lists what the user can sign in with, the default first. "
        "`step_up_until` is null when adding, replacing or removing a method needs "
        "`step-up/` first.",
    )
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(
            {
                "methods": methods.user_methods(user),
                "phones": s.DeviceSerializer(
                    PhoneDevice.objects.filter(user=user).order_by("pk"), many=True
                ).data,
                "totp": _totp_summary(user),
                "recovery_codes": _recovery_summary(user),
                "browsers": _browsers(user),
                "remember_enabled": methods.remembering_enabled(),
                "step_up_until": _iso(_step_up_until(request)),
            }
        )


class TotpView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={
            201: s.answer(
                s.TotpStartedSerializer,
                "Shown once: scan `qr_svg` (or type `secret`), then confirm with the "
                "app's first code at `totp/confirm/`.",
            ),
            **s.error_responses(
                {
                    **STEP_UP_ERRORS,
                    400: ["method_unavailable"],
                    409: ["method_already_enrolled"],
                    429: ["rate_limited"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        summary="Start adding an authenticator app (a fresh second factor required)",
        description="An earlier app still being added is discarded. No body is read.",
    )
    def post(self, request: Request) -> Response:
        session.require_fresh_second_factor(request._request, request.user)
        device = methods.start_totp(request.user, client=client_info(request))
        issuer = methods.issuer_for(request.get_host())
        body = {
            "id": device.pk,
            "secret": methods.totp_secret(device),
            "otpauth_url": methods.totp_config_url(device, issuer),
            "qr_svg": methods.totp_qr_svg(device, issuer),
        }
        return _no_store(Response(body, status=status.HTTP_201_CREATED))

    @extend_schema(
        responses={
            204: s.answer(None, "Removed (also one still being added)."),
            **s.error_responses(
                {**STEP_UP_ERRORS, 400: ["method_unavailable"], 429: ["rate_limited"]}
            ),
        },
        parameters=s.schema_parameters(),
        summary="Remove the authenticator app (a fresh second factor required)",
        description="Every remembered browser is forgotten.",
    )
    def delete(self, request: Request) -> Response:
        session.require_fresh_second_factor(request._request, request.user)
        removed = methods.remove_totp(request.user, actor=request.user, client=client_info(request))
        if not removed:
            raise MethodUnavailable(method=methods.TOTP)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TotpConfirmView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=s.TotpConfirmSerializer,
        responses={
            200: s.answer(
                s.TotpConfirmedSerializer,
                "The app is confirmed. `recovery_codes` (shown once) when the user had none.",
            ),
            **s.error_responses(
                {
                    400: ["invalid", "parse_error", "invalid_code", "incorrect_code"],
                    403: ["not_authenticated", "permission_denied"],
                    404: ["device_not_found"],
                    409: ["method_already_enrolled"],
                    413: ["request_too_large"],
                    415: ["unsupported_media_type"],
                    429: ["rate_limited", "verification_locked"],
                    503: ["service_unavailable"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        examples=s.request_examples(code={"code": "123456"}),
        summary="Confirm the authenticator app with its first code",
        description="A wrong code counts toward the account's wrong-code lockout, the one "
        "every method shares.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.TotpConfirmSerializer, request)
        user, client = request.user, client_info(request)
        device = methods.confirm_totp(user, data.get("id"), data["code"], client=client)
        if not is_verified(request) and not is_passwordless(request.session):
            # A first second factor, proved now: the session is verified with
            # it (else it would be anonymous from the next request on).
            otp_login(request._request, device)
            session.mark_second_factor(request._request)
        body: dict[str, Any] = {"confirmed": True}
        if methods.recovery_codes_left(user) == 0:
            body["recovery_codes"] = methods.generate_recovery_codes(
                user, actor=user, client=client
            )
        return _no_store(Response(body))


class RecoveryCodesView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: s.answer(s.RecoveryCodesLeftSerializer, "How many unused codes remain."),
            **s.error_responses({403: ["not_authenticated"], 429: ["rate_limited"]}),
        },
        parameters=s.schema_parameters(),
        summary="How many recovery codes are left",
    )
    def get(self, request: Request) -> Response:
        return Response({"left": methods.recovery_codes_left(request.user)})

    @extend_schema(
        request=None,
        responses={
            201: s.answer(
                s.RecoveryCodesSerializer, "New codes, shown once; the earlier ones stop working."
            ),
            **s.error_responses(
                {**STEP_UP_ERRORS, 400: ["method_unavailable"], 429: ["rate_limited"]}
            ),
        },
        parameters=s.schema_parameters(),
        summary="Make new recovery codes (a fresh second factor required)",
        description="Recovery codes back up a phone or an authenticator app: a user with "
        "neither gets 400 `method_unavailable`. No body is read.",
    )
    def post(self, request: Request) -> Response:
        user = request.user
        session.require_fresh_second_factor(request._request, user)
        codes = methods.generate_recovery_codes(user, actor=user, client=client_info(request))
        return _no_store(Response({"codes": codes}, status=status.HTTP_201_CREATED))


class BrowserListView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: s.answer(s.BrowserSerializer(many=True), "Remembered browsers, newest first."),
            **s.error_responses({403: ["not_authenticated"], 429: ["rate_limited"]}),
        },
        parameters=s.schema_parameters(),
        summary="The browsers that skip the second factor",
    )
    def get(self, request: Request) -> Response:
        return Response(_browsers(request.user))


class BrowserDetailView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            204: s.answer(None, "Forgotten: it asks for a second factor again."),
            **s.error_responses(
                {
                    403: ["not_authenticated", "permission_denied"],
                    404: ["device_not_found"],
                    429: ["rate_limited"],
                }
            ),
        },
        parameters=s.schema_parameters(browser_id=True),
        summary="Forget a remembered browser",
    )
    def delete(self, request: Request, browser_id: str) -> Response:
        try:
            methods.forget_browser(
                request.user, browser_id, actor=request.user, client=client_info(request)
            )
        except DeviceNotFound:
            raise DeviceNotFound(_("This browser is not remembered.")) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class BrowserForgetAllView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={
            200: s.answer(s.ForgottenSerializer, "How many browsers were still remembered."),
            **s.error_responses(
                {403: ["not_authenticated", "permission_denied"], 429: ["rate_limited"]}
            ),
        },
        parameters=s.schema_parameters(),
        summary="Forget every remembered browser (this one's cookie too)",
        description="No body is read.",
    )
    def post(self, request: Request) -> Response:
        forgotten = methods.forget_browsers(
            request.user, actor=request.user, client=client_info(request)
        )
        response = Response({"forgotten": forgotten})
        session.delete_browser_cookie(response)
        return response


def _may_step_up(request: Request) -> None:
    """A session that logged in with a phone's code alone has one factor: a
    second proof of the same kind would not make two (log in with the password)."""
    if is_passwordless(request.session):
        raise SecondFactorRequired()


class StepUpChallengeView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=s.StepUpChallengeSerializer,
        responses={
            202: s.answer(s.ChallengeSerializer, "The code is on its way to the user's phone."),
            **s.error_responses(
                {
                    400: [
                        "invalid",
                        "parse_error",
                        "method_unavailable",
                        "number_not_allowed",
                        "channel_unavailable",
                    ],
                    403: ["not_authenticated", "permission_denied", "second_factor_required"],
                    413: ["request_too_large"],
                    415: ["unsupported_media_type"],
                    429: ["rate_limited", "verification_locked", "destination_suspended"],
                    503: ["delivery_failed", "service_unavailable"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        examples=s.request_examples(sms={}, call={"channel": "call"}),
        summary="Send a code to the user's phone, to step up with it",
        description="Then `step-up/` with `method: phone`, the code and this `challenge`. "
        "A passwordless session cannot step up (403 `second_factor_required`).",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.StepUpChallengeSerializer, request)
        _may_step_up(request)
        step = login_flows.begin_second_factor(
            request.user,
            method=methods.PHONE,
            client=client_info(request),
            channel=data["channel"],
        )
        if step is None or step.challenge is None:
            raise MethodUnavailable(method=methods.PHONE)
        session.remember_challenge(request, step.challenge)
        request.session[STEP_UP_CHALLENGE_KEY] = str(step.challenge.pk)
        return Response(_challenge_body(step.challenge), status=status.HTTP_202_ACCEPTED)


class StepUpView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=s.StepUpSerializer,
        responses={
            200: s.answer(s.SteppedUpSerializer, "Proved: sign-in methods may change until then."),
            **s.error_responses(
                {
                    **CODE_CHECK_ERRORS,
                    400: [*CODE_CHECK_ERRORS[400], "method_unavailable"],
                    403: ["not_authenticated", "permission_denied", "second_factor_required"],
                    404: ["challenge_not_found"],
                }
            ),
        },
        parameters=s.schema_parameters(),
        examples=s.request_examples(
            totp={"method": "totp", "code": "123456"},
            phone={
                "method": "phone",
                "code": "123456",
                "challenge": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            },
        ),
        summary="Prove a second factor again (step-up)",
        description="Adding, replacing or removing a sign-in method, or making new recovery "
        "codes, needs a second factor proved within `STEP_UP_WINDOW`. Wrong codes count "
        "toward the account's wrong-code lockout, the one every method shares.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.StepUpSerializer, request)
        _may_step_up(request)
        user, method = request.user, data["method"]
        challenge_id = None
        if method == methods.PHONE:
            challenge_id = request.session.get(STEP_UP_CHALLENGE_KEY)
            if challenge_id is None or challenge_id != str(data.get("challenge")):
                raise ChallengeNotFound()
        device = login_flows.finish_with_method(
            user, method, data["code"], challenge_id=challenge_id, client=client_info(request)
        )
        request.session.pop(STEP_UP_CHALLENGE_KEY, None)
        if not is_verified(request):
            otp_login(request._request, device)
        session.mark_second_factor(request._request)
        return Response({"step_up_until": _iso(_step_up_until(request))})


@sensitive_variables()
def _valid(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --------------------------------------------------------------------- log out


class LogoutView(Sms2faAPIView):
    """``POST logout/``: end the session; 204 whether or not there was one.

    CSRF is checked as for every session-authenticated call, and also for a
    session ``SecondFactorMiddleware`` shows as anonymous (password given,
    code not yet), which DRF's ``SessionAuthentication`` would let through
    unchecked: another site must not end a user's session, half-done or not.
    A client authenticated otherwise (a token header) sends no ambient
    credential, so it is not asked for a CSRF token.
    """

    @extend_schema(
        request=None,
        responses={
            204: s.answer(None, "Logged out (also when nobody was logged in)."),
            **s.error_responses({403: ["permission_denied"], 429: ["rate_limited"]}),
        },
        parameters=s.schema_parameters(),
        summary="Log out: end the session",
        description="Session-authenticated clients send the `X-CSRFToken` header (the "
        "`csrftoken` cookie's value). No body is read.",
    )
    def post(self, request: Request) -> Response:
        from rest_framework.authentication import SessionAuthentication

        from ..logout import end_session, has_session_to_end

        by_token = request.user.is_authenticated and not isinstance(
            request.successful_authenticator, SessionAuthentication
        )
        if has_session_to_end(request._request) and not by_token:
            # DRF has already checked it for a session it authenticated; the
            # half-logged-in one it saw as anonymous is checked here.
            SessionAuthentication().enforce_csrf(request)
        end_session(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)
