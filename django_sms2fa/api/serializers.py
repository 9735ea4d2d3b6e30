"""Input validation only; every rule lives in the flows."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from django.utils.translation import gettext_lazy as _

from ..flows import channels_for, resend_ready_at, uncertain_delivery_told
from ..models import Challenge, ChallengeStatus, Method, PhoneDevice, Purpose
from ..types import CHANNELS, SMS

# Bounded, so a huge body is refused by validation, not parsed further.
_PHONE = {"min_length": 1, "max_length": 64, "trim_whitespace": False}
_CODE = {"min_length": 1, "max_length": 32, "trim_whitespace": False}


class StrictUUID(serializers.UUIDField):
    """A UUIDField that takes only JSON strings (DRF's takes integers, and so
    ``false`` as the nil UUID)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid", value="")
        return super().to_internal_value(data)


class StrictText(serializers.CharField):
    """A CharField that takes only JSON strings.

    DRF's CharField turns a JSON number into text, so ``"code": 12345`` would
    be checked (using up an attempt) and ``012345`` would lose its zero.
    """

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBool(serializers.BooleanField):
    """A BooleanField that takes only JSON ``true`` and ``false`` (DRF's takes
    ``0``, ``"yes"``, ``"on"``…: not what the schema says)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input="")
        return data


class ChallengeRequestSerializer(serializers.Serializer):
    phone = StrictText(**_PHONE)
    purpose = serializers.ChoiceField(
        choices=[Purpose.VERIFY_PHONE, Purpose.PASSWORDLESS],
        # Fixed text: the default message echoes the input back.
        error_messages={"invalid_choice": _("Choose verify_phone or passwordless.")},
    )
    channel = serializers.ChoiceField(
        choices=list(CHANNELS),
        default=SMS,
        error_messages={"invalid_choice": _("Choose sms, call or whatsapp.")},
    )


class ResendSerializer(serializers.Serializer):
    """``channel`` switches how the new code travels ("call me instead")."""

    channel = serializers.ChoiceField(
        choices=list(CHANNELS),
        required=False,
        error_messages={"invalid_choice": _("Choose sms, call or whatsapp.")},
    )


class CodeSerializer(serializers.Serializer):
    code = StrictText(**_CODE)


class LoginSerializer(serializers.Serializer):
    username = StrictText(min_length=1, max_length=254)
    password = StrictText(min_length=1, max_length=4096, trim_whitespace=False)


#: The second factors a login can ask for (``methods.user_methods``).
METHOD_CHOICES = [Method.PHONE.value, Method.TOTP.value, Method.RECOVERY.value]


class LoginVerifySerializer(serializers.Serializer):
    """``challenge`` is the phone's (required when the pending method is the
    phone); ``remember`` asks for this browser to be remembered
    (``REMEMBER_BROWSER_DAYS``; ignored while that is off)."""

    challenge = StrictUUID(required=False)
    code = StrictText(**_CODE)
    remember = StrictBool(required=False, default=False)


class LoginMethodSerializer(serializers.Serializer):
    """Switch the pending login to another of the user's methods."""

    method = serializers.ChoiceField(
        choices=METHOD_CHOICES,
        error_messages={"invalid_choice": _("Choose phone, totp or recovery.")},
    )
    channel = serializers.ChoiceField(
        choices=list(CHANNELS),
        default=SMS,
        error_messages={"invalid_choice": _("Choose sms, call or whatsapp.")},
    )


class DeviceEnrolSerializer(serializers.Serializer):
    phone = StrictText(**_PHONE)
    replaces = serializers.IntegerField(required=False, min_value=1)


class DeviceConfirmSerializer(serializers.Serializer):
    challenge = StrictUUID()
    code = StrictText(**_CODE)


class TotpConfirmSerializer(serializers.Serializer):
    """The authenticator app's first code; ``id`` picks the app being added
    (the one ``POST totp/`` answered; by default the newest)."""

    id = serializers.IntegerField(required=False, min_value=1)
    code = StrictText(**_CODE)


class StepUpChallengeSerializer(serializers.Serializer):
    """Send a code to the user's phone, to step up with it."""

    channel = serializers.ChoiceField(
        choices=list(CHANNELS),
        default=SMS,
        error_messages={"invalid_choice": _("Choose sms, call or whatsapp.")},
    )


class StepUpSerializer(serializers.Serializer):
    """Prove a second factor again: ``challenge`` is the one ``step-up/challenge/``
    answered (method ``phone`` only)."""

    method = serializers.ChoiceField(
        choices=METHOD_CHOICES,
        error_messages={"invalid_choice": _("Choose phone, totp or recovery.")},
    )
    code = StrictText(**_CODE)
    challenge = StrictUUID(required=False)


