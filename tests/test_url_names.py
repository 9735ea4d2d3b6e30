"""URL names in one style: lower case and underscores, in every namespace.

The pages (``sms2fa:``), the API (``sms2fa_api:``) and the delivery webhooks
(``sms2fa_webhooks:``) name their URLs ``login_code``, ``challenge_verify``,
``delivery_report``. The API's hyphenated names of the previous release
(``challenge-verify``) stay for one release as deprecated aliases, listed in
``api.urls.DEPRECATED_NAMES``: the same route and view, so they reverse to the
same path. The old webhook URL module, ``django_sms2fa.webhooks.urls``, still
routes, and warns.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from pathlib import Path

import pytest

from django.test import Client, override_settings
from django.urls import URLPattern, include, path, resolve, reverse

from django_sms2fa import urls as page_urls
from django_sms2fa.api import urls as api_urls
from django_sms2fa.delivery import urls as delivery_urls
from django_sms2fa.delivery import webhooks

NAME = re.compile(r"^[a-z_]+$")
REPO = Path(__file__).resolve().parent.parent

NAMESPACES = {
    "sms2fa": page_urls,
    "sms2fa_api": api_urls,
    "sms2fa_webhooks": delivery_urls,
}


def patterns(module: types.ModuleType) -> list[URLPattern]:
    found = list(module.urlpatterns)
    assert all(isinstance(p, URLPattern) for p in found), "a nested include: walk it here too"
    return found


def sample_kwargs(pattern: URLPattern) -> dict[str, object]:
    """A value for every parameter of ``pattern``'s route."""
    samples = {"int": 7, "str": "abc", "uuid": "00000000-0000-0000-0000-000000000000"}
    converters = re.findall(r"<(?:(\w+):)?(\w+)>", str(pattern.pattern))
    return {name: samples[kind or "str"] for kind, name in converters}


# ------------------------------------------------------------------ the style


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
def test_every_url_name_is_lower_case_with_underscores(namespace):
    module = NAMESPACES[namespace]
    assert module.app_name == namespace
    deprecated = set(getattr(module, "DEPRECATED_NAMES", {}))
    names = [p.name for p in patterns(module)]
    assert all(names), f"{namespace}: an unnamed URL pattern"
    bad = [name for name in names if not NAME.match(name) and name not in deprecated]
    assert bad == [], f"{namespace}: names not in ^[a-z_]+$: {bad}"
    # Every listed alias is routed, and only the aliases break the style.
    assert deprecated <= set(names)
    assert {name for name in names if not NAME.match(name)} == deprecated


def test_names_are_unique_in_each_namespace():
    for namespace, module in NAMESPACES.items():
        names = [p.name for p in patterns(module)]
        assert len(names) == len(set(names)), namespace


def test_the_deprecated_api_names_are_the_old_hyphenated_ones():
    assert api_urls.DEPRECATED_NAMES == {
        "challenge-resend": "challenge_resend",
        "challenge-verify": "challenge_verify",
        "login-verify": "login_verify",
        "device-confirm": "device_confirm",
    }
    for old, new in api_urls.DEPRECATED_NAMES.items():
        assert old.replace("-", "_") == new
        assert NAME.match(new)


# ----------------------------------------------------------- the API's aliases


def test_each_alias_follows_its_new_name_with_the_same_route_and_view():
    by_name = {p.name: (i, p) for i, p in enumerate(patterns(api_urls))}
    for old, new in api_urls.DEPRECATED_NAMES.items():
        new_index, new_pattern = by_name[new]
        old_index, old_pattern = by_name[old]
        assert old_index == new_index + 1, f"{old} must come right after {new}"
        assert str(old_pattern.pattern) == str(new_pattern.pattern)
        assert old_pattern.callback is new_pattern.callback


