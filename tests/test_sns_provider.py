"""Amazon SNS (boto3): the exact Publish request (botocore Stubber), error
classification, no retries on the real HTTP stack (loopback), redaction, and
the signed SNS webhook through the real view with a self-signed certificate."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import unittest
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from botocore import exceptions as bex
from botocore.config import Config
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from django.core.management import call_command
from django.urls import include, path, reverse
from django.utils import timezone

from django_sms2fa.exceptions import (
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from django_sms2fa.models import Message
from django_sms2fa.providers.base import InvalidDeliveryReport, WebhookCall
from django_sms2fa.providers.sns import AmazonSNSProvider
from django_sms2fa.testing.conformance import ProviderConformanceTests
from django_sms2fa.testing.loopback import Answer
from django_sms2fa.types import DELIVERED, FAILED, QUEUED, SENT, OutgoingSms

from .http_support import free_port

urlpatterns = [path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls"))]

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENdGhpcyBpcyBzZWNyZXQ"
REGION = "eu-west-1"
PHONE = "+46701234567"
CODE = "482913"
TEXT = f"Your code is {CODE}"
SMS = OutgoingSms(to=PHONE, text=TEXT, code=CODE, purpose="login")
MID = "567910cd-659e-55d4-8ccb-5aaf14679dc0"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:sms-events"
CERT_URL = (
    f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-"
    "9c6465fa7f48f5cacd23014631ec1136.pem"
)

PUBLISH_OK = (
    '<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult>'
    f"<MessageId>{MID}</MessageId></PublishResult><ResponseMetadata>"
    "<RequestId>d74b8436-ae13-5ab4-a9ff-ce54dfea72a0</RequestId></ResponseMetadata>"
    "</PublishResponse>"
)


def error_xml(code: str, message: str = "something went wrong") -> str:
    return (
        '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>42d59b56-7407-4c4a-be0f-4c88daeea257</RequestId></ErrorResponse>"
    )


XML = {"Content-Type": "text/xml"}


def make(**options) -> AmazonSNSProvider:
    options.setdefault("region_name", REGION)
    options.setdefault("access_key_id", KEY_ID)
    options.setdefault("secret_access_key", SECRET)
    # The webhook accepts nothing without it (tests that need none pass "").
    options.setdefault("topic_arn", TOPIC)
    return AmazonSNSProvider(**options)


def attributes(**extra: tuple[str, str]) -> dict:
    found = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
    for name, (kind, value) in extra.items():
        found[name] = {"DataType": kind, "StringValue": value}
    return found


# ------------------------------------------------------------------ shape


def test_capabilities_are_text_over_sms_only():
    provider = make()
    assert provider.capabilities.delivers_text
    assert not provider.capabilities.verifies_code
    assert provider.capabilities.channels == frozenset({"sms"})
    assert provider.signs_webhooks() and provider.receives_delivery_reports()
    assert SECRET not in repr(provider) and KEY_ID not in repr(provider)


def test_the_publish_request_is_exactly_what_sns_documents():
    provider = make()
    with Stubber(provider.client) as stub:
        stub.add_response(
            "publish",
            {"MessageId": MID},
            expected_params={
                "PhoneNumber": PHONE,
                "Message": TEXT,
                "MessageAttributes": attributes(),
            },
        )
        result = provider.send(SMS)
        stub.assert_no_pending_responses()
    assert result.message_id == MID
    assert result.status == QUEUED
    assert result.raw == {"MessageId": MID}


def test_sender_id_origination_number_and_max_price_become_attributes():
    provider = make(sender_id="Acme-2FA", origination_number="+18005550100", max_price="0.50")
    with Stubber(provider.client) as stub:
        stub.add_response(
            "publish",
            {"MessageId": MID},
            expected_params={
                "PhoneNumber": PHONE,
                "Message": TEXT,
                "MessageAttributes": attributes(
                    **{
                        "AWS.SNS.SMS.SenderID": ("String", "Acme-2FA"),
                        "AWS.MM.SMS.OriginationNumber": ("String", "+18005550100"),
                        "AWS.SNS.SMS.MaxPrice": ("Number", "0.5"),
                    }
                ),
            },
        )
        provider.send(SMS)


def test_the_client_makes_one_attempt_with_the_configured_timeouts():
    provider = make(connect_timeout=2, read_timeout=7)
    config = provider.client.meta.config
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.connect_timeout == 2 and config.read_timeout == 7
    assert provider.client.meta.region_name == REGION


@pytest.mark.parametrize(
    "to", ["46701234567", "+0701234567", "+12345", "+1234567890123456", "+4670 1234567", ""]
)
def test_numbers_sns_cannot_take_are_refused_before_any_call(to):
    provider = make()
    with Stubber(provider.client), pytest.raises(ProviderRejected) as err:
        provider.send(OutgoingSms(to=to, text=TEXT, code=CODE))
    assert err.value.provider_code == "unsupported_number"


def test_an_empty_or_oversized_text_is_refused_before_any_call():
    provider = make()
    with Stubber(provider.client):
        for text in ("", "x" * 1601):
            with pytest.raises(ProviderRejected) as err:
                provider.send(OutgoingSms(to=PHONE, text=text))
            assert err.value.provider_code == "invalid_text"


def test_a_publish_answer_without_message_id_may_have_sent():
    provider = make()
    with Stubber(provider.client) as stub:
        stub.add_response("publish", {})
        with pytest.raises(ProviderUnavailable) as err:
            provider.send(SMS)
    assert err.value.may_have_sent and err.value.provider_code == "malformed_answer"


# ------------------------------------------------------------------ errors (Stubber)


@pytest.mark.parametrize(
    "code, status, error, may_have_sent, failover",
    [
        ("Throttling", 400, ProviderUnavailable, False, None),
        ("Throttled", 429, ProviderUnavailable, False, None),
        ("ThrottledException", 429, ProviderUnavailable, False, None),
        ("InternalError", 500, ProviderUnavailable, True, None),
        ("InternalFailure", 500, ProviderUnavailable, True, None),
        ("ServiceUnavailable", 503, ProviderUnavailable, False, None),
        ("SomethingNew", 504, ProviderUnavailable, True, None),
        ("InvalidParameter", 400, ProviderRejected, False, False),
        ("ParameterValueInvalid", 400, ProviderRejected, False, False),
        ("InvalidParameterValue", 400, ProviderRejected, False, False),
        ("OptedOut", 400, ProviderRejected, False, False),
        ("AuthorizationError", 403, ProviderRejected, False, True),
        ("InvalidClientTokenId", 403, ProviderRejected, False, True),
        ("SignatureDoesNotMatch", 403, ProviderRejected, False, True),
        ("AccessDenied", 403, ProviderRejected, False, True),
        ("ExpiredToken", 400, ProviderRejected, False, True),
        ("KMSAccessDenied", 400, ProviderRejected, False, True),
        ("KMSOptInRequired", 403, ProviderRejected, False, True),
    ],
)
def test_every_sns_error_code_is_classified(code, status, error, may_have_sent, failover):
    provider = make()
    with Stubber(provider.client) as stub:
        stub.add_client_error(
            "publish", service_error_code=code, service_message="nope", http_status_code=status
        )
        with pytest.raises(ProviderError) as err:
            provider.send(SMS)
    assert type(err.value) is error
    assert err.value.provider_code == code and err.value.http_status == status
    assert err.value.may_have_sent is may_have_sent
    assert err.value.provider == "default"
    if failover is not None:
        assert err.value.failover is failover


@pytest.mark.parametrize(
    "raised, error, code, may_have_sent",
    [
        (bex.EndpointConnectionError(endpoint_url="https://sns"), ProviderUnavailable,
         "connect_failed", False),
        (bex.ConnectTimeoutError(endpoint_url="https://sns"), ProviderUnavailable,
         "connect_failed", False),
        (bex.SSLError(endpoint_url="https://sns", error="bad cert"), ProviderUnavailable,
         "connect_failed", False),
        (bex.ReadTimeoutError(endpoint_url="https://sns"), ProviderUnavailable, "timeout", True),
        (bex.ConnectionClosedError(endpoint_url="https://sns"), ProviderUnavailable,
         "connection_error", True),
        (bex.NoCredentialsError(), ProviderRejected, "auth", False),
        (bex.CredentialRetrievalError(provider="sso", error_msg="x"), ProviderRejected, "auth",
         False),
        (bex.ParamValidationError(report="bad"), ProviderRejected, "bad_request_setup", False),
        (bex.BotoCoreError(), ProviderUnavailable, "sdk_error", True),
        (RuntimeError("a plugin broke"), ProviderUnavailable, "sdk_error", True),
        (KeyError("MessageId"), ProviderUnavailable, "sdk_error", True),
    ],
)  # fmt: skip
def test_transport_and_sdk_failures_become_provider_errors(raised, error, code, may_have_sent):
    provider = make()
    with mock.patch.object(provider.client, "publish", side_effect=raised):
        with pytest.raises(ProviderError) as err:
            provider.send(SMS)
    assert type(err.value) is error
    assert err.value.provider_code == code and err.value.may_have_sent is may_have_sent
    if error is ProviderRejected:
        assert err.value.failover is True  # our configuration, not the message


def test_secrets_and_the_code_never_reach_the_error_text():
    provider = make(session_token=TOKEN)
    with Stubber(provider.client) as stub:
        stub.add_client_error(
            "publish",
            service_error_code="InvalidParameter",
            service_message=f"echo {SECRET} {TOKEN} {TEXT} {PHONE}",
            http_status_code=400,
        )
        with pytest.raises(ProviderRejected) as err:
            provider.send(SMS)
    text = err.value.provider_text + str(err.value) + repr(err.value)
    for leaked in (SECRET, TOKEN, CODE, PHONE[1:]):
        assert leaked not in text
    assert "[redacted]" in err.value.provider_text


class SNSConformance(ProviderConformanceTests, unittest.TestCase):
    """The provider kit's failover, pooling and leak checks on the real boto3
    stack (django_sms2fa.testing.conformance)."""

    secrets = (SECRET, TOKEN)
    expects_provider_checked = False
    expects_status_lookup = False
    expects_delivery_reports = True
    expects_signed_webhooks = True

    def make_provider(self, base_url, **overrides):
        return make(endpoint_url=base_url, session_token=TOKEN, **overrides)

    def accepted_answer(self):
        return Answer(200, PUBLISH_OK, XML)

    def number_refused_answer(self):
        return Answer(
            400, error_xml("InvalidParameter", "Invalid parameter: PhoneNumber Reason: x"), XML
        )

    def credentials_refused_answer(self):
        return Answer(
            403,
            error_xml("InvalidClientTokenId", "The security token included is invalid."),
            XML,
        )


def test_a_retry_after_from_a_proxy_is_kept(loopback):
    loopback.respond(429, error_xml("Throttled"), {**XML, "Retry-After": "7"})
    with pytest.raises(ProviderUnavailable) as err:
        make(endpoint_url=loopback.url).send(SMS)
    assert err.value.retry_after == 7 and not err.value.may_have_sent


# ------------------------------------------------------------------ configuration


def test_without_boto3_the_error_says_which_extra_to_install():
    with mock.patch.dict(sys.modules, {"boto3": None}):
        with pytest.raises(Sms2faConfigurationError) as err:
            make()
    assert err.value.check_id == "sms2fa.E002"
    assert "pip install django-sms2fa[aws]" in str(err.value)


@pytest.mark.parametrize(
    "options",
    [
        {"region_name": "mars"},
        {"secret_access_key": None},
        {"access_key_id": None, "secret_access_key": None, "session_token": TOKEN},
        {"sender_id": "12345"},  # no letter
        {"sender_id": "Far-too-long-id"},
        {"sender_id": "has space"},
        {"origination_number": "12ab"},
        {"max_price": "free"},
        {"max_price": -1},
        {"connect_timeout": 0},
        {"read_timeout": "15"},
        {"endpoint_url": "http://sns.example.com"},
        {"endpoint_url": "https://169.254.169.254/"},
        {"topic_arn": "arn:aws:sqs:eu-west-1:123456789012:q"},
        {"unknown_option": 1},
    ],
)
def test_malformed_options_fail_at_construction_without_echoing_values(options):
    with pytest.raises(Sms2faConfigurationError) as err:
        make(**options)
    assert err.value.check_id == "sms2fa.E002"
    assert SECRET not in str(err.value)


def test_without_a_region_anywhere_the_error_names_the_option(monkeypatch, tmp_path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(Sms2faConfigurationError, match="region_name"):
        make(region_name=None)


def test_a_missing_aws_profile_is_a_configuration_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(Sms2faConfigurationError, match="ProfileNotFound"):
        make(access_key_id=None, secret_access_key=None)


def test_the_default_credential_chain_is_used_without_keys(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    provider = make(access_key_id=None, secret_access_key=None)
    assert provider.client._request_signer._credentials.access_key == KEY_ID


# ------------------------------------------------------------------ real HTTP (loopback)


def test_against_a_real_server_the_request_is_the_documented_query(loopback):
    loopback.respond(200, PUBLISH_OK, XML)
    result = make(endpoint_url=loopback.url, sender_id="Acme").send(SMS)
    assert result.message_id == MID
    (request,) = loopback.requests
    assert request.method == "POST" and request.path == "/"
    from urllib.parse import parse_qs

    body = parse_qs(request.body.decode())
    assert body["Action"] == ["Publish"] and body["PhoneNumber"] == [PHONE]
    assert body["Message"] == [TEXT]
    assert body["MessageAttributes.entry.1.Name"] == ["AWS.SNS.SMS.SMSType"]
    assert body["MessageAttributes.entry.1.Value.StringValue"] == ["Transactional"]
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + KEY_ID)
    assert "django-sms2fa" in request.headers["user-agent"]


def test_ten_sends_reuse_one_connection(loopback):
    loopback.always(200, PUBLISH_OK, XML)
    provider = make(endpoint_url=loopback.url)
    for _ in range(10):
        provider.send(SMS)
    assert len(loopback.requests) == 10 and loopback.connections == 1


@pytest.mark.parametrize(
    "status, code, may_have_sent",
    [(500, "InternalError", True), (503, "ServiceUnavailable", False), (400, "Throttling", False)],
)
def test_a_retryable_answer_is_sent_exactly_once(loopback, status, code, may_have_sent):
    loopback.always(status, error_xml(code), XML)
    with pytest.raises(ProviderUnavailable) as err:
        make(endpoint_url=loopback.url).send(SMS)
    assert err.value.may_have_sent is may_have_sent and err.value.provider_code == code
    assert len(loopback.requests) == 1


def test_retry_settings_in_the_environment_do_not_bring_retries_back(loopback, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("AWS_RETRY_MODE", "legacy")
    loopback.always(500, error_xml("InternalError"), XML)
    with mock.patch("time.sleep"), pytest.raises(ProviderUnavailable):
        make(endpoint_url=loopback.url).send(SMS)
    assert len(loopback.requests) == 1


def test_botocores_default_config_would_have_repeated_it(loopback):
    # The control for the test above: the same 500 with botocore's own retry
    # settings is sent more than once, so counting requests can catch a retry.
    loopback.always(500, error_xml("InternalError"), XML)
    provider = make(endpoint_url=loopback.url)
    import boto3

    client = boto3.session.Session(
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
    ).client(
        "sns",
        endpoint_url=loopback.url,
        config=Config(retries={"mode": "standard"}, read_timeout=2),
    )
    with mock.patch("time.sleep"):  # no backoff waits
        provider.client = client
        with pytest.raises(ProviderUnavailable):
            provider.send(SMS)
    assert len(loopback.requests) > 1


def test_a_read_timeout_may_have_sent_and_is_not_repeated(loopback):
    loopback.respond(200, PUBLISH_OK, XML, delay=1.5, times=3)
    with pytest.raises(ProviderUnavailable) as err:
        make(endpoint_url=loopback.url, read_timeout=0.3).send(SMS)
    assert err.value.provider_code == "timeout" and err.value.may_have_sent
    assert len(loopback.requests) == 1


def test_connection_refused_surely_did_not_send():
    provider = make(endpoint_url=f"http://127.0.0.1:{free_port()}", connect_timeout=1)
    with pytest.raises(ProviderUnavailable) as err:
        provider.send(SMS)
    assert err.value.provider_code == "connect_failed" and not err.value.may_have_sent


@pytest.mark.parametrize("body", ["<html><body>Bad gateway</body></html>", "", "<Publish"])
def test_a_2xx_answer_that_cannot_be_read_may_have_sent(loopback, body):
    loopback.always(200, body, XML)
    with pytest.raises(ProviderUnavailable) as err:
        make(endpoint_url=loopback.url).send(SMS)
    assert err.value.may_have_sent
    assert len(loopback.requests) == 1


def test_debug_logs_show_neither_secrets_nor_the_code(loopback, caplog):
    loopback.respond(200, PUBLISH_OK, XML)
    loopback.respond(400, error_xml("InvalidParameter", f"bad {PHONE} {SECRET}"), XML)
    provider = make(endpoint_url=loopback.url, session_token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        provider.send(SMS)
        with pytest.raises(ProviderRejected):
            provider.send(SMS)
    logged = caplog.text
    assert "Publish" in logged  # botocore did log the requests
    for leaked in (SECRET, TOKEN, CODE, PHONE[1:], "482 913"):
        assert leaked not in logged


# ------------------------------------------------------------------ signed webhooks


@pytest.fixture(scope="module")
def signer():
    """A self-signed certificate standing in for SNS's signing certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def fetched(monkeypatch, signer):
    """Certificate fetches, answered with the test certificate (never the network)."""
    urls: list[str] = []

    def fetch(self, url):
        urls.append(url)
        return signer[1]

    monkeypatch.setattr(AmazonSNSProvider, "fetch_certificate", fetch)
    return urls


