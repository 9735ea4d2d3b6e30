"""Input validation only; every rule lives in the flows."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..flows import resend_ready_at
from ..models import Challenge, PhoneDevice, Purpose

# Bounded, so a huge body is refused by validation, not parsed further.
_PHONE = {"max_length": 64, "trim_whitespace": False}
_CODE = {"max_length": 32, "trim_whitespace": False}


class ChallengeRequestSerializer(serializers.Serializer):
    phone = serializers.CharField(**_PHONE)
    purpose = serializers.ChoiceField(choices=[Purpose.VERIFY_PHONE, Purpose.PASSWORDLESS])


class CodeSerializer(serializers.Serializer):
    code = serializers.CharField(**_CODE)


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class LoginVerifySerializer(serializers.Serializer):
    challenge = serializers.UUIDField()
    code = serializers.CharField(**_CODE)


class DeviceEnrolSerializer(serializers.Serializer):
    phone = serializers.CharField(**_PHONE)
    replaces = serializers.IntegerField(required=False, min_value=1)


class DeviceConfirmSerializer(serializers.Serializer):
    challenge = serializers.UUIDField()
    code = serializers.CharField(**_CODE)


class ChallengeSerializer(serializers.ModelSerializer):
    """A challenge as clients see it: never its code, hash, user or full phone."""

    phone = serializers.CharField(source="masked_phone")
    resend_at = serializers.SerializerMethodField()

    class Meta:
        model = Challenge
        fields = ["id", "purpose", "phone", "expires_at", "resend_at"]

    def get_resend_at(self, challenge: Challenge) -> Any:
        return serializers.DateTimeField().to_representation(resend_ready_at(challenge))


class DeviceSerializer(serializers.ModelSerializer):
    phone = serializers.CharField(source="masked_number")

    class Meta:
        model = PhoneDevice
        fields = ["id", "name", "phone", "confirmed", "created_at", "last_used_at"]


# Answer shapes, for the OpenAPI schema.


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class LoginAnswerSerializer(serializers.Serializer):
    mfa_required = serializers.BooleanField()
    challenge = ChallengeSerializer(required=False)
    user = UserSerializer(required=False)
    enrollment_required = serializers.BooleanField(required=False)


class VerifiedSerializer(serializers.Serializer):
    verified = serializers.BooleanField()
    purpose = serializers.CharField()
    phone_token = serializers.CharField(required=False)
    user = UserSerializer(required=False)


class EnrolmentSerializer(serializers.Serializer):
    device = DeviceSerializer()
    challenge = ChallengeSerializer()
