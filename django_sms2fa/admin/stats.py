"""The admin's statistics page: the figures of :mod:`django_sms2fa.stats` as charts and tables.

Charts are inline SVG drawn on the server: no JavaScript, no CDN, nothing
fetched from anywhere, so the page works offline and under a strict Content
Security Policy (colours are SVG presentation attributes, not inline styles).
Every chart carries a ``<title>``/``<desc>`` for screen readers and a plain
table of the same numbers beside it.

``ChallengeAdmin`` serves it at ``…/challenge/stats/`` through
``admin_site.admin_view`` (login, staff); this view adds the check for the
view permission on challenges.

A prefix as long as a whole phone number would name one person's number: such
prefixes are shown masked, like every number in the admin (this page sums up
many numbers, so it never shows one in full, whatever the viewer's permissions).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import phonenumbers

import django
from django import forms
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import stats
from ..phones import mask_phone

# Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999", "#F0E442")
RATE_COLOUR = "#009E73"
FAILURE_COLOUR = "#D55E00"
VOLUME_COLOUR = "#0072B2"

WIDTH = 760
DAY_CHART_HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 28, 24
ROW = 20  # height of one horizontal bar row
LABEL_WIDTH = 150  # room for the row labels of horizontal bar charts
VALUE_WIDTH = 150  # room for the value text after a horizontal bar


class _RangeFormBase(forms.Form):
    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        end: date | None = data.get("to")
        start: date | None = data.get("from")
        try:
            if start is None and end is None:
                data["range"] = stats.last_days()
            else:
                end = end or stats.last_days(1).end
                start = start or stats.last_days(stats.DEFAULT_RANGE_DAYS, today=end).start
                data["range"] = stats.make_range(start, end)
        except stats.InvalidRange as err:
            raise forms.ValidationError(str(err), code=err.code) from None
        return data


def _date_field(label: Any) -> forms.DateField:
    return forms.DateField(
        label=label,
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )


# "from" is a Python keyword, so the fields cannot be declared in a class body;
# the query string keeps the plain names (?from=2025-01-01&to=2025-01-31).
StatsRangeForm = type(
    "StatsRangeForm",
    (_RangeFormBase,),
    {"from": _date_field(_("From")), "to": _date_field(_("To")), "__module__": __name__},
)


@dataclass(frozen=True)
class Bar:
    x: str
    y: str
    width: str
    height: str
    fill: str
    title: str


@dataclass(frozen=True)
class Label:
    x: str
    y: str
    text: str
    anchor: str = "start"


@dataclass(frozen=True)
class Rule:
    x1: str
    y1: str
    x2: str
    y2: str


@dataclass
class Chart:
    """One SVG chart; coordinates are preformatted strings (no localized floats)."""

    id: str
    title: str
    desc: str
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)

    def shapes(self) -> SafeString:
        """The chart's rules, bars and labels as SVG, escaped. Built here rather
        than by template loops: a 90-day chart has hundreds of shapes, and the
        template engine took a third of the page's time to render them."""
        rules = format_html_join(
            "",
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-opacity="0.25"/>',
            ((r.x1, r.y1, r.x2, r.y2) for r in self.rules),
        )
        bars = format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
            ((b.x, b.y, b.width, b.height, b.fill, b.title) for b in self.bars),
        )
        labels = format_html_join(
            "",
            '<text x="{}" y="{}" text-anchor="{}" fill="currentColor">{}</text>',
            ((label.x, label.y, label.anchor, label.text) for label in self.labels),
        )
        return format_html("{}{}{}", rules, bars, labels)


@dataclass
class Figure:
    chart: Chart | None  # None: nothing to draw in this range
    table: stats.Table
    headers: list[str]
    rows: list[list[str]]
    long: bool  # the per-day tables fold away under the chart

    def body(self) -> SafeString:
        """The table's rows, escaped, each led by its row header (built here,
        not by template loops, for the same reason as :meth:`Chart.shapes`)."""
        return format_html_join(
            "\n",
            "<tr>{}</tr>",
            (
                (
                    format_html(
                        '<th scope="row">{}</th>{}',
                        row[0],
                        format_html_join("", "<td>{}</td>", ((cell,) for cell in row[1:])),
                    ),
                )
                for row in self.rows
            ),
        )


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