def timestamp(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sign(envelope: dict, key, version: str = "1") -> dict:
    keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    if envelope["Type"] != "Notification":
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{envelope[k]}\n" for k in keys if k in envelope)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {
        **envelope,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": envelope.get("SigningCertURL", CERT_URL),
    }


def sms_event(status: str = "DELIVERED", message_id: str = MID, **extra) -> dict:
    return {
        "eventType": f"TEXT_{status}",
        "eventVersion": "1.0",
        "eventTimestamp": 1729099299998,
        "isFinal": status not in ("PENDING", "QUEUED"),
        "originationPhoneNumber": "+18445550123",
        "destinationPhoneNumber": PHONE,
        "isoCountryCode": "SE",
        "messageId": message_id,
        "messageRequestTimestamp": 1729099297243,
        "messageEncoding": "GSM",
        "messageType": "TRANSACTIONAL",
        "messageStatus": status,
        "messageStatusDescription": "Message has been accepted by phone",
        "totalMessageParts": 1,
        "totalMessagePrice": 0.00581,
        "totalCarrierFee": 0.003,
        **extra,
    }


def notification(message, key, *, version: str = "1", **fields) -> dict:
    envelope = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": timestamp(),
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe",
        **fields,
    }
    return sign(envelope, key, version)


@pytest.fixture
def sns_settings(sms2fa_settings, fetched):
    def apply(**options):
        options = {
            "region_name": REGION,
            "access_key_id": KEY_ID,
            "secret_access_key": SECRET,
            "topic_arn": TOPIC,
            **options,
        }
        sms2fa_settings(
            PROVIDERS={
                "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
                "sns": {"BACKEND": "django_sms2fa.providers.sns.AmazonSNSProvider",
                        "OPTIONS": options},
            },
            WEBHOOK_SECRETS={},
        )  # fmt: skip

    apply()
    return apply


