"""Password guessing at the app's login (``login/`` in the API, the login page).

Before, a password could be guessed there as fast as the server answered:
the code lockout only starts after a right password. Now wrong passwords are
counted per username and per client IP, atomically and before the password
is checked, with the code lockout's shape (``PASSWORD_LOCKOUT``: 10 per
username, 100 per IP; 512 s at the threshold, doubling to an hour). A
locked login answers 429 ``rate_limited`` with ``Retry-After`` — for a right
password too, and exactly alike for a username that does not exist.
"""

from __future__ import annotations

import threading
import time

import pytest

from django.core import checks
from django.test import Client

from django_sms2fa import ratelimit
from django_sms2fa.exceptions import RateLimited, Sms2faConfigurationError
from django_sms2fa.models import PhoneDevice

from .test_send_limits import START, api_post, frozen

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse"  # the `user` fixture's
PAGE = "/2fa/login/"


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number="+46701234567", name="p", confirmed=True)


def api_login(username: str, password: str, ip: str) -> tuple[int, str, int | None]:
    """(status, error code or "", Retry-After) of one API login."""
    response = api_post(
        Client(REMOTE_ADDR=ip), "login/", {"username": username, "password": password}
    )
    if response.status_code == 200:
        return 200, "", None
    error = response.json()["error"]
    retry = error.get("retry_after")
    if response.status_code == 429:
        assert response["Retry-After"] == str(retry)
    else:
        assert not response.has_header("Retry-After")
    return response.status_code, error["code"], retry


def page_login(username: str, password: str, ip: str) -> tuple[int, str | None]:
    response = Client(REMOTE_ADDR=ip).post(PAGE, {"username": username, "password": password})
    return response.status_code, response.get("Retry-After")


def ip(index: int) -> str:
    return f"192.0.2.{index % 250 + 1}"


# ----------------------------------------------------------- per username


def test_ten_wrong_passwords_lock_the_username_even_for_the_right_one(user, device, outbox):
    with frozen(START) as clock:
        wrongs = [api_login("alice", f"guess {n}", ip(n)) for n in range(10)]
        right = api_login("alice", PASSWORD, "198.51.100.7")
        clock.advance(511)
        still = api_login("alice", PASSWORD, "198.51.100.7")
        clock.advance(1)
        after = api_login("alice", PASSWORD, "198.51.100.7")
    assert wrongs == [(400, "invalid_credentials", None)] * 10
    assert right == (429, "rate_limited", 512)
    assert still == (429, "rate_limited", 1)
    assert after == (200, "", None)
    assert len(outbox) == 1  # the code after the password, once unlocked


def test_an_unknown_username_is_answered_exactly_like_a_known_one(user, device, outbox):
    """Same answers, same retry_after, same lock: no oracle for who has an account."""

    def attack(username: str) -> list[tuple[int, str, int | None]]:
        with frozen(START) as clock:
            answers = [api_login(username, f"guess {n}", ip(n)) for n in range(12)]
            clock.advance(512)
            answers += [api_login(username, "again", ip(99)), api_login(username, "x", ip(98))]
        return answers

    known, unknown = attack("alice"), attack("nobody-at-all")
    assert known == unknown
    assert known[10:] == [
        (429, "rate_limited", 512),
        (429, "rate_limited", 512),
        (400, "invalid_credentials", None),
        (429, "rate_limited", 1024),
    ]
    print(f"\npassword guessing, known vs unknown username: {known[9:]} == {unknown[9:]}")


def test_the_lock_grows_to_an_hour(user):
    delays = []
    with frozen(START) as clock:
        for n in range(10):
            api_login("alice", f"guess {n}", ip(n))
        for n in range(5):
            status, _code, retry = api_login("alice", "again", ip(50 + n))
            assert status == 429
            delays.append(retry)
            clock.advance(retry)
            assert api_login("alice", f"more {n}", ip(60 + n))[0] == 400
    assert delays == [512, 1024, 2048, 3600, 3600]


def test_case_and_unicode_spellings_of_a_username_share_one_count(user):
    spellings = ["alice", "ALICE", "Alice", "\uff41lice", "alicE"]  # \uff41: full-width a
    with frozen(START):
        answers = [api_login(spellings[n % 5], "wrong", ip(n)) for n in range(11)]
    assert [status for status, _c, _r in answers] == [400] * 10 + [429]


def test_a_right_password_resets_the_username_count(user, device, outbox):
    with frozen(START):
        for n in range(9):
            assert api_login("alice", f"guess {n}", ip(n))[0] == 400
        assert api_login("alice", PASSWORD, ip(20))[0] == 200
        answers = [api_login("alice", f"again {n}", ip(n)) for n in range(10)]
    assert [status for status, _c, _r in answers] == [400] * 10