#: At most this many steps between the gridlines of a count axis.
MAX_COUNT_STEPS = 4


def _count_axis(peak: int) -> tuple[int, list[int]]:
    """A count axis up to ``peak``: its top and its ticks, all whole numbers.

    The step is the smallest of 1, 2, 5 × 10ⁿ that reaches ``peak`` in at
    most :data:`MAX_COUNT_STEPS` steps, so a count never reads "2.5":
    3 → 0, 1, 2, 3; 5 → 0, 2, 4, 6; 37 → 0, 10, 20, 30, 40.
    """
    peak = max(int(peak), 1)
    magnitude = 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            steps = -(-peak // step)  # ceiling division
            if steps <= MAX_COUNT_STEPS:
                return step * steps, [step * i for i in range(steps + 1)]
        magnitude *= 10


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def _day_chart(
    chart_id: str,
    title: str,
    desc: str,
    days: list[date],
    series: list[tuple[str, str, list[float | None]]],
    *,
    maximum: float,
    axis: list[tuple[float, str]],
    titles: list[list[str]],
) -> Chart:
    """Vertical bars, one band per day; several series stack."""
    chart = Chart(chart_id, title, desc, WIDTH, DAY_CHART_HEIGHT)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = DAY_CHART_HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    for value, text in axis:
        y = base - plot_h * value / maximum
        chart.rules.append(Rule(_n(LEFT), _n(y), _n(WIDTH - RIGHT), _n(y)))
        chart.labels.append(Label(_n(LEFT - 4), _n(y + 4), text, "end"))
    band = plot_w / max(len(days), 1)
    bar_w = max(band * 0.8, 0.5)
    for i in range(len(days)):
        x = LEFT + i * band + (band - bar_w) / 2
        bottom = base
        for s, (_name, colour, values) in enumerate(series):
            value = values[i]
            if not value:
                continue
            height = plot_h * value / maximum
            bottom -= height
            chart.bars.append(Bar(_n(x), _n(bottom), _n(bar_w), _n(height), colour, titles[i][s]))
    marks = {0: "start", len(days) - 1: "end"}
    if len(days) > 2:
        marks[len(days) // 2] = "middle"
    for i, anchor in marks.items():
        x = (
            LEFT + i * band + band / 2
            if anchor == "middle"
            else (LEFT if anchor == "start" else WIDTH - RIGHT)
        )
        chart.labels.append(Label(_n(x), _n(DAY_CHART_HEIGHT - 6), days[i].isoformat(), anchor))
    # Legend along the top.
    x = LEFT
    for name, colour, _values in series:
        chart.bars.append(Bar(_n(x), "8", "10", "10", colour, name))
        chart.labels.append(Label(_n(x + 14), "17", name))
        x += 22 + 7 * len(name)
    return chart


def _hbar_chart(
    chart_id: str,
    title: str,
    desc: str,
    rows: list[tuple[str, float, str, str]],
    *,
    maximum: float,
    colour: str,
) -> Chart:
    """Horizontal bars: ``(label, value, value text, tooltip)`` per row."""
    height = TOP + ROW * len(rows) + 8
    chart = Chart(chart_id, title, desc, WIDTH, height)
    plot_w = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    chart.rules.append(Rule(_n(LABEL_WIDTH), "4", _n(LABEL_WIDTH), _n(height - 4)))
    for i, (label, value, text, tip) in enumerate(rows):
        y = TOP + i * ROW
        width = plot_w * value / maximum if maximum else 0
        chart.labels.append(Label(_n(LABEL_WIDTH - 6), _n(y + 14), label[:24], "end"))
        if width > 0:
            chart.bars.append(
                Bar(_n(LABEL_WIDTH), _n(y + 3), _n(max(width, 1)), _n(ROW - 6), colour, tip)
            )
        chart.labels.append(Label(_n(LABEL_WIDTH + width + 6), _n(y + 14), text))
    return chart


def _sends_chart(sends: stats.SendsPerDay) -> Chart | None:
    if not sends.grand_total:
        return None
    peak = max(sends.total(day) for day in sends.days)
    top, ticks = _count_axis(peak)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sends.providers)}
    series = [
        (name, colours[name], [float(sends.counts[day][name]) for day in sends.days])
        for name in sends.providers
    ]
    titles = [
        [
            gettext("%(day)s %(provider)s: %(count)s SMS")
            % {"day": day.isoformat(), "provider": name, "count": sends.counts[day][name]}
            for name in sends.providers
        ]
        for day in sends.days
    ]
    return _day_chart(
        "sms2fa-sends",
        str(_("SMS sent per day by provider")),
        gettext("%(count)s SMS in %(days)s days; the busiest day had %(peak)s.")
        % {"count": sends.grand_total, "days": len(sends.days), "peak": peak},
        sends.days,
        series,
        maximum=top,
        axis=[(tick, str(tick)) for tick in ticks],
        titles=titles,
    )