def sent_message(status: str = QUEUED) -> Message:
    now = timezone.now()
    return Message.objects.create(
        phone=PHONE,
        provider="sns",
        provider_message_id=MID,
        status=status,
        created_at=now,
        sent_at=now,
    )


def post(client, envelope, *, raw: bytes | None = None, **headers):
    body = raw if raw is not None else json.dumps(envelope).encode()
    kind = envelope.get("Type", "Notification") if isinstance(envelope, dict) else "Notification"
    return client.post(
        reverse("sms2fa_webhooks:delivery_report", args=["sns"]),
        data=body,
        content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": kind, "x-amz-sns-topic-arn": TOPIC, **headers},
    )


@pytest.mark.urls(__name__)
@pytest.mark.django_db
@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_notification_updates_the_message(client, signer, sns_settings, fetched, version):
    message = sent_message()
    response = post(client, notification(sms_event("DELIVERED"), signer[0], version=version))
    assert response.status_code == 200, response.content
    assert response.json()["updated"] == 1
    message.refresh_from_db()
    assert message.status == DELIVERED and message.provider_status == "DELIVERED"
    assert fetched == [CERT_URL]


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_the_certificate_is_fetched_once_per_url(client, signer, sns_settings, fetched):
    sent_message()
    for status in ("PENDING", "SUCCESSFUL", "DELIVERED"):
        assert post(client, notification(sms_event(status), signer[0])).status_code == 200
    assert fetched == [CERT_URL]


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_an_eventbridge_event_inside_the_notification_is_read(client, signer, sns_settings):
    message = sent_message()
    event = {
        "version": "0",
        "id": "15226fe5-c283-a862-e5e5-0a29ad450fd9",
        "detail-type": "Text Message Delivery Status Updated",
        "source": "aws.sms-voice",
        "account": "123456789012",
        "time": "2024-10-16T17:21:40Z",
        "region": REGION,
        "resources": [],
        "detail": sms_event("TTL_EXPIRED"),
    }
    assert post(client, notification(event, signer[0])).status_code == 200
    message.refresh_from_db()
    assert message.status == FAILED and message.provider_status == "TTL_EXPIRED"


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_replayed_notification_answers_200_and_changes_nothing(
    client, signer, sns_settings, changes
):
    message = sent_message()
    envelope = notification(sms_event("DELIVERED"), signer[0])
    assert post(client, envelope).json()["updated"] == 1
    again = post(client, envelope)
    assert again.status_code == 200 and again.json()["updated"] == 0
    assert changes == [(message.pk, QUEUED, DELIVERED)]


