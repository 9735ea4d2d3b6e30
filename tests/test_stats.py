"""Statistics: the figures (stats.py), the admin page (admin/stats.py) and
``manage.py sms2fa_stats``.

This module is also the URLconf of the admin page tests (``urlpatterns`` at
the bottom): a small admin site whose challenge admin serves the page the way
ChallengeAdmin does, so login, staff and permission checks run for real.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import date, datetime, time, timedelta
from urllib.parse import urlsplit

import pytest

from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone, translation

from django_sms2fa import flows, stats
from django_sms2fa.admin import stats as stats_page
from django_sms2fa.models import Challenge, ChallengeStatus, Message, Purpose

pytestmark = pytest.mark.django_db

DAY = date(2025, 3, 10)


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """A moment on ``day`` in the current (site) time zone."""
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def make(
    day: date,
    *,
    phone: str = "+46701234567",
    region: str = "SE",
    status: str = ChallengeStatus.PENDING,
    messages: tuple[tuple[str, str, str], ...] = (("default", "sent", ""),),
    hour: int = 12,
) -> Challenge:
    """A challenge created on ``day`` with ``(provider, status, error_code)`` messages."""
    created = at(day, hour)
    challenge = Challenge.objects.create(
        id=uuid.uuid4(),
        phone=phone,
        region=region,
        purpose=Purpose.LOGIN,
        status=status,
        max_attempts=5,
        sends=len(messages),
        created_at=created,
        expires_at=created + timedelta(minutes=5),
    )
    for provider, msg_status, error in messages:
        Message.objects.create(
            challenge=challenge,
            phone=phone,
            provider=provider,
            status=msg_status,
            error_code=error,
            created_at=created,
            sent_at=created
            if msg_status in ("sent", "delivered", "queued") and not error
            else None,
        )
    return challenge


@pytest.fixture
def data():
    """Three days of traffic around DAY, and rows outside the range."""
    verified = ChallengeStatus.VERIFIED
    make(DAY, status=verified)
    make(DAY, status=verified, messages=(("default", "sent", ""), ("backup", "delivered", "")))
    make(DAY, phone="+46709999999")  # sent, never verified
    make(DAY, messages=(("default", "failed", "E401"),), status=ChallengeStatus.UNDELIVERABLE)
    make(DAY, messages=(), status=verified)  # a test number: no SMS at all
    make(DAY + timedelta(days=2), phone="+4915112345678", region="DE", status=verified)
    make(
        DAY + timedelta(days=2),
        phone="+4915112345679",
        region="DE",
        messages=(("backup", "failed", "quota"), ("default", "sent", "")),
    )
    make(DAY - timedelta(days=1), status=verified)  # before the range
    make(DAY + timedelta(days=3), status=verified)  # after it
    # A test SMS without a challenge (sms2fa_send_test).
    Message.objects.create(
        phone="+46701111111", provider="default", status="sent", created_at=at(DAY), sent_at=at(DAY)
    )


RANGE = stats.DateRange(DAY, DAY + timedelta(days=2))


# ------------------------------------------------------------------ figures


def test_sends_per_day_by_provider_fills_empty_days(data):
    sends = stats.sends_per_day(RANGE)
    assert sends.providers == ["backup", "default"]
    assert sends.days == [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    # Failed SMS are not sends; the challenge-less test SMS is one.
    assert sends.counts[DAY] == {"backup": 1, "default": 4}
    assert sends.counts[DAY + timedelta(days=1)] == {"backup": 0, "default": 0}
    assert sends.counts[DAY + timedelta(days=2)] == {"backup": 0, "default": 2}
    assert sends.grand_total == 7


def test_verification_rate_counts_only_challenges_with_a_send(data):
    rates = stats.verification_by_day(RANGE)
    assert [(r.key, r.sent, r.verified) for r in rates] == [
        ("2025-03-10", 3, 2),  # the undeliverable and the SMS-less test number are left out
        ("2025-03-11", 0, 0),
        ("2025-03-12", 2, 1),
    ]
    assert rates[0].rate == pytest.approx(2 / 3)
    assert rates[1].rate is None


def test_verification_rate_by_country(data):
    rates = stats.verification_by_country(RANGE)
    assert [(r.key, r.sent, r.verified) for r in rates] == [("SE", 3, 2), ("DE", 2, 1)]


def test_failures_by_provider_and_error_code(data):
    Message.objects.create(
        phone="+46701234567", provider="default", status="failed", created_at=at(DAY)
    )
    failures = stats.failures_by_error(RANGE)
    assert [(f.provider, f.error_code, f.count) for f in failures] == [
        ("backup", "quota", 1),
        ("default", "", 1),
        ("default", "E401", 1),
    ]


def test_top_prefixes_use_the_pumping_prefix_length(data, sms2fa_settings):
    prefixes = stats.top_prefixes(RANGE)
    assert [(p.prefix, p.sms, p.verified) for p in prefixes] == [
        ("+467012", 3, 2),  # 3 SMS of 2 verified challenges (failed SMS are not volume)
        ("+491511", 2, 1),
        ("+467011", 1, 0),  # the test SMS without a challenge
        ("+467099", 1, 0),
    ]
    sms2fa_settings(PUMPING={"PREFIX_DIGITS": 2})
    assert [(p.prefix, p.sms) for p in stats.top_prefixes(RANGE)] == [("+46", 5), ("+49", 2)]
    assert [p.prefix for p in stats.top_prefixes(RANGE, limit=1)] == ["+46"]


def test_days_follow_the_site_time_zone(settings):
    settings.TIME_ZONE = "Europe/Stockholm"
    with timezone.override("Europe/Stockholm"):
        make(DAY, hour=0, status=ChallengeStatus.VERIFIED)  # 23:00 UTC the day before
        make(DAY, hour=23)  # 22:00 UTC
        rng = stats.DateRange(DAY, DAY)
        assert [(r.sent, r.verified) for r in stats.verification_by_day(rng)] == [(2, 1)]
        assert stats.sends_per_day(rng).counts[DAY] == {"default": 2}


def test_a_report_is_six_queries_whatever_the_rows(data, django_assert_num_queries):
    # Five over the raw rows, and one for the roll-ups of these closed days
    # (there are none, so every day is read from the raw rows).
    with django_assert_num_queries(6):
        result = stats.report(RANGE)
    assert stats.totals(result) == stats.Totals(sms=7, sent=5, verified=3, failures=2)
    for _ in range(20):
        make(DAY + timedelta(days=1), status=ChallengeStatus.VERIFIED)
    with django_assert_num_queries(6):
        stats.report(RANGE)


def test_an_empty_range_is_all_zeros():
    result = stats.report(RANGE)
    assert stats.totals(result) == stats.Totals(sms=0, sent=0, verified=0, failures=0)
    assert result.prefixes == result.failures == result.rate_by_country == []
    assert [r.sent for r in result.rate_by_day] == [0, 0, 0]
    assert [figure.chart for figure in stats_page.figures(result)] == [None] * 5


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2025, 2, 1), date(2025, 1, 1)),  # reversed
        (date(2024, 1, 1), date(2025, 1, 1)),  # 367 days
        (date(1, 1, 1), date(1, 1, 2)),  # would overflow in UTC
        (date(9999, 12, 30), date(9999, 12, 31)),
    ],
)
def test_bad_ranges_are_refused(start, end):
    with pytest.raises(stats.InvalidRange):
        stats.make_range(start, end)


def test_a_year_is_allowed():
    assert len(stats.make_range(date(2024, 1, 1), date(2024, 12, 31)).days) == 366
    assert stats.last_days(30, today=DAY).start == DAY - timedelta(days=29)


# ---------------------------------------------------------------- admin page


class StatsChallengeAdmin(admin.ModelAdmin):
    """Serves the page as ChallengeAdmin does (admin_view, then stats_view)."""

    def get_urls(self):
        view = self.admin_site.admin_view(lambda request: stats_page.stats_view(request, self))
        return [path("stats/", view, name="django_sms2fa_challenge_stats"), *super().get_urls()]


site = admin.AdminSite(name="statsadmin")
site.register(Challenge, StatsChallengeAdmin)
# The app's own admin (admin.site, where ChallengeAdmin links the page) beside it.
urlpatterns = [path("admin/", site.urls), path("site-admin/", admin.site.urls)]
STATS_URLS = pytest.mark.urls(__name__)


def staff(django_user_model, *perms: str, superuser: bool = False):
    user = django_user_model.objects.create_user(
        username=f"staff{uuid.uuid4().hex[:8]}",
        password="pw",
        is_staff=True,
        is_superuser=superuser,
    )
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def page(client, **query) -> str:
    url = reverse("admin:django_sms2fa_challenge_stats", current_app=site.name)
    response = client.get(url, query)
    assert response.status_code == 200
    return response.content.decode()


@STATS_URLS
def test_page_needs_the_view_permission(client, django_user_model):
    url = reverse("admin:django_sms2fa_challenge_stats", current_app=site.name)
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(staff(django_user_model))
    assert client.get(url).status_code == 403
    client.force_login(staff(django_user_model, "view_challenge"))
    assert client.get(url).status_code == 200
    client.force_login(staff(django_user_model, superuser=True))
    assert client.get(url).status_code == 200


@STATS_URLS
def test_the_challenge_admin_serves_and_links_the_page(client, django_user_model, data):
    try:
        url = reverse("admin:django_sms2fa_challenge_stats", current_app=admin.site.name)
    except NoReverseMatch:
        pytest.skip("django_sms2fa.admin does not serve the statistics page")
    assert url.startswith("/site-admin/")
    client.force_login(staff(django_user_model, "view_challenge"))
    changelist = client.get(reverse("admin:django_sms2fa_challenge_changelist"))
    assert f'href="{url}"' in changelist.content.decode()
    response = client.get(url, {"from": "2025-03-10", "to": "2025-03-12"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg role="img"') == 5
    assert 'href="/site-admin/django_sms2fa/challenge/"' in html  # breadcrumbs on this site
    client.force_login(staff(django_user_model))
    assert client.get(url).status_code == 403


def test_view_refuses_staff_without_permission_when_called_directly(django_user_model):
    request = RequestFactory().get("/stats/")
    request.user = staff(django_user_model)
    with pytest.raises(PermissionDenied):
        stats_page.stats_view(request, admin.ModelAdmin(Challenge, site))


@STATS_URLS
def test_page_shows_charts_and_tables_of_the_range(client, django_user_model, data):
    client.force_login(staff(django_user_model, "view_challenge"))
    html = page(client, **{"from": "2025-03-10", "to": "2025-03-12"})
    assert html.count('<svg role="img"') == 5
    main = html.split('id="content-main"')[1]
    assert main.count("<table") == 5  # one table per chart
    for chart_id in ("sends", "rate-day", "rate-country", "failures", "prefixes"):
        assert f'aria-labelledby="sms2fa-{chart_id}-title sms2fa-{chart_id}-desc"' in html
    # The table beside each chart carries the numbers.
    assert re.search(r"<th scope=\"row\">2025-03-10</th><td>1</td><td>4</td><td>5</td>", html)
    assert re.search(r"<th scope=\"row\">SE</th><td>3</td><td>2</td><td>66.7%</td>", html)
    assert re.search(r"<th scope=\"row\">backup</th><td>quota</td><td>1</td>", html)
    assert re.search(r"<th scope=\"row\">\+467012</th><td>3</td><td>2</td>", html)
    assert "7 SMS sent; 3 of 5 challenges verified (60.0%); 2 failed SMS." in html
    # Tooltips on the bars.
    assert "<title>2025-03-10 default: 4 SMS</title>" in html


@STATS_URLS
def test_default_range_is_the_last_30_days(client, django_user_model):
    today = timezone.localdate()
    make(today, status=ChallengeStatus.VERIFIED)
    make(today - timedelta(days=30))  # one day too old
    client.force_login(staff(django_user_model, "view_challenge"))
    html = page(client)
    assert f'value="{(today - timedelta(days=29)).isoformat()}"' in html
    assert f'value="{today.isoformat()}"' in html
    assert "1 SMS sent; 1 of 1 challenges verified (100.0%)" in html


@STATS_URLS
@pytest.mark.parametrize(
    "query",
    [
        {"from": "yesterday"},
        {"from": "2025-02-30"},
        {"from": "2025-02-01", "to": "2025-01-01"},
        {"from": "2024-01-01", "to": "2025-06-01"},
        {"from": "0001-01-01", "to": "0001-01-02"},
        {"to": "9999-12-31"},
        {"from": "9" * 5000},
    ],
)
def test_bad_dates_are_a_form_error_not_a_crash(client, django_user_model, query):
    client.force_login(staff(django_user_model, "view_challenge"))
    html = page(client, **query)
    assert 'class="errorlist' in html or 'class="errornote"' in html
    assert '<svg role="img"' not in html


@STATS_URLS
def test_page_loads_nothing_from_elsewhere(client, django_user_model, data):
    client.force_login(staff(django_user_model, superuser=True))
    html = page(client, **{"from": "2025-03-10", "to": "2025-03-12"})
    # An XML namespace is a name, never fetched (the admin's own icon sprite has one).
    html = re.sub(r'\sxmlns(?::\w+)?="[^"]*"', "", html)
    assert not re.search(r"(?i)\b(?:https?:|ftp:|data:)|url\(|@import", html)
    for attr in re.findall(r"""(?i)\b(?:src|href|action|xlink:href)\s*=\s*["']([^"']*)""", html):
        # Same site only: a path, a query or a fragment; no scheme, no host.
        assert not urlsplit(attr).scheme and not urlsplit(attr).netloc, attr
    for tag in re.findall(r"(?i)<script\b[^>]*>", html):
        assert re.search(r'src="[^"]+"', tag), tag  # only the admin's own static files


@STATS_URLS
def test_svg_numbers_are_not_localized(client, django_user_model, settings, data):
    settings.USE_THOUSAND_SEPARATOR = True
    created = at(DAY + timedelta(days=1))
    Message.objects.bulk_create(
        Message(phone="+46701234567", provider="default", created_at=created, sent_at=created)
        for _ in range(1200)
    )
    client.force_login(staff(django_user_model, "view_challenge"))
    with translation.override("de"):
        html = page(client, **{"from": "2025-03-10", "to": "2025-03-12"})
    # The charts only: the admin's own icons (Django 5.2's theme toggle) are
    # sized in rem.
    svg = "".join(re.findall(r'<svg role="img".*?</svg>', html, flags=re.S))
    coords = re.findall(r'\b(?:x|y|x1|y1|x2|y2|width|height)="([^"]*)"', svg)
    bad = [value for value in coords if not re.fullmatch(r"\d+(\.\d)?", value)]
    assert coords and not bad, bad


@STATS_URLS
def test_a_code_never_reaches_the_page(client, django_user_model, sms2fa_settings, outbox):
    sms2fa_settings(CODE_LENGTH=10)
    challenge = flows.request_challenge(phone="+46701234567", purpose=Purpose.LOGIN)
    flows.verify_challenge(challenge.pk, outbox[-1].code, purpose=Purpose.LOGIN)
    flows.request_challenge(phone="+46701234568", purpose=Purpose.LOGIN)
    client.force_login(staff(django_user_model, superuser=True))
    html = page(client)
    assert "2 SMS sent; 1 of 2 challenges verified (50.0%)" in html
    stored = Challenge.objects.values_list("code_hash", flat=True)
    for secret in [sms.code for sms in outbox] + list(stored):
        assert secret and secret not in html


# ------------------------------------------------------------------- command


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("sms2fa_stats", *args, stdout=out)
    return out.getvalue()


def test_command_prints_aligned_tables(data):
    text = run("--from", "2025-03-10", "--to", "2025-03-12")
    assert text.splitlines()[0] == (
        "2025-03-10 to 2025-03-12: 7 SMS sent, 3 of 5 challenges verified (60.0%), 2 failures"
    )
    for table in stats.tables(stats.report(RANGE)):
        assert table.title in text
    lines = text.splitlines()
    header = lines.index("SMS sent per day by provider") + 1
    assert lines[header].split() == ["day", "backup", "default", "total"]
    assert lines[header + 2].split() == ["2025-03-10", "1", "4", "5"]
    # Columns line up: every row of the table is as wide as its rule.
    width = len(lines[header + 1])
    assert {len(line) for line in lines[header : header + 5]} == {width}
    assert "  SE          3         2  66.7%" in text
    assert "  2025-03-11     0         0      -" in text


def test_command_csv_and_json(data):
    rows = list(
        csv.reader(
            io.StringIO(run("--from", "2025-03-10", "--to", "2025-03-12", "--format", "csv"))
        )
    )
    assert rows[0] == ["figure", "key", "column", "value"]
    assert ["sends_per_day", "2025-03-10", "default", "4"] in rows
    assert ["verification_by_day", "2025-03-11", "rate", ""] in rows
    assert ["verification_by_country", "DE", "verified", "1"] in rows
    payload = json.loads(run("--from", "2025-03-10", "--to", "2025-03-12", "--format", "json"))
    assert payload["from"] == "2025-03-10"
    assert payload["verification_by_country"][0] == {
        "country": "SE",
        "sent": 3,
        "verified": 2,
        "rate": pytest.approx(2 / 3),
    }
    assert payload["top_prefixes"][0] == {"prefix": "+467012", "SMS": 3, "verified": 2}


def test_command_days_and_defaults():
    today = timezone.localdate()
    make(today, status=ChallengeStatus.VERIFIED)
    assert run().startswith(f"{today - timedelta(days=29)} to {today}: 1 SMS sent")
    assert run("--days", "1").startswith(f"{today} to {today}: 1 SMS sent")
    assert run("--to", str(today - timedelta(days=1))).split(":")[0] == (
        f"{today - timedelta(days=30)} to {today - timedelta(days=1)}"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--days", "0"),
        ("--days", "400"),
        ("--from", "2025-13-01"),
        ("--from", "2025-02-01", "--to", "2025-01-01"),
        ("--days", "3", "--from", "2025-01-01"),
        ("--limit", "0"),
    ],
)
def test_command_refuses_bad_input(args):
    with pytest.raises(CommandError):
        run(*args)