class OpenStatus(serializers.ChoiceField):
    """``queued`` while a task worker has yet to send the code (``SEND_VIA_TASKS``),
    else ``pending``: codes are checked only once it is pending.

    Two values only. An answer describes a challenge the client may go on with;
    a closed one is reported by an error code. The one exception is on purpose:
    a passwordless code for a known number that could not be sent answers like
    a decoy for an unknown number (no account is revealed), so as ``pending``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=["queued", "pending"], read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        return "queued" if value == ChallengeStatus.QUEUED else "pending"


class ChallengeSerializer(serializers.Serializer):
    """A challenge as clients see it: never its code, hash, user or full phone.

    Its fields are spelled out rather than derived from the model (a
    ``ModelSerializer`` inspects the model on every answer, a visible share of
    a request's time)."""

    id = serializers.UUIDField(read_only=True)
    purpose = serializers.ChoiceField(choices=Purpose.choices, read_only=True)
    phone = serializers.CharField(source="masked_phone", read_only=True)
    status = OpenStatus()
    expires_at = serializers.DateTimeField(read_only=True)
    resend_at = serializers.SerializerMethodField()
    channel = serializers.CharField(read_only=True)
    #: Every channel the number's route offers; another one can be asked for
    #: with ``resend/`` and ``{"channel": ...}`` ("call me instead").
    channels = serializers.SerializerMethodField()
    #: No provider surely took the code, but one may have: it may be delayed,
    #: and ``resend/`` is open at once (``resend_at`` is now).
    delivery_uncertain = serializers.SerializerMethodField()

    def get_resend_at(self, challenge: Challenge) -> Any:
        return serializers.DateTimeField().to_representation(resend_ready_at(challenge))

    def get_channels(self, challenge: Challenge) -> list[str]:
        return channels_for(challenge.phone)

    def get_delivery_uncertain(self, challenge: Challenge) -> bool:
        return uncertain_delivery_told(challenge)


class DeviceSerializer(serializers.ModelSerializer):
    phone = serializers.CharField(source="masked_number")

    class Meta:
        model = PhoneDevice
        fields = ["id", "name", "phone", "confirmed", "created_at", "last_used_at"]


class DeviceConfirmedSerializer(DeviceSerializer):
    """A confirmed phone; with ``recovery_codes`` (shown once) when it is the
    user's first sign-in method and they had none."""

    recovery_codes = serializers.ListField(child=serializers.CharField(), required=False)

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "recovery_codes"]


# Answer shapes, for the OpenAPI schema.


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class LoginAnswerSerializer(serializers.Serializer):
    mfa_required = serializers.BooleanField()
    # With mfa_required: the method asked for, and the user's others.
    method = serializers.ChoiceField(choices=METHOD_CHOICES, required=False)
    # "phone", "totp" or "recovery" (plain strings: one enum, ``method``'s, in the schema).
    methods = serializers.ListField(child=serializers.CharField(), required=False)
    # The phone's challenge (method "phone"); null for the other methods.
    challenge = ChallengeSerializer(required=False, allow_null=True)
    # Logged in without a second factor now: this browser is remembered.
    remembered = serializers.BooleanField(required=False)
    user = UserSerializer(required=False)
    enrollment_required = serializers.BooleanField(required=False)
    # Logged in with a recovery code: how many unused ones remain.
    recovery_codes_left = serializers.IntegerField(required=False, min_value=0)


class VerifiedSerializer(serializers.Serializer):
    verified = serializers.BooleanField()
    purpose = serializers.CharField()
    phone_token = serializers.CharField(required=False)
    user = UserSerializer(required=False)


class EnrolmentSerializer(serializers.Serializer):
    device = DeviceSerializer()
    challenge = ChallengeSerializer()


class TotpSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    # False while it is being added (``totp/confirm/`` has not seen its first code).
    confirmed = serializers.BooleanField()
    created_at = serializers.DateTimeField(allow_null=True)


class RecoveryCodesLeftSerializer(serializers.Serializer):
    left = serializers.IntegerField(min_value=0)


class BrowserSerializer(serializers.Serializer):
    """A remembered browser: never its cookie or client IP."""

    id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()
    user_agent = serializers.CharField()


class MethodsSerializer(serializers.Serializer):
    # "phone", "totp" or "recovery", the default first (plain strings, as in login answers).
    methods = serializers.ListField(child=serializers.CharField())
    phones = DeviceSerializer(many=True)
    # Objects or null, typed in ``_document_method_fields`` (a nullable nested
    # serializer would be an ``allOf`` that JSON Schema validators read as never null).
    totp = serializers.SerializerMethodField()
    recovery_codes = serializers.SerializerMethodField()
    browsers = BrowserSerializer(many=True)
    remember_enabled = serializers.BooleanField()
    # Until when the session may change sign-in methods without stepping up.
    step_up_until = serializers.DateTimeField(allow_null=True)

    def get_totp(self, answer: dict[str, Any]) -> Any:
        return answer["totp"]

    def get_recovery_codes(self, answer: dict[str, Any]) -> Any:
        return answer["recovery_codes"]


