"""The REST edge: validate → one flow call → answer. No business rule here.

Every view answers errors in one shape (see ``errors.py``) and authenticates
with the site's DRF authentication classes minus HTTP Basic, which would let a
password alone act for a user with a second factor.
"""

from __future__ import annotations

from typing import Any

from django_otp import login as otp_login
from rest_framework import status
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from django.contrib.auth import authenticate, login
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from .. import device_flows, flows, login_flows, ratelimit
from ..adapter import get_adapter
from ..client import client_info, limit_key
from ..conf import app_settings
from ..exceptions import (
    ChallengeNotFound,
    InvalidCredentials,
    PasswordlessDisabled,
)
from ..masked import MaskedStr
from ..models import Challenge, PhoneDevice, Purpose
from . import serializers as s
from . import session
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
        challenge = login_flows.start_second_factor(user, client=client_info(request))
        if challenge is not None:
            session.set_pending_login(request, user, user.backend, challenge)
            session.remember_challenge(request, challenge)
            return Response({"mfa_required": True, "challenge": _challenge_body(challenge)})
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
                    400: ["invalid", "parse_error", "invalid_code", "incorrect_code"],
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
        if pending["challenge_id"] != str(data["challenge"]):
            raise ChallengeNotFound()
        device = login_flows.finish_second_factor(data["challenge"], data["code"], user=user)
        # New session key, verified with the device (see session.py).
        session.complete_login(request._request, user, backend=pending["backend"], device=device)
        return Response({"mfa_required": False, **get_adapter().login_response(request, user)})


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
                    403: ["not_authenticated", "permission_denied", "second_factor_required"],
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
        description="A user who already has a confirmed phone must first prove a second "
        "factor in this session (403 `second_factor_required`). The new phone is confirmed "
        "with `devices/{device_id}/confirm/`.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.DeviceEnrolSerializer, request)
        device, challenge = device_flows.enrol_phone(
            request.user,
            data["phone"],
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
            200: s.answer(s.DeviceSerializer, "The phone is confirmed."),
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
        device = device_flows.confirm_phone(
            request.user, device_id, data["challenge"], data["code"], client=client_info(request)
        )
        # The session has just proved this phone: verified with it from now on
        # (also when it replaced the phone the session was verified with).
        otp_login(request._request, device)
        return Response(s.DeviceSerializer(device).data)


class DeviceDetailView(Sms2faAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            204: s.answer(None, "Removed."),
            **s.error_responses(
                {
                    403: ["not_authenticated", "permission_denied", "second_factor_required"],
                    404: ["device_not_found"],
                    429: ["rate_limited"],
                }
            ),
        },
        parameters=s.schema_parameters(device_id=True),
        summary="Remove a phone (second factor required)",
    )
    def delete(self, request: Request, device_id: int) -> Response:
        device_flows.remove_phone(
            request.user,
            device_id,
            verified_session=is_verified(request),
            client=client_info(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


@sensitive_variables()
def _valid(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
