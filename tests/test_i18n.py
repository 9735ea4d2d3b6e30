"""Translations: the shipped catalogs, and pages, API errors and SMS in the
user's language (Accept-Language through LocaleMiddleware, or the adapter's
``get_language(user)``)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polib
import pytest

from django.core.management import call_command
from django.utils import translation

import django_sms2fa
from django_sms2fa import device_flows, flows
from django_sms2fa.adapter import DefaultSms2faAdapter
from django_sms2fa.models import PhoneDevice, Purpose
from django_sms2fa.phones import mask_phone

from .api_support import api_post, assert_error

PACKAGE = Path(django_sms2fa.__file__).parent
LANGUAGES = ["ru", "pt_BR", "sv"]
PHONE = "+46701234567"
OTHER_PHONE = "+46709876543"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w*\}")

SMS = {
    "sv": "Din verifieringskod är {code}. Den går ut om 5 minuter.",
    "pt-br": "Seu código de verificação é {code}. Ele expira em 5 minutos.",
    "ru": "Ваш код подтверждения: {code}. Он действует {minutes} {word}.",
}


def catalog(language: str, ext: str) -> Path:
    return PACKAGE / "locale" / language / "LC_MESSAGES" / f"django.{ext}"


def translations(entries) -> dict[tuple[str, str], object]:
    """(context, msgid) → msgstr, or the plural forms as a tuple."""
    found = {}
    for entry in entries:
        if entry.obsolete or not entry.msgid:
            continue
        value = (
            tuple(entry.msgstr_plural[i] for i in sorted(entry.msgstr_plural))
            if entry.msgid_plural
            else entry.msgstr
        )
        found[(entry.msgctxt or "", entry.msgid)] = value
    return found


@pytest.fixture
def locale_middleware(settings):
    """Activate each request's Accept-Language, as a site with i18n does."""
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
        "django.middleware.locale.LocaleMiddleware",
    )
    settings.MIDDLEWARE = middleware
    # LocaleMiddleware leaves the request's language active in this thread
    # after the response: restore it, or the next tests run in Russian.
    with translation.override(translation.get_language()):
        yield


class LanguageAdapter(DefaultSms2faAdapter):
    """A site that stores each user's language (here: in ``first_name``)."""

    def get_language(self, user):
        return user.first_name or None


@pytest.fixture
def user_language(sms2fa_settings):
    sms2fa_settings(ADAPTER=f"{__name__}.LanguageAdapter")


# ----------------------------------------------------------------- catalogs