class TotpStartedSerializer(serializers.Serializer):
    """Shown once: the secret, as text, as an ``otpauth://`` URI and as a QR code."""

    id = serializers.IntegerField()
    secret = serializers.CharField()
    otpauth_url = serializers.CharField()
    qr_svg = serializers.CharField()


class TotpConfirmedSerializer(serializers.Serializer):
    confirmed = serializers.BooleanField()
    # Made now, shown once: only when the user had no unused recovery code.
    recovery_codes = serializers.ListField(child=serializers.CharField(), required=False)


class RecoveryCodesSerializer(serializers.Serializer):
    """Shown once; every earlier code stops working."""

    codes = serializers.ListField(child=serializers.CharField())


class ForgottenSerializer(serializers.Serializer):
    forgotten = serializers.IntegerField(min_value=0)


class SteppedUpSerializer(serializers.Serializer):
    step_up_until = serializers.DateTimeField()


# ---------------------------------------------------------------------------
# OpenAPI only: the error answers, path parameters and request examples that the
# views' ``extend_schema`` decorators document. Nothing here validates or
# renders anything; without drf-spectacular (the "openapi" extra) the helpers
# return empty values, which the no-op ``extend_schema`` ignores.

#: What each client-visible error code means (``errors.py`` builds the bodies).
ERROR_CODE_TEXT: dict[str, str] = {
    "invalid": "the body does not validate; `fields` maps each field to its messages",
    "parse_error": "the body is not well-formed JSON",
    "unsupported_media_type": "the body is not `application/json` (the API takes JSON only)",
    "request_too_large": "the body is larger than the site accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)",
    "not_authenticated": "no logged-in session",
    "permission_denied": "refused, e.g. a logged-in session's request without its CSRF token",
    "rate_limited": "too many requests (a send limit, the resend cooldown, or the site's DRF "
    "throttling); retry after `retry_after` seconds",
    "invalid_phone": "not a valid phone number",
    "invalid_code": "not a code (ASCII digits only); no attempt is used",
    "incorrect_code": "wrong code; `attempts_left` attempts remain",
    "invalid_credentials": "wrong username or password",
    "second_factor_required": "the session must first prove a second factor",
    "step_up_required": "the session proved its second factor too long ago "
    "(`STEP_UP_WINDOW`): prove one again with `step-up/`",
    "method_unavailable": "not a sign-in method the user has (or the site offers)",
    "method_already_enrolled": "the user already has a confirmed authenticator app",
    "challenge_not_found": "no such challenge, or not this client's, or not for this endpoint",
    "passwordless_disabled": "passwordless login is off on this site (`PASSWORDLESS_LOGIN`)",
    "device_not_found": "no such phone for this user",
    "phone_already_enrolled": "this number is already confirmed for the user",
    "challenge_expired": "the code has expired",
    "challenge_used": "the code has already been used",
    "challenge_cancelled": "the challenge was cancelled",
    "challenge_undeliverable": "the challenge's SMS could not be sent",
    "challenge_queued": "the code is still waiting for a task worker to send it; try again "
    "in a moment (no attempt is used)",
    "login_expired": "no pending password login (or it expired): log in again",
    "too_many_attempts": "the attempts are used up; request a new code",
    "verification_locked": "too many wrong codes for this account (or phone): codes are "
    "neither sent nor checked for `retry_after` seconds",
    "destination_suspended": "sending to this country or number range is suspended for a "
    "while (too few codes sent there are ever used)",
    "number_not_allowed": "a valid number that this site does not send codes to (its "
    "country or kind of number)",
    "channel_unavailable": "the number's route offers no provider for this channel "
    "(`call`, `whatsapp`); `channels` lists the ones it offers",
    "delivery_failed": "the SMS provider could not be reached or refused the SMS",
    "service_unavailable": "the cache that holds the limits is down: nothing was sent or checked",
}

_STATUS_TEXT = {
    400: "Refused input",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    410: "Gone: the challenge or login can no longer be used",
    413: "Request too large",
    415: "Unsupported media type",
    429: "Too many requests (`Retry-After` header, `retry_after` in the body)",
    503: "The SMS provider is unavailable",
}


