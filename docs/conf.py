"""Sphinx configuration of django-sms2fa's documentation.

Built in CI with ``python -m sphinx -W --keep-going -n -b html docs
docs/_build/html``: every warning (a broken reference, a missing page, an
unresolved cross-reference) fails the build. The reference pages are generated
from the code by ``_ext/sms2fa_reference.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE), str(HERE / "_ext")]

# autodoc and the generated pages import the app: set Django up first.
os.environ["DJANGO_SETTINGS_MODULE"] = "_settings"
import django  # noqa: E402

django.setup()

import django_sms2fa  # noqa: E402

project = "django-sms2fa"
author = "django-sms2fa contributors"
copyright = "django-sms2fa contributors"  # noqa: A001  (Sphinx's name)
release = django_sms2fa.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sms2fa_reference",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "conftest.py"]
templates_path: list[str] = []

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Every cross-reference must resolve. Intersphinx is off (CI has no network),
# so references into Django, DRF, django-otp and the standard library cannot;
# they are ignored by pattern, never by name in the app's own API.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(django|rest_framework|django_otp|datetime|collections|typing|enum)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Iterable|Iterator|Mapping|Sequence|IO|Self|TextIO)"),
    (r"py:.*", r"(datetime|timedelta|Decimal|HttpRequest|HttpResponse|Response|Device)"),
    # Models are described in the admin and how-to pages, not as Python API.
    (
        r"py:.*",
        r"(django_sms2fa\.models\.)?(Challenge|Message|PhoneDevice|DeviceEvent|"
        r"MethodEvent|RecoveryCodeDevice|RememberedBrowser|AuditRecord|Refusal|Purpose)",
    ),
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"exclude-members": "__init__, __weakref__, __dict__, __module__"}

# The REST API page is generated from this URLconf's schema.
sms2fa_api_urlconf = "_urls"

html_theme = "furo"
html_title = f"django-sms2fa {release}"
html_static_path: list[str] = []