def _rate_by_day_chart(rates: list[stats.Rate], days: list[date]) -> Chart | None:
    if not any(rate.sent for rate in rates):
        return None
    values: list[float | None] = [None if r.rate is None else 100 * r.rate for r in rates]
    titles = [
        [
            gettext("%(day)s: %(rate)s (%(verified)s of %(sent)s)")
            % {"day": r.key, "rate": _percent(r.rate), "verified": r.verified, "sent": r.sent}
        ]
        for r in rates
    ]
    sent = sum(r.sent for r in rates)
    verified = sum(r.verified for r in rates)
    return _day_chart(
        "sms2fa-rate-day",
        str(_("Verification rate by day")),
        ngettext(
            "%(verified)s of %(sent)s challenge verified (%(rate)s).",
            "%(verified)s of %(sent)s challenges verified (%(rate)s).",
            sent,
        )
        % {"verified": verified, "sent": sent, "rate": _percent(verified / sent)},
        days,
        [(str(_("verified ÷ sent")), RATE_COLOUR, values)],
        maximum=100,
        axis=[(0, "0%"), (50, "50%"), (100, "100%")],
        titles=titles,
    )


def _country_chart(rates: list[stats.Rate]) -> Chart | None:
    if not rates:
        return None
    rows = [
        (
            r.key,
            100 * (r.rate or 0),
            gettext("%(rate)s of %(sent)s") % {"rate": _percent(r.rate), "sent": r.sent},
            gettext("%(region)s: %(verified)s of %(sent)s verified")
            % {"region": r.key, "verified": r.verified, "sent": r.sent},
        )
        for r in rates
    ]
    return _hbar_chart(
        "sms2fa-rate-country",
        str(_("Verification rate by country")),
        ngettext(
            "%(count)s country, most sends first.",
            "%(count)s countries, most sends first.",
            len(rates),
        )
        % {"count": len(rates)},
        rows,
        maximum=100,
        colour=RATE_COLOUR,
    )


def _failure_chart(failures: list[stats.Failure]) -> Chart | None:
    if not failures:
        return None
    rows = [
        (
            f"{f.provider} · {f.error_code or gettext('(none)')}",
            float(f.count),
            str(f.count),
            ngettext(
                "%(provider)s %(code)s: %(count)s failure",
                "%(provider)s %(code)s: %(count)s failures",
                f.count,
            )
            % {"provider": f.provider, "code": f.error_code or gettext("(none)"), "count": f.count},
        )
        for f in failures
    ]
    return _hbar_chart(
        "sms2fa-failures",
        str(_("Failures by error code")),
        ngettext(
            "%(count)s failure, most frequent error first.",
            "%(count)s failures, most frequent error first.",
            sum(f.count for f in failures),
        )
        % {"count": sum(f.count for f in failures)},
        rows,
        maximum=max(f.count for f in failures),
        colour=FAILURE_COLOUR,
    )


def _prefix_chart(prefixes: list[stats.PrefixVolume]) -> Chart | None:
    if not prefixes:
        return None
    rows = [
        (
            p.prefix,
            float(p.sms),
            gettext("%(sms)s SMS, %(verified)s verified") % {"sms": p.sms, "verified": p.verified},
            gettext("%(prefix)s: %(sms)s SMS, %(verified)s verified")
            % {"prefix": p.prefix, "sms": p.sms, "verified": p.verified},
        )
        for p in prefixes
    ]
    return _hbar_chart(
        "sms2fa-prefixes",
        str(_("Top number prefixes by volume")),
        gettext("Prefixes with the most SMS; many SMS and few verifications suggest SMS pumping."),
        rows,
        maximum=max(p.sms for p in prefixes),
        colour=VOLUME_COLOUR,
    )