def tamper(envelope: dict, **changes) -> dict:
    return {**envelope, **changes}


@pytest.mark.urls(__name__)
@pytest.mark.django_db
@pytest.mark.parametrize(
    "attack",
    [
        "forged_signature",
        "tampered_message",
        "tampered_subject",
        "http_cert_url",
        "evil_cert_host",
        "sns_evil_com",
        "other_region_cert",
        "cert_url_with_userinfo",
        "cert_url_with_port",
        "cert_url_not_pem",
        "wrong_topic",
        "stale",
        "future",
        "signature_version_3",
        "signature_version_missing",
        "no_signature",
        "not_json",
        "header_type_mismatch",
        "unknown_type",
    ],
)
def test_forged_or_stale_notifications_are_refused_and_change_nothing(
    client, signer, sns_settings, fetched, attack, caplog
):
    key = signer[0]
    message = sent_message()
    good = notification(sms_event("DELIVERED"), key)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers = {}
    raw = None
    envelope = {
        "forged_signature": lambda: notification(sms_event("DELIVERED"), other_key),
        "tampered_message": lambda: tamper(good, Message=json.dumps(sms_event("BLOCKED"))),
        "tampered_subject": lambda: tamper(good, Subject="injected"),
        "http_cert_url": lambda: tamper(good, SigningCertURL=CERT_URL.replace("https", "http")),
        "evil_cert_host": lambda: tamper(
            good, SigningCertURL="https://evil.example.com/SimpleNotificationService-x.pem"
        ),
        "sns_evil_com": lambda: tamper(
            good, SigningCertURL=CERT_URL.replace("amazonaws.com", "evil.com")
        ),
        "other_region_cert": lambda: tamper(
            good, SigningCertURL=CERT_URL.replace(REGION, "us-east-1")
        ),
        "cert_url_with_userinfo": lambda: tamper(
            good, SigningCertURL=CERT_URL.replace("https://", "https://evil.com@")
        ),
        "cert_url_with_port": lambda: tamper(
            good, SigningCertURL=CERT_URL.replace(".com/", ".com:8443/")
        ),
        "cert_url_not_pem": lambda: tamper(good, SigningCertURL=CERT_URL + "?x=.pem"),
        "wrong_topic": lambda: notification(
            sms_event("DELIVERED"), key, TopicArn=TOPIC.replace("sms-events", "other")
        ),
        "stale": lambda: notification(
            sms_event("DELIVERED"), key, Timestamp=timestamp(-timedelta(hours=1, minutes=1))
        ),
        "future": lambda: notification(
            sms_event("DELIVERED"), key, Timestamp=timestamp(timedelta(minutes=10))
        ),
        # Signed with SHA256 (version 2's algorithm), then relabelled.
        "signature_version_3": lambda: tamper(
            notification(sms_event("DELIVERED"), key, version="2"), SignatureVersion="3"
        ),
        "signature_version_missing": lambda: {
            k: v for k, v in good.items() if k != "SignatureVersion"
        },
        "no_signature": lambda: {k: v for k, v in good.items() if k != "Signature"},
        "not_json": lambda: good,
        "header_type_mismatch": lambda: good,
        "unknown_type": lambda: tamper(good, Type="Bogus"),
    }[attack]()
    if attack == "not_json":
        raw = b"Type=Notification&Message=x"
    if attack == "header_type_mismatch":
        headers = {"x-amz-sns-message-type": "SubscriptionConfirmation"}
    with caplog.at_level(logging.WARNING, logger="django_sms2fa.webhooks"):
        response = post(client, envelope, raw=raw, **headers)
    assert response.status_code == 403, (attack, response.content)
    assert response.json()["error"]["code"] == "forbidden"
    message.refresh_from_db()
    assert message.status == QUEUED
    expected = "stale" if attack in ("stale", "future") else "bad_signature"
    assert f"({expected})" in caplog.text
    # No certificate was fetched from anywhere but the topic region's SNS host.
    assert set(fetched) <= {CERT_URL}


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_without_topic_arn_every_notification_is_refused(client, signer, sns_settings, caplog):
    # A genuine SNS signature proves SNS sent it, not that it is the site's
    # topic: without topic_arn nothing is accepted, not even the right topic.
    sns_settings(topic_arn="")
    message = sent_message()
    for topic in (TOPIC, TOPIC.replace("sms-events", "someone-elses")):
        with caplog.at_level(logging.WARNING):
            response = post(client, notification(sms_event("DELIVERED"), signer[0], TopicArn=topic))
        assert response.status_code == 403
        assert topic in caplog.text and "topic_arn" in caplog.text
    message.refresh_from_db()
    assert message.status == QUEUED


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_an_oversized_body_is_refused_unread(client, signer, sns_settings, fetched):
    message = sent_message()
    envelope = notification(sms_event("DELIVERED", padding="x" * 70_000), signer[0])
    response = post(client, envelope)
    assert response.status_code == 413
    message.refresh_from_db()
    assert message.status == QUEUED and fetched == []


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_voice_events_and_unknown_ids_answer_200_without_changes(client, signer, sns_settings):
    message = sent_message()
    voice = sms_event("DELIVERED")
    voice["eventType"] = "VOICE_COMPLETED"
    assert post(client, notification(voice, signer[0])).json()["received"] == 0
    unknown = post(client, notification(sms_event("DELIVERED", "someone-else-id"), signer[0]))
    assert unknown.status_code == 200 and unknown.json()["unknown"] == 1
    message.refresh_from_db()
    assert message.status == QUEUED


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_signed_notification_that_is_not_an_sms_event_is_a_400(client, signer, sns_settings):
    response = post(client, notification("plain text, not an event", signer[0]))
    assert response.status_code == 400