@pytest.mark.parametrize("language", LANGUAGES)
def test_compiled_catalog_matches_its_po(language):
    po = polib.pofile(str(catalog(language, "po")))
    mo = polib.mofile(str(catalog(language, "mo")))
    expected = translations(po)
    assert expected, "empty catalog"
    # Every translation of the .po is in the .mo, unchanged, and nothing else:
    # a .po edited without recompiling (scripts/messages.sh compile) fails here.
    assert translations(mo) == expected
    assert mo.metadata["Plural-Forms"] == po.metadata["Plural-Forms"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_is_complete_and_not_fuzzy(language):
    po = polib.pofile(str(catalog(language, "po")))
    assert not po.metadata_is_fuzzy, "a fuzzy header is skipped by msgfmt (no charset)"
    assert po.metadata["Language"] == language
    assert po.metadata["Content-Type"] == "text/plain; charset=UTF-8"
    assert [e.msgid for e in po.untranslated_entries()] == []
    assert [e.msgid for e in po.fuzzy_entries()] == []
    nplurals = int(re.search(r"nplurals=(\d+)", po.metadata["Plural-Forms"]).group(1))
    assert nplurals == {"ru": 3, "pt_BR": 2, "sv": 2}[language]
    for entry in po.translated_entries():
        # Placeholders survive translation exactly (a lost %(code)s would send
        # an SMS without its code).
        if entry.msgid_plural:
            assert len(entry.msgstr_plural) == nplurals, entry.msgid
            for form in entry.msgstr_plural.values():
                assert sorted(PLACEHOLDER.findall(form)) == sorted(
                    PLACEHOLDER.findall(entry.msgid_plural)
                ), (entry.msgid, form)
        else:
            assert sorted(PLACEHOLDER.findall(entry.msgstr)) == sorted(
                PLACEHOLDER.findall(entry.msgid)
            ), (entry.msgid, entry.msgstr)


@pytest.mark.skipif(not shutil.which("xgettext"), reason="needs GNU gettext (apt-get gettext)")
def test_catalogs_hold_every_string_of_the_source(tmp_path, monkeypatch):
    """makemessages on a copy of the package finds no string the catalogs lack.

    A failure lists the new strings: run ``bash scripts/messages.sh``,
    translate them, and run it again.
    """
    copy = tmp_path / "django_sms2fa"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    monkeypatch.chdir(copy)
    call_command(
        "makemessages",
        locale=["sv"],
        extensions=["html", "txt", "py"],
        ignore_patterns=["migrations/*"],
        no_location=True,
        no_obsolete=True,
        verbosity=0,
    )
    fresh = set(translations(polib.pofile(str(copy / "locale/sv/LC_MESSAGES/django.po"))))
    for language in LANGUAGES:
        shipped = set(translations(polib.pofile(str(catalog(language, "po")))))
        assert sorted(fresh - shipped) == [], f"{language}: strings missing from the catalog"
        assert sorted(shipped - fresh) == [], f"{language}: strings no longer in the source"


# ----------------------------------------------------------------- API errors


def test_api_error_is_in_the_request_language(client, db, outbox, locale_middleware):
    response = api_post(client, "challenges/", {"phone": "12", "purpose": "verify_phone"})
    assert_error(response, 400, "invalid_phone")
    assert response.json()["error"]["message"] == (
        "Enter a valid phone number, including the country code."
    )

    response = client.post(
        "/api/2fa/challenges/",
        {"phone": "12", "purpose": "verify_phone"},
        content_type="application/json",
        headers={"accept-language": "ru"},
    )
    error = assert_error(response, 400, "invalid_phone")
    assert error["message"] == "Введите правильный номер телефона с кодом страны."
    assert outbox == []


def test_api_validation_error_is_translated(client, db, locale_middleware):
    response = client.post(
        "/api/2fa/challenges/",
        {"phone": PHONE, "purpose": "other"},
        content_type="application/json",
        headers={"accept-language": "pt-BR"},
    )
    error = assert_error(response, 400, "invalid")
    assert error["message"] == "A requisição não é válida."
    assert error["fields"]["purpose"] == ["Escolha verify_phone ou passwordless."]


# ------------------------------------------------------------------------ SMS


@pytest.mark.parametrize(("header", "language"), [("sv", "sv"), ("pt-BR,pt;q=0.8", "pt-br")])
def test_sms_is_in_the_request_language(client, db, outbox, locale_middleware, header, language):
    response = client.post(
        "/api/2fa/challenges/",
        {"phone": PHONE, "purpose": "verify_phone"},
        content_type="application/json",
        headers={"accept-language": header},
    )
    assert response.status_code == 202, response.content
    (sms,) = outbox
    assert sms.text == SMS[language].format(code=sms.code)


def test_sms_is_in_english_without_a_language(client, db, outbox, locale_middleware):
    api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    (sms,) = outbox
    assert sms.text == f"Your verification code is {sms.code}. It expires in 5 minutes."


@pytest.mark.parametrize(
    ("lifetime", "minutes", "word"), [(60, 1, "минуту"), (120, 2, "минуты"), (300, 5, "минут")]
)
def test_russian_sms_has_the_right_plural(db, outbox, sms2fa_settings, lifetime, minutes, word):
    sms2fa_settings(CODE_LIFETIME=lifetime)
    flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE, language="ru")
    (sms,) = outbox
    assert sms.text == SMS["ru"].format(code=sms.code, minutes=minutes, word=word)


def test_sms_is_in_the_users_language_from_the_adapter(
    client, user, outbox, locale_middleware, user_language
):
    """The adapter's language for the user wins over the request's."""
    user.first_name = "pt-br"
    user.save()
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    response = client.post(
        "/api/2fa/login/",
        {"username": "alice", "password": "correct horse"},
        content_type="application/json",
        headers={"accept-language": "sv"},
    )
    assert response.json()["mfa_required"] is True
    (sms,) = outbox
    assert sms.text == SMS["pt-br"].format(code=sms.code)

    # A resend of the same challenge too, whatever the request's language.
    challenge_id = response.json()["challenge"]["id"]
    with translation.override("ru"):
        flows.resend_challenge(challenge_id)
    assert outbox[-1].text == SMS["pt-br"].format(code=outbox[-1].code)


def test_adapter_without_a_language_leaves_the_active_one(user, outbox, user_language):
    user.first_name = ""  # get_language() -> None
    user.save()
    with translation.override("sv"):
        flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user)
    assert outbox[0].text == SMS["sv"].format(code=outbox[0].code)


def test_an_explicit_language_wins_over_the_adapter(user, outbox, user_language):
    user.first_name = "pt-br"
    user.save()
    flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user, language="sv")
    assert outbox[0].text == SMS["sv"].format(code=outbox[0].code)