# ------------------------------------------------------------------- per IP


def test_one_ip_spraying_many_usernames_is_locked(sms2fa_settings, user, device, outbox):
    sms2fa_settings(PASSWORD_LOCKOUT={"IP_THRESHOLD": 20})
    with frozen(START):
        sprayed = [api_login(f"user{n}", "Summer2030!", "203.0.113.66") for n in range(21)]
        owner_elsewhere = api_login("alice", PASSWORD, "198.51.100.7")
        owner_same_ip = api_login("alice", PASSWORD, "203.0.113.66")
    assert sprayed[:20] == [(400, "invalid_credentials", None)] * 20
    assert sprayed[20] == (429, "rate_limited", 512)  # the 20th wrong one locked the IP
    assert owner_elsewhere[0] == 200
    assert owner_same_ip[:2] == (429, "rate_limited")


def test_a_right_password_does_not_clear_the_ip_count(sms2fa_settings, django_user_model, user):
    """An attacker with an account of their own cannot reset their IP's count."""
    sms2fa_settings(PASSWORD_LOCKOUT={"IP_THRESHOLD": 5})
    django_user_model.objects.create_user(username="mallory", password="mallory-pw")
    attacker = "203.0.113.66"
    with frozen(START):
        answers = []
        for n in range(6):
            answers.append(api_login(f"victim{n}", "guess", attacker)[0])
            answers.append(api_login("mallory", "mallory-pw", attacker)[0])
    assert answers[:9] == [400, 200] * 4 + [400]
    assert set(answers[9:]) == {429}


def test_requests_without_an_address_share_one_ip_count(sms2fa_settings, user):
    sms2fa_settings(PASSWORD_LOCKOUT={"IP_THRESHOLD": 5})
    with frozen(START):
        answers = [api_login(f"user{n}", "guess", "")[0] for n in range(6)]
    assert answers == [400] * 5 + [429]


# -------------------------------------------------------------- the page


def test_the_login_page_counts_and_locks_alike(user, device, outbox):
    with frozen(START):
        wrongs = [page_login("alice", f"guess {n}", ip(n)) for n in range(10)]
        right = page_login("alice", PASSWORD, "198.51.100.7")
        api = api_login("alice", PASSWORD, "198.51.100.8")
    assert wrongs == [(200, None)] * 10  # the form again, with its error
    assert right == (429, "512")
    assert api == (429, "rate_limited", 512)  # one count for both edges
    assert outbox == []


def test_the_locked_page_says_how_long(user):
    with frozen(START):
        for n in range(10):
            page_login("alice", "nope", ip(n))
        response = Client(REMOTE_ADDR=ip(1)).post(PAGE, {"username": "alice", "password": "x"})
    assert response.status_code == 429
    assert "512 seconds" in response.content.decode()


# ------------------------------------------------------- atomic under a burst


def test_a_burst_of_concurrent_guesses_is_judged_at_most_threshold_times():
    """50 guesses at once for one username: each is counted before it is judged,
    so no more than the threshold are judged before the lock."""
    judged, refused = [], []
    barrier = threading.Barrier(50)

    def guess(n: int) -> None:
        barrier.wait()
        try:
            with ratelimit.password_guess("alice", f"192.0.2.{n}") as attempt:
                judged.append(n)
                time.sleep(0.01)  # the password check
                attempt.right = False
        except RateLimited:
            refused.append(n)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"\n50 concurrent password guesses for one username: {len(judged)} judged")
    assert len(judged) <= 10
    assert len(judged) + len(refused) == 50


# ------------------------------------------------------------------ setting


@pytest.mark.parametrize(
    "value",
    [
        {"USERNAME_THRESHOLD": 1},
        {"IP_THRESHOLD": 0},
        {"MEMORY": 10**12},
        {"USERNAME_THRESHOLD": "10"},
        {"TYPO": 1},
        [],
    ],
    ids=repr,
)
def test_bad_password_lockout_settings_are_e010(value, sms2fa_settings):
    from django_sms2fa.conf import app_settings

    sms2fa_settings(PASSWORD_LOCKOUT=value)
    with pytest.raises(Sms2faConfigurationError) as refused:
        app_settings.PASSWORD_LOCKOUT  # noqa: B018
    assert refused.value.check_id == "sms2fa.E010"
    assert "sms2fa.E010" in {m.id for m in checks.run_checks(tags=["sms2fa"])}
