"""SMSToken (smstoken.com.br): the exact requests, every answer shape in
docs/providers/smstoken.md, the secret and code scrubbing, real HTTP on loopback,
and the whole flow through settings in both modes (our code checked locally;
the provider's code checked by /token/v1/check)."""

from __future__ import annotations

import json
import logging
import random

import pytest
import responses

from django_sms2fa import flows
from django_sms2fa.exceptions import (
    DeliveryFailed,
    IncorrectCode,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from django_sms2fa.models import Challenge, ChallengeStatus, CheckedBy, Message
from django_sms2fa.providers import build_provider
from django_sms2fa.providers.smstoken import SMSTokenProvider
from django_sms2fa.types import SENT, Capabilities, OutgoingSms

from .http_support import Answer, Recorded

KEY = "smstoken-key-A1b2C3d4E5f6G7h8-SECRET"
BASE = "https://api.smstoken.com.br"
VERIFY = BASE + "/token/v1/verify"
CHECK = BASE + "/token/v1/check"
BACKEND = "django_sms2fa.providers.smstoken.SMSTokenProvider"
PHONE = "+5511988887777"
NUMBER = "5511988887777"
CODE = "012345"  # a leading zero on purpose
SMS = OutgoingSms(to=PHONE, code=CODE, reference="chal-1", ttl=300, purpose="login")


def ok_answer(code: str = CODE, message_id: str = "771037704") -> dict:
    return {
        "situacao": "OK",
        "id": message_id,
        "mensagem": f"Seu código de verificação é: {code}",
        "code": code,
        "descricao": "TOKEN ENVIADO COM SUCESSO",
    }


def make(**options) -> SMSTokenProvider:
    return SMSTokenProvider(key=KEY, **options)


def sent_json(index: int = 0) -> dict:
    return json.loads(responses.calls[index].request.body)


def assert_clean(*texts: object, code: str = CODE) -> None:
    for text in texts:
        assert KEY not in str(text)
        assert code not in str(text)


# ------------------------------------------------------------- the request


@responses.activate
def test_the_send_request_is_exactly_what_the_api_documents():
    responses.post(VERIFY, json=ok_answer())
    make().send(SMS)
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert request.method == "POST"
    assert request.url == VERIFY  # no query string: the key never sits in the URL
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers
    assert KEY not in request.url
    assert json.loads(request.body.decode("utf-8")) == {
        "key": KEY,
        "number": NUMBER,
        "template": "Seu código de verificação é: {999999}",
        "code": CODE,  # a string of digits: the leading zero survives
        "expire": 300,
        "refer": "chal-1",
    }


@responses.activate
@pytest.mark.parametrize(
    "code, slot", [("12345678", "{99999999}"), ("0000000000", "{9999999999}"), ("1234", "{9999}")]
)
def test_the_code_slot_has_one_9_per_digit_of_our_code(code, slot):
    responses.post(VERIFY, json=ok_answer(code))
    make().send(OutgoingSms(to=PHONE, code=code))
    body = sent_json()
    assert body["template"].endswith(slot)
    assert body["code"] == code
    assert "refer" not in body  # no reference given, none sent


@responses.activate
def test_a_custom_template_gets_the_slot_where_the_marker_is():
    responses.post(VERIFY, json=ok_answer())
    make(template="<#> ACME: {code} é o seu código. Não compartilhe.").send(SMS)
    assert sent_json()["template"] == "<#> ACME: {999999} é o seu código. Não compartilhe."


@responses.activate
@pytest.mark.parametrize(
    "to, number",
    [
        ("+5511988887777", "5511988887777"),
        ("+46701234567", "46701234567"),
        ("+254712345678", "254712345678"),
    ],
)
def test_international_numbers_are_digits_without_plus(to, number):
    responses.post(VERIFY, json=ok_answer())
    make().send(OutgoingSms(to=to, code=CODE))
    assert sent_json()["number"] == number


@responses.activate
@pytest.mark.parametrize(
    "to", ["5511988887777", "+55 11 98888-7777", "+0551198888", "+123", "", "+١٢٣٤٥٦٧٨٩"]
)
def test_numbers_it_cannot_serve_are_refused_before_any_request(to):
    with pytest.raises(ProviderRejected) as err:
        make().send(OutgoingSms(to=to, code=CODE))
    assert err.value.provider_code == "unsupported_number"
    assert err.value.may_have_sent is False
    assert len(responses.calls) == 0


@responses.activate
def test_the_expiry_is_the_challenge_ttl():
    responses.post(VERIFY, json=ok_answer())
    make().send(OutgoingSms(to=PHONE, code=CODE, ttl=123))
    assert sent_json()["expire"] == 123


# ------------------------------------------------------------- success


@responses.activate
def test_success_gives_the_id_and_keeps_no_code_or_text_in_raw():
    responses.post(VERIFY, json={**ok_answer(), "refer": "chal-1", "extra": f"echo {CODE}"})
    result = make().send(SMS)
    assert result.message_id == "771037704"
    assert result.status == SENT
    assert result.provider_status == "OK"
    assert result.returned_code == ""  # our code: nothing to return
    assert result.raw == {
        "situacao": "OK",
        "id": "771037704",
        "descricao": "TOKEN ENVIADO COM SUCESSO",
        "refer": "chal-1",
        "extra": "[redacted]",  # an unknown field that held the code
    }
    assert_clean(json.dumps(result.raw, ensure_ascii=False), repr(result))


@responses.activate
def test_a_numeric_id_becomes_a_string():
    responses.post(VERIFY, json={**ok_answer(), "id": 771037704})
    assert make().send(SMS).message_id == "771037704"


@responses.activate
@pytest.mark.parametrize("echo", [None, 12345])  # no echo; an echo as a JSON number
def test_an_absent_or_numeric_echo_of_our_code_is_accepted(echo):
    answer = ok_answer()
    del answer["code"]
    if echo is not None:
        answer["code"] = echo
    responses.post(VERIFY, json=answer)
    assert make().send(SMS).message_id == "771037704"


@responses.activate
@pytest.mark.parametrize("echo", ["654321", "12345", 54321, ""])
def test_an_echo_of_another_code_is_a_may_have_sent_failure(echo):
    responses.post(VERIFY, json={**ok_answer(), "code": echo})
    with pytest.raises(ProviderUnavailable) as err:
        make().send(SMS)
    assert err.value.provider_code == "code_mismatch"
    assert err.value.may_have_sent is True
    assert "771037704" in err.value.provider_text
    assert_clean(str(err.value), repr(err.value), err.value.provider_text)
    if isinstance(echo, str) and echo:
        assert echo not in err.value.provider_text


@responses.activate
def test_without_our_code_the_provider_makes_one_and_returns_it():
    responses.post(VERIFY, json=ok_answer("930931"))
    result = make().send(OutgoingSms(to=PHONE, code="", code_length=6, ttl=200))
    body = sent_json()
    assert "code" not in body
    assert body["template"] == "Seu código de verificação é: {999999}"
    assert result.returned_code == "930931"
    assert_clean(json.dumps(result.raw, ensure_ascii=False), repr(result), code="930931")


@responses.activate
def test_a_provider_made_code_is_sized_by_code_length():
    responses.post(VERIFY, json=ok_answer("93093188"))
    result = make().send(OutgoingSms(to=PHONE, code_length=8))
    assert sent_json()["template"].endswith("{99999999}")
    assert result.returned_code == "93093188"


@responses.activate
@pytest.mark.parametrize(
    "returned", [None, "", "930-931", "93093", "9309311", 930931, "９３０９３１"]
)
def test_a_provider_made_code_we_cannot_use_is_malformed(returned):
    answer = ok_answer()
    answer["code"] = returned
    responses.post(VERIFY, json=answer)
    with pytest.raises(ProviderUnavailable) as err:
        make().send(OutgoingSms(to=PHONE, code_length=6))
    assert err.value.provider_code == "malformed_answer"
    assert err.value.may_have_sent is True
    assert_clean(err.value.provider_text)


# ------------------------------------------------------------- check mode


def test_capabilities_follow_the_mode():
    assert make().capabilities == Capabilities(accepts_code=True, returns_code=True)
    assert make(check_remotely=True).capabilities == Capabilities(verifies_code=True)
    assert SMSTokenProvider.capabilities == Capabilities(accepts_code=True, returns_code=True)


@responses.activate
def test_in_check_mode_the_code_is_neither_sent_nor_returned():
    responses.post(VERIFY, json=ok_answer("930931"))
    result = make(check_remotely=True).send(OutgoingSms(to=PHONE, code_length=6))
    assert "code" not in sent_json()
    assert result.returned_code == ""
    assert result.message_id == "771037704"
    assert_clean(json.dumps(result.raw, ensure_ascii=False), code="930931")


@responses.activate
def test_the_check_request_is_exactly_what_the_api_documents():
    responses.post(
        CHECK, json={"situacao": "OK", "checked": True, "descricao": "CODIGO VALIDADO COM SUCESSO"}
    )
    assert make(check_remotely=True).check_code(phone=PHONE, code="012345") is True
    request = responses.calls[0].request
    assert (request.method, request.url) == ("POST", CHECK)
    assert request.headers["Content-Type"] == "application/json"
    # A string, not the JSON number 12345, so the leading zero reaches the provider.
    assert json.loads(request.body) == {"key": KEY, "number": NUMBER, "code": "012345"}


@responses.activate
@pytest.mark.parametrize(
    "answer",
    [
        {"situacao": "OK", "checked": False, "descricao": "CODIGO INVALIDO"},
        {"situacao": "OK", "checked": "true"},  # not the JSON true
        {"situacao": "OK"},
        {"situacao": "ERRO", "descricao": "CÓDIGO INVÁLIDO OU EXPIRADO"},
        {"situacao": "ERRO", "descricao": "TOKEN NAO ENCONTRADO"},
        {"situacao": "ERROR", "checked": True, "descricao": "x"},  # checked alone is not enough
    ],
)
def test_check_is_true_only_for_ok_and_checked_true(answer):
    responses.post(CHECK, json=answer)
    assert make(check_remotely=True).check_code(phone=PHONE, code="930931") is False
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize("code", ["", "12a456", "１２３４５６", "1" * 26])
def test_check_never_sends_something_that_is_not_a_code(code):
    assert make(check_remotely=True).check_code(phone=PHONE, code=code) is False
    assert len(responses.calls) == 0


@responses.activate
@pytest.mark.parametrize(
    "status, body, error, provider_code",
    [
        (200, {"situacao": "ERRO", "descricao": "CHAVE KEY INVALIDA"}, ProviderRejected, "auth"),
        (
            200,
            {"situacao": "ERRO", "descricao": "Muitas tentativas, aguarde"},
            ProviderUnavailable,
            "temporary",
        ),
        (401, {"situacao": "ERRO", "descricao": "NAO AUTORIZADO"}, ProviderRejected, "auth"),
        (503, "<html>Service Unavailable</html>", ProviderUnavailable, "503"),
        (200, "<html>oops</html>", ProviderUnavailable, "malformed_answer"),
        (200, {"checked": True}, ProviderUnavailable, "malformed_answer"),
    ],
)
def test_check_raises_when_the_provider_cannot_answer(status, body, error, provider_code):
    if isinstance(body, dict):
        responses.post(CHECK, json=body, status=status)
    else:
        responses.post(CHECK, body=body, status=status)
    with pytest.raises(error) as err:
        make(check_remotely=True).check_code(phone=PHONE, code="930931")
    assert type(err.value) is error
    assert err.value.provider_code == provider_code
    assert_clean(str(err.value), err.value.provider_text, code="930931")


# ------------------------------------------------------------- errors


@responses.activate
@pytest.mark.parametrize(
    "descricao, error, provider_code",
    [
        ("KEY INVALIDA", ProviderRejected, "auth"),
        ("Chave de autenticação inválida", ProviderRejected, "auth"),
        ("CONTA BLOQUEADA", ProviderRejected, "auth"),
        ("SALDO INSUFICIENTE", ProviderUnavailable, "no_balance"),
        ("Sem créditos", ProviderUnavailable, "no_balance"),
        ("LIMITE DE ENVIOS EXCEDIDO PARA ESTE NUMERO", ProviderUnavailable, "temporary"),
        ("Serviço temporariamente indisponível", ProviderUnavailable, "temporary"),
        ("NUMERO INVALIDO", ProviderRejected, "invalid_number"),
        ("Destinatário inválido", ProviderRejected, "invalid_number"),
        ("TEMPLATE INVALIDO", ProviderRejected, "ERRO"),  # unknown reason: permanent
        ("", ProviderRejected, "ERRO"),
    ],
)
def test_situacao_erro_is_sorted_into_permanent_and_transient(descricao, error, provider_code):
    responses.post(VERIFY, json={"situacao": "ERRO", "descricao": descricao})
    with pytest.raises(error) as err:
        make().send(SMS)
    assert type(err.value) is error
    assert err.value.provider_code == provider_code
    assert err.value.may_have_sent is False  # the provider said no: nothing went out
    assert err.value.http_status == 200
    assert err.value.provider_text == (f"ERRO: {descricao}" if descricao else "ERRO")
    assert_clean(str(err.value), repr(err.value))


@responses.activate
def test_the_english_error_spelling_and_any_other_situacao_are_failures():
    responses.post(VERIFY, json={"situacao": "ERROR", "descricao": "INVALID KEY"})
    responses.post(VERIFY, json={"situacao": "ok", "id": "1", "code": CODE})
    with pytest.raises(ProviderRejected) as err:
        make().send(SMS)
    assert err.value.provider_code == "auth"
    with pytest.raises(ProviderRejected) as err:
        make().send(SMS)
    assert err.value.provider_code == "ok"  # only exactly "OK" is success


@responses.activate
def test_an_error_text_that_quotes_the_key_or_code_is_scrubbed():
    responses.post(VERIFY, json={"situacao": "ERRO", "descricao": f"CHAVE {KEY} INVALIDA"})
    responses.post(VERIFY, json={"situacao": "ERRO", "descricao": f"CODIGO {CODE} INVALIDO"})
    for _ in range(2):
        with pytest.raises(ProviderRejected) as err:
            make().send(SMS)
        assert "[redacted]" in err.value.provider_text
        assert_clean(str(err.value), repr(err.value), err.value.provider_text)


@responses.activate
def test_a_key_that_happens_to_contain_the_code_is_still_redacted():
    key = f"acct-{CODE}-rest-of-the-key"
    responses.post(VERIFY, status=401, body=f"<html>bad key {key}</html>")
    responses.post(VERIFY, body=f"garbage {key}")
    for _ in range(2):
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            SMSTokenProvider(key=key).send(SMS)
        assert "rest-of-the-key" not in err.value.provider_text
        assert "[redacted]" in err.value.provider_text


@responses.activate
@pytest.mark.parametrize(
    "body, content_type",
    [
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
        ("", "application/json"),
        ("not json at all", "text/plain"),
        ('["a list"]', "application/json"),
        ('{"id": "771037704", "descricao": "?"}', "application/json"),  # no situacao
        ('{"situacao": "OK", "descricao": "sem id"}', "application/json"),
        ('{"situacao": "OK", "id": ""}', "application/json"),
        ('{"situacao": "OK", "id": null}', "application/json"),
        ('{"situacao": "OK", "id": true}', "application/json"),
    ],
)
def test_answers_we_cannot_read_are_may_have_sent_failures(body, content_type):
    responses.post(VERIFY, body=body, content_type=content_type)
    with pytest.raises(ProviderUnavailable) as err:
        make().send(SMS)
    assert err.value.provider_code == "malformed_answer"
    assert err.value.may_have_sent is True
    assert len(responses.calls) == 1


@responses.activate
def test_a_malformed_answer_that_echoes_the_code_keeps_it_out_of_the_error():
    responses.post(VERIFY, json={"situacao": "OK", "mensagem": f"código {CODE}", "code": CODE})
    with pytest.raises(ProviderUnavailable) as err:
        make().send(SMS)
    assert err.value.provider_code == "malformed_answer"
    assert_clean(err.value.provider_text)


@responses.activate
def test_json_with_a_byte_order_mark_and_an_html_content_type_is_read():
    # PHP back ends often send both; the body is what counts.
    responses.post(
        VERIFY, body="\ufeff" + json.dumps(ok_answer()), content_type="text/html; charset=utf-8"
    )
    assert make().send(SMS).message_id == "771037704"


@responses.activate
@pytest.mark.parametrize(
    "status, error, maybe_sent, provider_code",
    [
        (400, ProviderRejected, False, "400"),
        (401, ProviderRejected, False, "auth"),
        (403, ProviderRejected, False, "auth"),
        (404, ProviderRejected, False, "404"),
        (500, ProviderUnavailable, True, "500"),
        (502, ProviderUnavailable, False, "502"),
        (503, ProviderUnavailable, False, "503"),
        (504, ProviderUnavailable, True, "504"),
    ],
)
def test_http_statuses_split_into_permanent_and_transient(status, error, maybe_sent, provider_code):
    responses.post(VERIFY, body=f"<html><h1>{status}</h1>{KEY}</html>", status=status)
    with pytest.raises(error) as err:
        make().send(SMS)
    assert type(err.value) is error
    assert err.value.http_status == status
    assert err.value.may_have_sent is maybe_sent
    assert err.value.provider_code == provider_code
    assert err.value.provider_text.startswith("(HTML page)")
    assert_clean(err.value.provider_text, str(err.value))


@responses.activate
def test_a_non_2xx_erro_body_keeps_the_description_and_hides_the_code():
    responses.post(
        VERIFY,
        status=400,
        json={"situacao": "ERRO", "descricao": "NUMERO INVALIDO", "code": CODE, "key": KEY},
    )
    with pytest.raises(ProviderRejected) as err:
        make().send(SMS)
    assert err.value.provider_code == "invalid_number"
    assert err.value.provider_text == "ERRO: NUMERO INVALIDO"


@responses.activate
def test_a_non_2xx_json_body_without_situacao_is_kept_scrubbed():
    responses.post(VERIFY, status=500, json={"error": "boom", "code": CODE, "mensagem": CODE})
    with pytest.raises(ProviderUnavailable) as err:
        make().send(SMS)
    assert "boom" in err.value.provider_text
    assert_clean(err.value.provider_text)


@responses.activate
def test_429_is_transient_with_retry_after():
    responses.post(
        VERIFY,
        status=429,
        json={"situacao": "ERRO", "descricao": "MUITAS REQUISICOES"},
        headers={"Retry-After": "30"},
    )
    with pytest.raises(ProviderUnavailable) as err:
        make().send(SMS)
    assert err.value.http_status == 429
    assert err.value.retry_after == 30
    assert err.value.may_have_sent is False
    assert err.value.provider_text == "ERRO: MUITAS REQUISICOES"


def test_a_read_timeout_is_maybe_sent_and_not_repeated(loopback):
    loopback.respond(200, ok_answer(), delay=1.5)
    with pytest.raises(ProviderUnavailable) as err:
        make(base_url=loopback.url, read_timeout=0.3).send(SMS)
    assert err.value.may_have_sent is True
    assert err.value.provider_code == "timeout"
    assert len(loopback.requests) == 1


# ------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"template": "Seu código: {999999}"}, "{code}"),
        ({"template": "sem marcador"}, "{code}"),
        ({"template": "{code} e {code}"}, "exactly once"),
        ({"template": "ACME {app}: {code}"}, "braces"),
        ({"template": "ACME }: {code}"}, "braces"),
        ({"template": None}, "string"),
        ({"check_remotely": "yes"}, "check_remotely"),
        ({"key": ""}, "key"),
        ({"key": None}, "key"),
    ],
)
def test_bad_options_are_configuration_errors(options, fragment):
    with pytest.raises(Sms2faConfigurationError) as err:
        SMSTokenProvider(**{"key": KEY, **options})
    assert err.value.check_id == "sms2fa.E002"
    assert fragment in str(err.value)
    assert KEY not in str(err.value)