# --------------------------------------------------------------- subscription confirmation


def confirmation(key, topic: str = TOPIC, **fields) -> dict:
    url = (
        f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}"
        "&Token=2336412f37fb687f5d51e6e241dbca52ea5"
    )
    envelope = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241dbca52ea5",
        "TopicArn": topic,
        "Message": f"You have chosen to subscribe to the topic {topic}.",
        "SubscribeURL": url,
        "Timestamp": timestamp(),
        **fields,
    }
    return sign(envelope, key)


@pytest.fixture
def confirmed(monkeypatch):
    urls: list[str] = []
    monkeypatch.setattr(
        AmazonSNSProvider, "confirm_subscription", lambda self, url: urls.append(url)
    )
    return urls


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_verified_confirmation_of_our_topic_is_confirmed(client, signer, sns_settings, confirmed):
    envelope = confirmation(signer[0])
    response = post(client, envelope)
    assert response.status_code == 200 and response.json()["received"] == 0
    assert confirmed == [envelope["SubscribeURL"]]


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_without_topic_arn_no_subscription_is_confirmed_and_the_token_is_not_logged(
    client, signer, sns_settings, confirmed, caplog
):
    sns_settings(topic_arn="")
    with caplog.at_level(logging.INFO):
        response = post(client, confirmation(signer[0]))
    assert response.status_code == 403 and confirmed == []
    assert TOPIC in caplog.text and "topic_arn" in caplog.text
    assert "2336412f37fb687f5d51e6e241dbca52ea5" not in caplog.text


