"""SMSToken (smstoken.com.br, Brazil): a two-factor token API.

API page: https://www.smstoken.com.br/api (Portuguese). Two endpoints on
``https://api.smstoken.com.br``:

* ``POST /token/v1/verify`` ``{key, number, template, code?, expire, refer?}``
  sends an SMS built from ``template``. ``{…}`` in the template is the code
  slot: "each 9 becomes one digit", other characters in the slot are printed
  literally (``{999-999}`` shows ``930-931``). With ``code`` the provider
  prints *our* code; without it, it makes one. Answer::

      {"situacao": "OK", "id": "771037704",
       "mensagem": "<#> Seu código de verificação é: 930-931",
       "code": "930931", "descricao": "TOKEN ENVIADO COM SUCESSO"}

* ``POST /token/v1/check`` ``{key, number, code}`` → ``{"situacao": "OK",
  "checked": true, "descricao": "CODIGO VALIDADO COM SUCESSO"}``.

Modes (docs/providers/modes.md):

* default — **(b)**: flows make the code, we pass it as ``code`` with a slot of
  exactly as many ``9`` as the code has digits, and the code is checked
  locally (hashed, attempt-limited). Capabilities ``accepts_code`` and
  ``returns_code``. When an ``OutgoingSms`` carries no code, the provider makes
  one and we hand it back as ``returned_code`` — mode **(c)**.
* ``check_remotely=True`` — **(d)**: capabilities ``verifies_code`` only; the
  provider makes the code and :meth:`SMSTokenProvider.check_code` asks
  ``/check``. Weaker (the provider, not us, holds the code), so opt-in.

Quirks the code depends on:

* "A autenticação é feita por key … Em cada requisição seja ela feita via POST,
  GET ou JSON o parâmetro key deve ser configurado": the credential travels in
  the request itself. We put it in the JSON body only — never in the URL,
  which proxies and urllib3's debug log print — and scrub it, the code and the
  full text (``mensagem``) from everything we keep.
* The answer echoes ``code`` and ``mensagem`` (which holds the code); neither is
  ever stored in ``raw`` or in an error text.
* Errors are not documented for SMSToken itself. Its sister platforms (SMSDev,
  SMS Empresa: same panel, same key scheme) answer ``{"situacao": "ERRO",
  "descricao": "…"}``, probably with HTTP 200. Only ``situacao == "OK"`` is
  success; the Portuguese ``descricao`` is sorted into permanent and transient
  failures by keyword (:func:`_classify`).
* The docs type ``code`` as "número" and send it as a JSON number in the
  ``/check`` example; we send it as a string of digits so that a leading zero
  survives (``012345`` is not the number ``12345``). The API also takes form
  fields and query parameters, which are always strings, so it must parse
  digit strings anyway; ``number`` goes as a string too, as in the docs'
  examples.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from typing import Any

from ..exceptions import ProviderRejected, ProviderUnavailable, Sms2faConfigurationError
from ..types import SENT, Capabilities, OutgoingSms, SendResult
from .http import REDACTED, HttpAnswer, HttpProvider, summarize_body

__all__ = ["SMSTokenProvider", "DEFAULT_TEMPLATE", "CODE_MARKER"]

#: Put this where the code goes in a custom ``template`` option.
CODE_MARKER = "{code}"
#: The SMS text unless the ``template`` option says otherwise.
DEFAULT_TEMPLATE = "Seu código de verificação é: {code}"

VERIFY_PATH = "/token/v1/verify"
CHECK_PATH = "/token/v1/check"
OK = "OK"
MAX_REFER_LENGTH = 250  # the docs' "Padrão" column for refer
MAX_CODE_LENGTH = 25  # the longest code clean_submitted_code() lets through

# E.164 as flows hand it over; the API wants the digits without "+".
_E164 = re.compile(r"\+([1-9][0-9]{7,14})")
_DIGITS = re.compile(r"[0-9]+")
# Answer fields that hold the code (or the text around it) or the credential.
_SENSITIVE_FIELDS = frozenset({"code", "codigo", "código", "mensagem", "message", "key", "token"})

# Keywords of `descricao` (upper case, accents removed), most specific first.
# None of these texts is documented for SMSToken; see docs/providers/smstoken.md.
_AUTH_WORDS = ("KEY", "CHAVE", "AUTENTIC", "AUTORIZ", "CREDENCI", "BLOQUEAD", "SUSPENS", "INATIV")
_BALANCE_WORDS = ("SALDO", "CREDITO")
_TEMPORARY_WORDS = (
    "LIMITE",
    "AGUARDE",
    "MUITAS",
    "EXCEDID",
    "TENTE NOVAMENTE",
    "INDISPONIV",
    "MANUTENC",
    "TEMPORAR",
)
_NUMBER_WORDS = ("NUMERO", "DESTINAT", "TELEFONE", "CELULAR")


class SMSTokenProvider(HttpProvider):
    """SMSToken's ``/token/v1/verify`` and ``/token/v1/check``.

    Options (keyword-only):

    :param key: the account's (or sub-account's) API key. Required, secret.
    :param template: SMS text with the marker ``{code}`` where the code goes
        (default :data:`DEFAULT_TEMPLATE`). No other ``{`` or ``}``: the
        provider would read them as a code slot.
    :param check_remotely: let SMSToken make and check the code (mode d)
        instead of sending ours and checking it locally (default ``False``).

    plus the :class:`~django_sms2fa.providers.http.HttpProvider` options
    (``base_url``, ``connect_timeout``, ``read_timeout``, ``ca_bundle``, …).
    """

    provider_name = "SMSToken"
    default_base_url = "https://api.smstoken.com.br"
    capabilities = Capabilities(accepts_code=True, returns_code=True)

    def __init__(
        self,
        *,
        key: str,
        template: str = DEFAULT_TEMPLATE,
        check_remotely: bool = False,
        alias: str = "default",
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        if not isinstance(key, str) or not key.strip():
            raise Sms2faConfigurationError(
                f"SMSToken provider {alias!r}: the 'key' option must be a non-empty string.",
                check_id="sms2fa.E002",
            )
        # A trailing newline from an env file would make every call fail auth.
        self._key = key.strip()
        self.add_secrets(self._key)
        self.template = _checked_template(template, alias=alias)
        if not isinstance(check_remotely, bool):
            raise Sms2faConfigurationError(
                f"SMSToken provider {alias!r}: 'check_remotely' must be True or False.",
                check_id="sms2fa.E002",
            )
        self.check_remotely = check_remotely
        if check_remotely:
            # Per instance: the class attribute is the default mode.
            self.capabilities = Capabilities(verifies_code=True)

    # ------------------------------------------------------------------ send

    def _send(self, sms: OutgoingSms) -> SendResult:
        number = self._number(sms.to)
        our_code = sms.code
        if our_code and not _is_code(our_code):
            raise ProviderRejected(
                provider=self.alias,
                provider_code="invalid_code",
                provider_text="the code to send is not 1-25 ASCII digits",
            )
        length = len(our_code) if our_code else sms.code_length
        if not 1 <= length <= MAX_CODE_LENGTH:
            raise ProviderRejected(
                provider=self.alias,
                provider_code="invalid_code_length",
                provider_text=f"cannot make a {length}-digit code slot",
            )
        body: dict[str, Any] = {
            "key": self._key,
            "number": number,
            "template": self.template.replace(CODE_MARKER, "{" + "9" * length + "}"),
        }
        if our_code:
            # A string, not a JSON number: a leading zero must survive.
            body["code"] = our_code
        body["expire"] = max(int(sms.ttl), 1)
        if sms.reference:
            body["refer"] = sms.reference[:MAX_REFER_LENGTH]

        answer = self.call("POST", VERIFY_PATH, json_body=body)
        codes = [our_code]
        data = _parse(answer)
        if isinstance(data, dict):
            echoed = data.get("code")
            if isinstance(echoed, (str, int)) and not isinstance(echoed, bool):
                codes.append(str(echoed))
        if not 200 <= answer.status < 300:
            raise self._http_error(answer, data, codes)
        if not isinstance(data, dict):
            raise self._malformed(answer, "answer is not a JSON object", codes)
        situacao = data.get("situacao")
        if situacao != OK:
            if isinstance(situacao, str) and situacao.strip():
                raise self._refusal(answer, data, codes)
            raise self._malformed(answer, "answer has no 'situacao'", codes)
        message_id = data.get("id")
        if isinstance(message_id, bool) or not isinstance(message_id, (str, int)):
            raise self._malformed(answer, "answer has no message 'id'", codes)
        message_id = str(message_id).strip()
        if not message_id:
            raise self._malformed(answer, "answer has an empty message 'id'", codes)

        returned = ""
        echoed = data.get("code")
        if our_code:
            # The provider printed some code; if it says it is not ours, the
            # user holds a code our hash will never match.
            if echoed is not None and not _same_code(echoed, our_code):
                raise ProviderUnavailable(
                    provider=self.alias,
                    provider_code="code_mismatch",
                    provider_text=(
                        f"message {message_id} was accepted, but the provider reports "
                        "a different code than the one we sent"
                    ),
                    http_status=answer.status,
                    may_have_sent=True,
                )
        elif not self.check_remotely:
            # Mode (c): the provider made the code and we must learn it.
            if not (isinstance(echoed, str) and _is_code(echoed) and len(echoed) == length):
                raise self._malformed(
                    answer, f"answer has no {length}-digit 'code' for message {message_id}", codes
                )
            returned = echoed
        return SendResult(
            message_id=message_id,
            status=SENT,
            provider_status=OK,
            raw=self._scrub(data, codes),
            returned_code=returned,
        )

    # ----------------------------------------------------------------- check

    def check_code(self, *, phone: str, code: str, message_id: str = "") -> bool:
        """Ask ``/token/v1/check`` whether ``code`` is the code sent to ``phone``.

        Works in either mode (the provider keeps every code it sent), but
        flows only call it when ``check_remotely`` is on.

        :returns: ``True`` only for ``situacao == "OK"`` with ``checked: true``;
            ``False`` for ``checked: false`` and for refusals that are about
            the code (wrong, expired, unknown).
        :raises ProviderRejected: bad credentials (``provider_code="auth"``),
            an unsupported number, or a 4xx answer.
        :raises ProviderUnavailable: 429/5xx, a timeout, an answer we cannot
            read, or a refusal that says "try later".
        """
        if not (isinstance(code, str) and _is_code(code)):
            return False  # never sent to the provider, never right
        number = self._number(phone)
        body = {"key": self._key, "number": number, "code": code}
        answer = self.call("POST", CHECK_PATH, json_body=body)
        codes = [code]
        data = _parse(answer)
        if not 200 <= answer.status < 300:
            raise self._http_error(answer, data, codes)
        if not isinstance(data, dict):
            raise self._malformed(answer, "check answer is not a JSON object", codes)
        situacao = data.get("situacao")
        if situacao == OK:
            return data.get("checked") is True
        if not (isinstance(situacao, str) and situacao.strip()):
            raise self._malformed(answer, "check answer has no 'situacao'", codes)
        kind, _ = _classify(_text(data.get("descricao")))
        if kind in ("auth", "no_balance", "temporary"):
            raise self._refusal(answer, data, codes)
        # "CODIGO INVALIDO", "EXPIRADO", "NAO ENCONTRADO", …: not right.
        return False

    # --------------------------------------------------------------- helpers

    def _number(self, e164: str) -> str:
        match = _E164.fullmatch(e164 or "")
        if match is None:
            raise ProviderRejected(
                provider=self.alias,
                provider_code="unsupported_number",
                provider_text="SMSToken needs an international number (E.164, 8-15 digits)",
            )
        return match.group(1)

    def _scrub(self, value: Any, codes: list[str]) -> Any:
        """``value`` without code/text/key fields, any leaf holding a secret redacted."""
        secrets = [s for s in [self._key, *codes] if s]
        if isinstance(value, dict):
            return {
                str(name): self._scrub(item, codes)
                for name, item in value.items()
                if str(name).lower() not in _SENSITIVE_FIELDS
            }
        if isinstance(value, list):
            return [self._scrub(item, codes) for item in value]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value)
            if any(secret in text for secret in secrets):
                return REDACTED
            return value if isinstance(value, (int, float)) else self.redact(text)
        return value

    def _safe_text(self, answer: HttpAnswer, data: Any, codes: list[str]) -> str:
        """The answer body as it may be kept: no key, no code, no SMS text."""
        if data is not None:
            return json.dumps(self._scrub(data, codes), ensure_ascii=False)
        # The key first: masking a code that happens to occur inside the key
        # would leave the rest of the key unrecognisable to redact().
        text = self.redact(answer.text)
        for code in sorted({c for c in codes if c}, key=len, reverse=True):
            text = text.replace(code, "•" * len(code))
        return text

    def _detail(self, data: dict[str, Any], codes: list[str]) -> str:
        situacao = self._scrub(_text(data.get("situacao")), codes)
        descricao = self._scrub(_text(data.get("descricao")), codes)
        return f"{situacao}: {descricao}" if descricao else str(situacao)

    def _refusal(
        self, answer: HttpAnswer, data: dict[str, Any], codes: list[str]
    ) -> ProviderRejected | ProviderUnavailable:
        """A 2xx ``situacao != "OK"`` answer: nothing was sent."""
        kind, code = _classify(_text(data.get("descricao")))
        code = code or _text(data.get("situacao"))[:64]
        detail = self._detail(data, codes)
        if kind in ("no_balance", "temporary"):
            # Another provider (failover) or a later try may well succeed.
            return ProviderUnavailable(
                provider=self.alias,
                provider_code=code,
                provider_text=self.redact(detail),
                http_status=answer.status,
                may_have_sent=False,
            )
        return self.rejected(answer, code, detail)

    def _http_error(
        self, answer: HttpAnswer, data: Any, codes: list[str]
    ) -> ProviderRejected | ProviderUnavailable:
        code = ""
        if isinstance(data, dict) and data.get("situacao") not in (None, OK):
            code = _classify(_text(data.get("descricao")))[1]
            text = self._detail(data, codes)
        else:
            text = summarize_body(self._safe_text(answer, data, codes))
        if answer.status in (401, 403):
            code = "auth"
        return self.http_error(answer, provider_code=code, provider_text=text)

    def _malformed(self, answer: HttpAnswer, what: str, codes: list[str]) -> ProviderUnavailable:
        # http.malformed() quotes the body: hand it a copy with codes removed.
        safe = dataclasses.replace(answer, text=self._safe_text(answer, _parse(answer), codes))
        return self.malformed(safe, what)


# ------------------------------------------------------------------ functions


def _checked_template(template: Any, *, alias: str) -> str:
    problem = ""
    if not isinstance(template, str):
        problem = "must be a string"
    elif template.count(CODE_MARKER) != 1:
        problem = f"must contain the marker {CODE_MARKER} exactly once"
    elif "{" in template.replace(CODE_MARKER, "") or "}" in template.replace(CODE_MARKER, ""):
        problem = (
            f"must not contain braces other than {CODE_MARKER} (SMSToken reads them as a code slot)"
        )
    if problem:
        raise Sms2faConfigurationError(
            f"SMSToken provider {alias!r}: the 'template' option {problem}.",
            check_id="sms2fa.E002",
        )
    return template


def _parse(answer: HttpAnswer) -> Any:
    """The body as JSON (a UTF-8 BOM, as PHP sometimes sends, is ignored), or None."""
    text = answer.text.lstrip("\ufeff").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_code(value: str) -> bool:
    return bool(_DIGITS.fullmatch(value)) and len(value) <= MAX_CODE_LENGTH


def _same_code(echoed: Any, ours: str) -> bool:
    if isinstance(echoed, str):
        return echoed.strip() == ours
    if isinstance(echoed, int) and not isinstance(echoed, bool):
        # A JSON number cannot show leading zeros; equal as numbers is the best
        # it can say.
        return echoed == int(ours)
    return False


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()


def _classify(descricao: str) -> tuple[str, str]:
    """Sort a ``descricao`` into (kind, provider_code); kind "" when unknown."""
    folded = _fold(descricao)
    if any(word in folded for word in _AUTH_WORDS):
        return "auth", "auth"
    if any(word in folded for word in _BALANCE_WORDS):
        return "no_balance", "no_balance"
    if any(word in folded for word in _TEMPORARY_WORDS):
        return "temporary", "temporary"
    if any(word in folded for word in _NUMBER_WORDS):
        return "number", "invalid_number"
    return "", ""