def test_deferred_sms_keeps_the_language_of_the_request(
    db, outbox, django_capture_on_commit_callbacks
):
    """A send after the commit runs outside the request's language."""
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic(), translation.override("sv"):
            flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
        assert outbox == []  # not sent inside the transaction
    (sms,) = outbox
    assert sms.text == SMS["sv"].format(code=sms.code)


def test_notice_to_the_other_phones_is_in_the_users_language(user, outbox, user_language):
    user.first_name = "sv"
    user.save()
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="old")
    device, challenge = device_flows.enrol_phone(user, OTHER_PHONE, verified_session=True)
    device_flows.confirm_phone(user, device.pk, challenge.pk, outbox[-1].code)
    notice = outbox[-1]
    assert notice.to == PHONE
    assert notice.text == (
        "Ett nytt telefonnummer har lagts till på ditt konto som inloggningsmetod. "
        "Om det inte var du, kontakta supporten nu."
    )


def test_otp_device_challenge_text_is_translated(user, outbox):
    device = PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    with translation.override("ru"):
        text = device.generate_challenge()
    assert text == f"Код отправлен по SMS на номер {mask_phone(PHONE)}."


# ---------------------------------------------------------------------- pages


def test_login_page_is_in_the_request_language(client, db, locale_middleware):
    page = client.get("/2fa/login/", headers={"accept-language": "sv"}).content.decode()
    assert '<html lang="sv">' in page
    assert "<title>Logga in</title>" in page
    for label in ("Användarnamn", "Lösenord", "Logga in med din telefon i stället"):
        assert label in page
    assert "Username" not in page and "Password" not in page

    page = client.get("/2fa/login/").content.decode()
    assert "Username" in page and "Användarnamn" not in page


def test_wrong_password_page_and_code_page_are_translated(client, user, outbox, locale_middleware):
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="phone")
    ru = {"accept-language": "ru"}
    page = client.post(
        "/2fa/login/", {"username": "alice", "password": "wrong"}, headers=ru
    ).content.decode()
    assert "Неверное имя пользователя или пароль." in page
    assert outbox == []

    pt = {"accept-language": "pt-BR"}
    response = client.post(
        "/2fa/login/", {"username": "alice", "password": "correct horse"}, headers=pt
    )
    assert response.status_code == 302
    page = client.get(response["Location"], headers=pt).content.decode()
    assert f"Enviamos um código por SMS para {mask_phone(PHONE)}." in page
    assert "Digite o código" in page
    (sms,) = outbox
    assert sms.text == SMS["pt-br"].format(code=sms.code)


# ---------------------------------------------------------------------- tasks


def test_sms_sent_by_a_task_worker_keeps_the_users_language(
    settings, sms2fa_settings, user, outbox, user_language
):
    """The language is settled in the request: a worker has none of its own."""
    import django

    if django.VERSION >= (6, 0):
        from django.tasks import task_backends
    else:  # the backport
        from django_tasks import task_backends

    package = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    settings.TASKS = {"default": {"BACKEND": f"{package}.backends.dummy.DummyBackend"}}
    sms2fa_settings(SEND_VIA_TASKS=True)
    backend = task_backends["default"]
    backend.clear()
    user.first_name = "ru"
    user.save()
    with translation.override("sv"):
        flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user)
    assert outbox == []
    (result,) = backend.results
    with translation.override("en"):  # the worker's own language
        assert result.task.call(*result.args, **result.kwargs) == "sent"
    (sms,) = outbox
    assert sms.text == SMS["ru"].format(code=sms.code, minutes=5, word="минут")


# ---------------------------------------------------------------------- admin


@pytest.mark.urls("tests.admin_support")
def test_admin_audit_is_in_the_request_language(
    client, admin_user, user, outbox, locale_middleware
):
    flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user)
    client.force_login(admin_user)
    page = client.get(
        "/admin/django_sms2fa/challenge/", headers={"accept-language": "sv"}
    ).content.decode()
    # The model's name, a status and a purpose (choices), a column and a filter.
    for text in (
        "Verifieringsbegäranden",
        "Väntar",
        "Andra faktor vid inloggning",
        "Exportera CSV",
        # Field labels as column headers and filter titles.
        "Skapad",
        "Syfte",
    ):
        assert text in page, text
    assert "Second factor at login" not in page and "Created at" not in page
    messages = client.get(
        "/admin/django_sms2fa/message/", headers={"accept-language": "sv"}
    ).content.decode()
    assert "Skickat" in messages  # the status filter's choices