@pytest.mark.urls(__name__)
@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC,
        "http://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC,
        "https://sns.eu-west-1.amazonaws.com/?Action=DeleteTopic&TopicArn=" + TOPIC,
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:x",
    ],
)
def test_a_subscribe_url_off_sns_is_never_fetched(client, signer, sns_settings, confirmed, url):
    response = post(client, confirmation(signer[0], SubscribeURL=url))
    assert response.status_code == 400 and confirmed == []


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_forged_confirmation_is_refused_before_any_fetch(client, signer, sns_settings, confirmed):
    envelope = tamper(
        confirmation(signer[0]),
        SubscribeURL=f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={TOPIC}&Token=other",
    )
    assert post(client, envelope).status_code == 403 and confirmed == []


def test_parse_alone_never_confirms_an_unverified_confirmation(signer, fetched, confirmed):
    provider = make(topic_arn=TOPIC)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = json.dumps(confirmation(other_key)).encode()
    with pytest.raises(InvalidDeliveryReport) as err:
        provider.parse_delivery_report(body, "text/plain")
    assert err.value.code == "bad_signature" and confirmed == []


# ------------------------------------------------------------------ parser units


@pytest.mark.parametrize(
    "status, is_final, expected",
    [
        ("PENDING", False, QUEUED),
        ("QUEUED", False, QUEUED),
        ("SUCCESSFUL", True, SENT),
        ("DELIVERED", True, DELIVERED),
        ("BLOCKED", True, FAILED),
        ("CARRIER_UNREACHABLE", True, FAILED),
        ("CARRIER_UNREACHABLE", False, "unknown"),
        ("TTL_EXPIRED", True, FAILED),
        ("UNKNOWN", True, "unknown"),
        ("SOMETHING_NEW", True, "unknown"),
    ],
)
def test_event_statuses_map_to_ours(signer, status, is_final, expected):
    provider = make()
    body = json.dumps(notification(sms_event(status, isFinal=is_final), signer[0])).encode()
    (report,) = provider.parse_delivery_report(body, "text/plain")
    assert report.status == expected and report.message_id == MID
    assert report.at == datetime.fromtimestamp(1729099299.998, tz=UTC)


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"status": "SUCCESS", "delivery": {"dwellTimeMsUntilDeviceAck": 1344}}, DELIVERED),
        ({"status": "SUCCESS", "delivery": {"dwellTimeMs": 599}}, SENT),
        ({"status": "FAILURE", "delivery": {"providerResponse": "Unknown error"}}, FAILED),
    ],
)
def test_sns_delivery_log_records_are_read(signer, record, expected):
    record = {"notification": {"messageId": MID, "timestamp": "2016-06-28 00:40:34.558"}, **record}
    body = json.dumps(notification(record, signer[0])).encode()
    (report,) = make().parse_delivery_report(body, "text/plain")
    assert report.status == expected and report.message_id == MID