@pytest.mark.parametrize("old", sorted(api_urls.DEPRECATED_NAMES))
def test_each_alias_reverses_to_the_path_of_its_new_name(old):
    new = api_urls.DEPRECATED_NAMES[old]
    pattern = next(p for p in api_urls.urlpatterns if p.name == new)
    kwargs = sample_kwargs(pattern)
    new_path = reverse(f"sms2fa_api:{new}", kwargs=kwargs)
    assert new_path.startswith("/api/2fa/")
    assert reverse(f"sms2fa_api:{old}", kwargs=kwargs) == new_path
    # A request to that path is the new name's (the first pattern wins).
    match = resolve(new_path)
    assert (match.namespace, match.url_name) == ("sms2fa_api", new)


def test_no_code_or_test_reverses_an_old_api_name():
    """The aliases are for other people's code: ours uses the new names."""
    old_names = "|".join(re.escape(old) for old in api_urls.DEPRECATED_NAMES)
    uses = re.compile(rf"sms2fa_api:(?:{old_names})\b(?!_)")
    allowed = {Path(api_urls.__file__).resolve(), Path(__file__).resolve()}
    found = []
    for folder in ("django_sms2fa", "tests", "example_project", "bench", "scripts"):
        for file in (REPO / folder).rglob("*"):
            if file.suffix not in {".py", ".html", ".txt", ".js", ".sh"} or file in allowed:
                continue
            text = file.read_text(encoding="utf-8", errors="replace")
            found += [f"{file.relative_to(REPO)}: {m.group(0)}" for m in uses.finditer(text)]
    assert found == []


# ------------------------------------------------------ the old webhook modules


def fresh_import(name: str, monkeypatch) -> types.ModuleType:
    """Import ``name`` anew (its warning is raised on the first import only);
    the module table is restored after the test."""
    monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module(name)


def test_the_old_webhook_urls_module_warns_and_routes_to_the_same_view(monkeypatch):
    with pytest.warns(DeprecationWarning) as caught:
        old = fresh_import("django_sms2fa.webhooks.urls", monkeypatch)
    assert [str(w.message) for w in caught] == [
        "django_sms2fa.webhooks.urls is deprecated; include django_sms2fa.delivery.urls"
    ]
    assert old.app_name == "sms2fa_webhooks"
    assert old.urlpatterns == delivery_urls.urlpatterns
    # Mounted the old way, it resolves and reverses as it always did.
    urlconf = types.ModuleType("old_webhook_urlconf")
    urlconf.urlpatterns = [path("webhooks/sms2fa/", include(old))]
    url = reverse("sms2fa_webhooks:delivery_report", args=["ip1"], urlconf=urlconf)
    assert url == "/webhooks/sms2fa/ip1/"
    match = resolve(url, urlconf=urlconf)
    assert match.func is webhooks.delivery_report
    assert (match.namespace, match.url_name) == ("sms2fa_webhooks", "delivery_report")


@pytest.mark.django_db
def test_a_webhook_posted_through_the_old_include_reaches_the_view(monkeypatch):
    with pytest.warns(DeprecationWarning):
        old = fresh_import("django_sms2fa.webhooks.urls", monkeypatch)
    urlconf = types.ModuleType("old_webhook_site")
    urlconf.urlpatterns = [path("webhooks/sms2fa/", include(old))]
    with override_settings(ROOT_URLCONF=urlconf):
        answer = Client().post("/webhooks/sms2fa/no-such-alias/", b"{}", "application/json")
    # The view's own answer (its JSON error shape), not the URL resolver's 404 page.
    assert answer.status_code == 404
    assert answer.json() == {"error": {"code": "not_found", "message": "Not found."}}


def test_the_old_webhook_views_module_warns_and_reexports(monkeypatch):
    with pytest.warns(DeprecationWarning, match="django_sms2fa.delivery.webhooks"):
        old = fresh_import("django_sms2fa.webhooks.views", monkeypatch)
    assert old.delivery_report is webhooks.delivery_report
    assert old.MAX_BODY_BYTES == webhooks.MAX_BODY_BYTES
    assert (old.SECRET_PARAM, old.SECRET_HEADER) == (webhooks.SECRET_PARAM, webhooks.SECRET_HEADER)
    # What the old module had besides (its helpers) still resolves, to the new ones.
    assert old._secret_matches is webhooks._secret_matches