# Column headers of the HTML tables (stats.Table headers are fixed keys;
# provider aliases, the other headers, are shown as they are).
HEADERS = {
    "day": _("day"),
    "total": _("total"),
    "sent": _("sent"),
    "verified": _("verified"),
    "rate": _("rate"),
    "country": _("country"),
    "provider": _("provider"),
    "error code": _("error code"),
    "failures": _("failures"),
    "prefix": _("prefix"),
    "SMS": _("SMS"),
}


def _cells(table: stats.Table) -> list[list[str]]:
    return [
        [
            _percent(value) if header == "rate" else str(value)
            for header, value in zip(table.headers, row, strict=True)
        ]
        for row in table.rows
    ]


def shown_prefix(prefix: str) -> str:
    """``prefix`` as the page shows it: masked if it could be a whole number.

    With the default ``PUMPING["PREFIX_DIGITS"]`` (6) a prefix is shorter than
    any number of any country; a site may set up to 15 digits, and then a
    prefix is one number.
    """
    try:
        parsed = phonenumbers.parse(prefix, None)
    except phonenumbers.NumberParseException:
        return mask_phone(prefix) if len(prefix.lstrip("+")) >= 8 else prefix
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason == phonenumbers.ValidationResult.TOO_SHORT:
        return prefix
    if reason == phonenumbers.ValidationResult.INVALID_COUNTRY_CODE:
        return mask_phone(prefix) if len(prefix.lstrip("+")) >= 8 else prefix
    return mask_phone(prefix)


def figures(result: stats.Report) -> list[Figure]:
    """Each figure of ``result`` as a chart (or ``None``) and its table."""
    result = replace(
        result, prefixes=[replace(p, prefix=shown_prefix(p.prefix)) for p in result.prefixes]
    )
    charts = [
        _sends_chart(result.sends),
        _rate_by_day_chart(result.rate_by_day, result.range.days),
        _country_chart(result.rate_by_country),
        _failure_chart(result.failures),
        _prefix_chart(result.prefixes),
    ]
    return [
        Figure(
            chart,
            table,
            [str(HEADERS.get(header, header)) for header in table.headers],
            _cells(table),
            long=table.name in ("sends_per_day", "verification_by_day"),
        )
        for chart, table in zip(charts, stats.tables(result), strict=True)
    ]


#: The page's template; a ModelAdmin may name another in ``stats_template``.
STATS_TEMPLATE = "django_sms2fa/admin/stats.html"


def stats_view(request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
    """The statistics page (GET ``from``/``to``, default the last 30 days).

    :raises PermissionDenied: the user may not view challenges (403).
    """
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    # {% url 'admin:…' %} in the template must resolve on this admin site
    # (the example site serves the models on an OTPAdminSite).
    request.current_app = model_admin.admin_site.name
    data: Any = request.GET
    if "from" not in data and "to" not in data:
        default = stats.last_days()
        data = {"from": default.start.isoformat(), "to": default.end.isoformat()}
    form = StatsRangeForm(data)
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": _("SMS statistics"),
        "opts": model_admin.model._meta,
        "form": form,
        "figures": [],
        # Django 6's admin styles breadcrumbs as a list (<ol>), 5.2's as a <div>.
        "breadcrumbs_as_list": django.VERSION >= (6, 0),
    }
    if form.is_valid():
        result = stats.report(form.cleaned_data["range"])
        context.update(range=result.range, totals=stats.totals(result), figures=figures(result))
        context["totals_rate"] = _percent(context["totals"].rate)
        # Closed days the roll-up has not reached: counted from the raw rows
        # (right, unless a purge deleted them first), and said so.
        context["unrolled_days"] = len(result.unrolled_days)
        context["prefix_unrolled_days"] = len(result.prefix_unrolled_days)
    template = getattr(model_admin, "stats_template", None) or STATS_TEMPLATE
    return TemplateResponse(request, template, context)