def test_verify_webhook_direct_with_a_prefilled_cache(signer):
    # The other documented seam: the cache, filled by hand, is used as is.
    provider = make(topic_arn=TOPIC)
    provider._certificates[CERT_URL] = x509.load_pem_x509_certificate(signer[1]).public_key()
    body = json.dumps(notification(sms_event(), signer[0])).encode()
    call = WebhookCall(
        url="https://example.com/webhooks/sms2fa/sns/",
        method="POST",
        headers={"x-amz-sns-message-type": "Notification"},
        body=body,
        content_type="text/plain",
        received_at=datetime.now(UTC),
    )
    provider.verify_webhook(call)  # no fetch_certificate override: would hit the network
    later = WebhookCall(**{**call.__dict__, "received_at": datetime.now(UTC) + timedelta(hours=2)})
    with pytest.raises(InvalidDeliveryReport) as err:
        provider.verify_webhook(later)
    assert err.value.code == "stale"


def test_a_notification_with_a_subject_verifies_and_the_subject_is_signed(signer, fetched):
    provider = make(topic_arn=TOPIC)
    envelope = notification(sms_event(), signer[0], Subject="SMS event")
    call = WebhookCall(
        "https://x/", "POST", {}, json.dumps(envelope).encode(), "", datetime.now(UTC)
    )
    provider.verify_webhook(call)
    dropped = {k: v for k, v in envelope.items() if k != "Subject"}
    call = WebhookCall(
        "https://x/", "POST", {}, json.dumps(dropped).encode(), "", datetime.now(UTC)
    )
    with pytest.raises(InvalidDeliveryReport):
        provider.verify_webhook(call)


