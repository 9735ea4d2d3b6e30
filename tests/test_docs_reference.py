"""The facts the generated reference pages are built from hold in the code.

docs/reference/settings.md is generated from ``conf.SETTINGS_DOC`` (type,
default, check id) and the properties' docstrings; docs/architecture.md claims
an import direction; the front page promises install, providers and settings
one click away. Each is checked here against the code itself.
"""

from __future__ import annotations

import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest

from django.test import override_settings

from django_sms2fa import conf
from django_sms2fa.exceptions import Sms2faConfigurationError

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_sms2fa"
DOCS = ROOT / "docs"

# Values no setting accepts, tried in order until one is refused with a
# configuration error (some settings iterate what they get, so a bare object
# fails in another way first).
BAD_VALUES = (object(), -1, "?", [object()])


def test_settings_doc_covers_every_setting_exactly():
    assert set(conf.SETTINGS_DOC) == set(conf.KNOWN_KEYS)


@pytest.mark.parametrize("key", sorted(conf.KNOWN_KEYS))
def test_each_setting_has_a_docstring(key):
    assert (getattr(conf.Sms2faSettings, key).__doc__ or "").strip(), key


@pytest.mark.parametrize("key", sorted(conf.KNOWN_KEYS))
def test_the_documented_default_is_the_default(key):
    _kind, default, _check = conf.SETTINGS_DOC[key]
    expected = eval(default, vars(conf))  # an expression over conf's own names
    with override_settings(SMS2FA={}, PHONENUMBER_DEFAULT_REGION=None):
        actual = getattr(conf.app_settings, key)
    if isinstance(actual, frozenset):
        expected = frozenset(expected)
    if isinstance(expected, timedelta):
        expected = int(expected.total_seconds())
    assert actual == expected, f"{key}: documented {default}, is {actual!r}"


@pytest.mark.parametrize("key", sorted(conf.KNOWN_KEYS))
def test_the_documented_check_is_the_one_a_bad_value_gets(key):
    _kind, _default, check_id = conf.SETTINGS_DOC[key]
    for bad in BAD_VALUES:
        with override_settings(SMS2FA={key: bad}):
            try:
                getattr(conf.app_settings, key)
            except Sms2faConfigurationError as err:
                assert err.check_id == check_id, f"{key}: documented {check_id}"
                return
            except Exception:  # refused some other way: try the next value
                continue
    pytest.fail(f"no bad value for {key} was refused with a configuration error")


def test_every_documented_check_id_is_in_the_checks_table():
    from django_sms2fa import checks

    table = set(re.findall(r"^([EW]\d{3}) ", checks.__doc__ or "", flags=re.MULTILINE))
    documented = {check_id.removeprefix("sms2fa.") for *_, check_id in conf.SETTINGS_DOC.values()}
    assert documented <= table, sorted(documented - table)


def test_every_check_id_the_app_raises_is_in_the_checks_table():
    from django_sms2fa import checks

    table = set(re.findall(r"^([EW]\d{3}) ", checks.__doc__ or "", flags=re.MULTILINE))
    raised = set()
    for path in PACKAGE.rglob("*.py"):
        if "migrations" not in path.parts:
            raised |= set(re.findall(r"""["']sms2fa\.([EW]\d{3})["']""", path.read_text()))
    assert raised <= table, sorted(raised - table)


# ----------------------------------------------------- import direction


def imported_modules(path: Path, module: str = "") -> set[str]:
    """The app's modules ``path`` imports (anywhere in it), as dotted names
    relative to the package (``flows``, ``api.views``). ``module``: the
    file's own dotted name in the package, when it is not under it."""
    module = module or ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    here = module.split(".")[:-1]
    if path.name == "__init__.py":
        here = module.split(".")[:-1] if module.endswith("__init__") else module.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                names = [module] + [f"{module}.{alias.name}".strip(".") for alias in node.names]
            elif node.module and node.module.startswith("django_sms2fa"):
                module = node.module.removeprefix("django_sms2fa").strip(".")
                names = [module] + [f"{module}.{alias.name}".strip(".") for alias in node.names]
            else:
                continue
            found.update(name.strip(".") for name in names if name.strip("."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("django_sms2fa."):
                    found.add(alias.name.removeprefix("django_sms2fa."))
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def modules_under(*names: str) -> list[Path]:
    paths = []
    for name in names:
        target = PACKAGE / name
        paths.extend(
            sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        )
    return paths


# tasks.py is not among them: the flows hand a send to its task, whose worker
# calls back into the flows (SEND_VIA_TASKS).
EDGES = {"api", "views", "admin", "middleware", "backends", "management", "contrib", "urls"}
FLOWS = ("flows", "login_flows", "device_flows", "methods", "foreign", "delivery")


def test_types_and_exceptions_import_nothing_of_the_app():
    for path in modules_under("types", "exceptions"):
        assert imported_modules(path) <= {"exceptions"}, path.name


def test_providers_import_no_models_flows_or_edges():
    forbidden = {"models", *FLOWS, *EDGES}
    for path in modules_under("providers"):
        bad = {top(name) for name in imported_modules(path)} & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_flows_import_no_edge():
    for path in modules_under(*FLOWS):
        bad = {top(name) for name in imported_modules(path)} & EDGES
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_import_reader_sees_a_forbidden_import(tmp_path):
    # The rules above can fail: a provider importing models, or a flow an
    # edge, however it is spelled, is noticed.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ..models import Challenge\n"
        "def f():\n"
        "    from django_sms2fa.api import views\n"
        "    import django_sms2fa.admin.stats\n"
    )
    found = {top(name) for name in imported_modules(probe, "providers.probe")}
    assert found == {"models", "api", "admin"}


# ----------------------------------------------------------- the pages


def test_the_front_page_links_install_providers_and_settings_first():
    front = (DOCS / "index.md").read_text()
    first_links = re.findall(r"\]\(([^)]+)\)", front)[:3]
    assert first_links == ["install.md", "howto/providers.md", "reference/settings.md"]


def test_the_python_reference_documents_no_private_name():
    page = (DOCS / "reference" / "python.md").read_text()
    names = re.findall(r"^\.\. auto\w+:: ([\w.]+)", page, flags=re.MULTILINE)
    assert names
    assert not [name for name in names if any(p.startswith("_") for p in name.split("."))]