def _error_schema(status: int, codes: list[str]) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "code": {"type": "string", "enum": codes, "description": "A stable error code."},
        "message": {"type": "string", "description": "A translated text for people."},
    }
    required = ["code", "message"]
    if status == 429:
        detail["retry_after"] = {
            "type": "integer",
            "minimum": 0,
            "description": "Seconds to wait before trying again (also the Retry-After header).",
        }
        required.append("retry_after")
    if "incorrect_code" in codes:
        detail["attempts_left"] = {
            "type": "integer",
            "minimum": 0,
            "description": "With `incorrect_code`: how many more codes may be tried.",
        }
    if "invalid" in codes:
        detail["fields"] = {
            "type": "object",
            "description": "With `invalid`: each field's error messages.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        }
    return {
        "type": "object",
        "properties": {"error": {"type": "object", "properties": detail, "required": required}},
        "required": ["error"],
    }


def answer(serializer: Any, description: str) -> Any:
    """A success answer with its description (``extend_schema(responses=...)``)."""
    try:
        from drf_spectacular.utils import OpenApiResponse
    except ImportError:  # pragma: no cover - the openapi extra is absent
        return serializer
    return OpenApiResponse(response=serializer, description=description)


def error_responses(errors: dict[int, list[str]]) -> dict[int, Any]:
    """``extend_schema(responses=...)`` entries for an operation's errors.

    ``errors`` maps each HTTP status to the stable codes the operation answers
    with it; the schema of each answer lists exactly those codes.
    """
    try:
        from drf_spectacular.utils import OpenApiResponse
    except ImportError:  # pragma: no cover - the openapi extra is absent
        return {}
    responses: dict[int, Any] = {}
    for status, codes in sorted(errors.items()):
        lines = "\n".join(f"* `{code}`: {ERROR_CODE_TEXT.get(code, code)}" for code in codes)
        responses[status] = OpenApiResponse(
            response=_error_schema(status, list(codes)),
            description=f"{_STATUS_TEXT.get(status, 'Error')}.\n\n{lines}",
        )
    return responses


def schema_parameters(
    *, challenge_id: bool = False, device_id: bool = False, browser_id: bool = False
) -> list[Any]:
    """Path parameters in their real formats, and the 429 ``Retry-After`` header."""
    try:
        from drf_spectacular.types import OpenApiTypes
        from drf_spectacular.utils import OpenApiParameter
    except ImportError:  # pragma: no cover - the openapi extra is absent
        return []
    parameters = [
        OpenApiParameter(
            "Retry-After",
            {"type": "integer", "minimum": 0},
            OpenApiParameter.HEADER,
            required=True,
            description="Seconds to wait before trying again.",
            response=[429],
        )
    ]
    if challenge_id:
        parameters.append(
            OpenApiParameter(
                "challenge_id",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                required=True,
                description="The challenge's `id`.",
            )
        )
    if device_id:
        parameters.append(
            OpenApiParameter(
                "device_id",
                {"type": "integer", "format": "int64", "minimum": 0},
                OpenApiParameter.PATH,
                required=True,
                description="The phone's `id` (from `GET devices/`).",
            )
        )
    if browser_id:
        parameters.append(
            OpenApiParameter(
                "browser_id",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                required=True,
                description="The remembered browser's `id` (from `GET browsers/`).",
            )
        )
    return parameters


def request_examples(**examples: dict[str, Any]) -> list[Any]:
    """Named request-body examples (``examples=`` of ``extend_schema``)."""
    try:
        from drf_spectacular.utils import OpenApiExample
    except ImportError:  # pragma: no cover - the openapi extra is absent
        return []
    return [
        OpenApiExample(name.replace("_", " "), value=value, request_only=True)
        for name, value in examples.items()
    ]


def _document_method_fields() -> None:
    """Types of the answer fields computed by methods, which the schema cannot infer."""
    try:
        from drf_spectacular.types import OpenApiTypes
        from drf_spectacular.utils import extend_schema_field
    except ImportError:  # pragma: no cover - the openapi extra is absent
        return
    extend_schema_field(OpenApiTypes.DATETIME)(ChallengeSerializer.get_resend_at)
    # Items as plain strings: an enum here would be a second name for the
    # ``channel`` choice set.
    extend_schema_field(
        {
            "type": "array",
            "items": {"type": "string"},
            "description": "Channels the number's route offers: `sms`, `call`, `whatsapp`.",
        }
    )(ChallengeSerializer.get_channels)
    extend_schema_field(OpenApiTypes.BOOL)(ChallengeSerializer.get_delivery_uncertain)
    extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "description": "The authenticator app (null: none, not even one being added).",
            "properties": {
                "id": {"type": "integer"},
                "confirmed": {"type": "boolean"},
                "created_at": {"type": "string", "format": "date-time", "nullable": True},
            },
            "required": ["id", "confirmed", "created_at"],
        }
    )(MethodsSerializer.get_totp)
    extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "description": "Unused recovery codes (null: the user never made any).",
            "properties": {"left": {"type": "integer", "minimum": 0}},
            "required": ["left"],
        }
    )(MethodsSerializer.get_recovery_codes)


_document_method_fields()