@pytest.mark.parametrize(
    "cert_url",
    [
        CERT_URL.replace(".com/", ".com.cn/"),  # China host for an aws-partition topic
        CERT_URL.replace(".com/", ".com.evil.com/"),
        CERT_URL.replace("https://sns.", "https://xsns."),
        CERT_URL.replace("https://sns.", "https://SNS."),
        CERT_URL + "#x",
        "https://sns.eu-west-1.amazonaws.com/../SimpleNotificationService-x.pem",
    ],
)
def test_certificate_urls_off_the_topic_regions_sns_host_are_refused(signer, fetched, cert_url):
    envelope = notification(sms_event(), signer[0], SigningCertURL=cert_url)
    call = WebhookCall(
        "https://x/", "POST", {}, json.dumps(envelope).encode(), "", datetime.now(UTC)
    )
    with pytest.raises(InvalidDeliveryReport) as err:
        make().verify_webhook(call)
    assert err.value.code == "bad_signature" and fetched == []


def test_a_naive_received_at_is_read_as_utc(signer, fetched):
    body = json.dumps(notification(sms_event(), signer[0])).encode()
    naive = datetime.now(UTC).replace(tzinfo=None)
    make(topic_arn=TOPIC).verify_webhook(
        WebhookCall("https://x/", "POST", {}, body, "text/plain", naive)
    )


def test_an_unreachable_certificate_is_a_bad_signature(monkeypatch, signer):
    def fail(self, url):
        raise OSError("no route")

    monkeypatch.setattr(AmazonSNSProvider, "fetch_certificate", fail)
    body = json.dumps(notification(sms_event(), signer[0])).encode()
    call = WebhookCall("https://x/", "POST", {}, body, "text/plain", datetime.now(UTC))
    with pytest.raises(InvalidDeliveryReport) as err:
        make().verify_webhook(call)
    assert err.value.code == "bad_signature"


# ------------------------------------------------------------------ sms2fa_send_test


@pytest.mark.django_db
def test_send_test_command_through_sns_on_loopback(loopback, sms2fa_settings):
    loopback.respond(200, PUBLISH_OK, XML)
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "sns": {
                "BACKEND": "django_sms2fa.providers.sns.AmazonSNSProvider",
                "OPTIONS": {
                    "region_name": REGION,
                    "access_key_id": KEY_ID,
                    "secret_access_key": SECRET,
                    "endpoint_url": loopback.url,
                },
            },
        }
    )
    out = io.StringIO()
    call_command("sms2fa_send_test", PHONE, "--provider", "sns", stdout=out)
    assert MID in out.getvalue()
    message = Message.objects.get()
    assert message.provider == "sns" and message.provider_message_id == MID
    assert len(loopback.requests) == 1


@pytest.mark.django_db
def test_send_test_command_reports_a_500_as_may_still_arrive(loopback, sms2fa_settings):
    from django.core.management import CommandError

    loopback.always(500, error_xml("InternalError", f"oops {SECRET}"), XML)
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "sns": {
                "BACKEND": "django_sms2fa.providers.sns.AmazonSNSProvider",
                "OPTIONS": {
                    "region_name": REGION,
                    "access_key_id": KEY_ID,
                    "secret_access_key": SECRET,
                    "endpoint_url": loopback.url,
                },
            },
        }
    )
    with pytest.raises(CommandError, match="may still arrive") as err:
        call_command("sms2fa_send_test", PHONE, "--provider", "sns", stdout=io.StringIO())
    assert SECRET not in str(err.value) and "InternalError" in str(err.value)
    assert len(loopback.requests) == 1
    assert Message.objects.get().status == "unknown"