@responses.activate
def test_whitespace_around_the_key_is_dropped():
    responses.post(VERIFY, json=ok_answer())
    SMSTokenProvider(key=f"  {KEY}\n").send(SMS)
    assert sent_json()["key"] == KEY


def test_a_missing_key_is_a_configuration_error_through_settings(sms2fa_settings):
    sms2fa_settings(PROVIDERS={"default": {"BACKEND": BACKEND, "OPTIONS": {}}})
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert "'key'" in str(err.value)


def test_a_template_without_the_marker_is_refused_through_settings(sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={"default": {"BACKEND": BACKEND, "OPTIONS": {"key": KEY, "template": "Oi"}}}
    )
    with pytest.raises(Sms2faConfigurationError) as err:
        build_provider("default")
    assert err.value.check_id == "sms2fa.E002"


def test_an_unknown_option_is_refused():
    with pytest.raises(Sms2faConfigurationError):
        SMSTokenProvider(key=KEY, kee="typo")


def test_the_base_url_is_checked():
    with pytest.raises(Sms2faConfigurationError):
        make(base_url="http://169.254.169.254/")
    assert make().base_url == BASE


# ------------------------------------------------------------- secrets


def test_the_key_and_codes_never_reach_logs_errors_or_reprs(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    provider = make(base_url=loopback.url, read_timeout=0.3)
    texts: list[str] = [repr(provider), str(vars(provider).get("template"))]

    loopback.respond(200, {**ok_answer(), "key": KEY})
    result = provider.send(SMS)
    texts += [repr(result), json.dumps(result.raw, ensure_ascii=False)]

    loopback.respond(200, {"situacao": "ERRO", "descricao": f"KEY {KEY} INVALIDA"})
    loopback.respond(401, f"<html>bad key {KEY}</html>")
    loopback.respond(500, {"situacao": "ERRO", "descricao": f"erro {CODE}", "code": CODE})
    loopback.respond(200, f"garbage {KEY} {CODE}")
    loopback.respond(200, {**ok_answer(), "code": "999999"})
    loopback.respond(200, ok_answer(), delay=1)
    for _ in range(6):
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as err:
            provider.send(SMS)
        texts += [str(err.value), repr(err.value), err.value.provider_text]

    loopback.respond(200, {"situacao": "ERRO", "descricao": f"chave {KEY} bloqueada"})
    with pytest.raises(ProviderRejected) as err:
        provider.check_code(phone=PHONE, code=CODE)
    texts += [str(err.value), repr(err.value), err.value.provider_text]

    records = [record.getMessage() for record in caplog.records]
    assert any("/token/v1/verify" in line for line in records), "urllib3 should log requests"
    for text in texts + records:
        assert KEY not in text
        assert CODE not in text
    # The key did go out, in the JSON body of every request, and nowhere else.
    for request in loopback.requests:
        assert request.json()["key"] == KEY
        assert KEY not in request.path and KEY not in json.dumps(request.headers)


# ------------------------------------------------------------- real HTTP


def test_a_real_round_trip_over_loopback(loopback):
    loopback.respond(200, ok_answer())
    result = make(base_url=loopback.url).send(SMS)
    request = loopback.requests[0]
    assert (request.method, request.path) == ("POST", "/token/v1/verify")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "django-sms2fa"
    assert request.json()["code"] == CODE
    # requests' JSON: non-ASCII as \uXXXX escapes, so no charset can garble it.
    assert request.body.isascii() and b"Seu c\\u00f3digo" in request.body
    assert request.json()["template"] == "Seu código de verificação é: {999999}"
    assert result.message_id == "771037704"
    assert result.latency_ms is not None


def test_twenty_sends_reuse_one_connection(loopback):
    loopback.always(200, ok_answer())
    provider = make(base_url=loopback.url)
    for _ in range(20):
        assert provider.send(SMS).message_id == "771037704"
    assert len(loopback.requests) == 20
    assert loopback.connections == 1


# ------------------------------------------------------------- flows


class FakeSMSToken:
    """A loopback handler that behaves like SMSToken: echoes or makes codes, checks them."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}  # number -> code (what the phone shows)
        self.next_id = 771037704

    def __call__(self, request: Recorded) -> Answer:
        body = request.json()
        if body.get("key") != KEY:
            return Answer(200, {"situacao": "ERRO", "descricao": "KEY INVALIDA"})
        if request.path == "/token/v1/verify":
            slot = body["template"][body["template"].index("{") + 1 : body["template"].index("}")]
            code = body.get("code") or "".join(random.choice("0123456789") for _ in slot)
            self.codes[body["number"]] = code
            self.next_id += 1
            return Answer(200, {**ok_answer(code, str(self.next_id))})
        if request.path == "/token/v1/check":
            right = self.codes.get(body["number"]) == body["code"]
            if right:
                del self.codes[body["number"]]
                return Answer(200, {"situacao": "OK", "checked": True, "descricao": "OK"})
            return Answer(200, {"situacao": "ERRO", "descricao": "CODIGO INVALIDO"})
        return Answer(404, "not found")


def configure(sms2fa_settings, loopback, **options) -> FakeSMSToken:
    fake = FakeSMSToken()
    loopback.handler = fake
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": BACKEND,
                "OPTIONS": {"key": KEY, "base_url": loopback.url, **options},
            }
        }
    )
    return fake


@pytest.mark.django_db
def test_flow_with_our_code_checked_locally(sms2fa_settings, loopback):
    fake = configure(sms2fa_settings, loopback)
    challenge = flows.request_challenge(phone="+55 11 98888-7777", purpose="login")
    assert len(loopback.requests) == 1
    sent = loopback.requests[0].json()
    assert sent["number"] == NUMBER
    assert sent["refer"] == str(challenge.pk)
    received = fake.codes[NUMBER]
    assert received == sent["code"] and len(received) == 6

    challenge.refresh_from_db()
    assert challenge.checked_by == CheckedBy.LOCAL
    assert challenge.code_hash and received not in challenge.code_hash
    message = Message.objects.get(challenge=challenge)
    assert message.provider_message_id == "771037705"
    assert message.status == SENT
    assert message.provider_status == "OK"

    wrong = "0" * 6 if received != "0" * 6 else "1" * 6
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, wrong)
    verified = flows.verify_challenge(challenge.pk, received)
    assert verified.status == ChallengeStatus.VERIFIED
    assert len(loopback.requests) == 1  # checked here, never by /check


@pytest.mark.django_db
def test_flow_with_the_provider_checking_its_own_code(sms2fa_settings, loopback):
    fake = configure(sms2fa_settings, loopback, check_remotely=True)
    challenge = flows.request_challenge(phone=PHONE, purpose="login")
    sent = loopback.requests[0].json()
    assert "code" not in sent and sent["template"].endswith("{999999}")
    received = fake.codes[NUMBER]
    challenge.refresh_from_db()
    assert challenge.checked_by == CheckedBy.PROVIDER
    assert challenge.code_hash == ""
    assert Message.objects.get(challenge=challenge).provider_message_id == "771037705"

    wrong = "0" * 6 if received != "0" * 6 else "1" * 6
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, wrong)
    verified = flows.verify_challenge(challenge.pk, received)
    assert verified.status == ChallengeStatus.VERIFIED
    checks = [r.json() for r in loopback.requests if r.path == "/token/v1/check"]
    assert checks == [
        {"key": KEY, "number": NUMBER, "code": wrong},
        {"key": KEY, "number": NUMBER, "code": received},
    ]


@pytest.mark.django_db
def test_flow_outage_leaves_the_challenge_undeliverable(sms2fa_settings, loopback):
    configure(sms2fa_settings, loopback)
    loopback.handler = None
    loopback.always(503, "<html>Service Unavailable</html>")
    with pytest.raises(DeliveryFailed) as err:
        flows.request_challenge(phone=PHONE, purpose="login")
    challenge = Challenge.objects.get(pk=err.value.context["challenge_id"])
    assert challenge.status == ChallengeStatus.UNDELIVERABLE
    message = Message.objects.get(challenge=challenge)
    assert message.status == "failed"
    assert message.error_code == "503"
    assert len(loopback.requests) == 1


@pytest.mark.django_db
def test_flow_with_a_bad_key_records_an_auth_failure(sms2fa_settings, loopback):
    configure(sms2fa_settings, loopback)
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": BACKEND,
                "OPTIONS": {"key": "wrong-key-1", "base_url": loopback.url},
            }
        }
    )
    with pytest.raises(DeliveryFailed) as err:
        flows.request_challenge(phone=PHONE, purpose="login")
    message = Message.objects.get(challenge_id=err.value.context["challenge_id"])
    assert message.error_code == "auth"
    assert message.error_text == "ERRO: KEY INVALIDA"
    assert isinstance(err.value.__cause__, ProviderRejected)
