"""Every link of README.md resolves where PyPI renders it.

PyPI shows the README without the repository around it, so every link is
absolute. Links into the documentation site and into the repository point at
addresses that exist only once the site is built and the repository is
public; what this test can hold them to is the file each address is built
from: a docs page for ``…readthedocs.io/en/latest/<page>.html`` and a file of
this checkout for ``github.com/…/blob/main/<path>`` and
``raw.githubusercontent.com/…/main/<path>``.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

DOCS_SITE = "https://django-sms2fa.readthedocs.io/en/latest/"
REPO_BLOB = "https://github.com/django-sms2fa/django-sms2fa/blob/main/"
REPO_RAW = "https://raw.githubusercontent.com/django-sms2fa/django-sms2fa/main/"

#: Inline links and images ``[text](target)`` and reference definitions ``[id]: target``.
LINK = re.compile(r"\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def targets(text: str = README) -> list[str]:
    return [inline or reference for inline, reference in LINK.findall(text)]


def unresolved(text: str) -> list[str]:
    """The links of ``text`` into the docs site or the repository whose page
    or file does not exist in this checkout."""
    missing = []
    for target in targets(text):
        if target.startswith(DOCS_SITE):
            path = target[len(DOCS_SITE) :].split("#")[0] or "index.html"
            stem = ROOT / "docs" / path.removesuffix(".html")
            if not (
                path.endswith(".html")
                and (stem.with_suffix(".md").exists() or stem.with_suffix(".rst").exists())
            ):
                missing.append(target)
        elif target.startswith((REPO_BLOB, REPO_RAW)):
            path = target.removeprefix(REPO_BLOB).removeprefix(REPO_RAW).split("#")[0]
            if not (ROOT / path).exists():
                missing.append(target)
    return missing


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 200


def test_every_link_is_absolute():
    relative = [t for t in targets() if not re.match(r"https?://|mailto:", t)]
    assert not relative, f"relative links break on PyPI: {relative}"


def test_every_link_into_the_docs_or_the_repository_resolves():
    linked = [t for t in targets() if t.startswith((DOCS_SITE, REPO_BLOB, REPO_RAW))]
    assert any(t.startswith(DOCS_SITE) for t in linked), "the README links into the docs"
    assert any(t.startswith(REPO_RAW) for t in linked), "the screenshots come from the repo"
    assert unresolved(README) == []


def test_the_check_can_fail():
    text = (
        f"[a page]({DOCS_SITE}howto/no-such-page.html) "
        f"![a picture]({REPO_RAW}docs/_static/screenshots/none.png)\n"
        f"[ok]: {DOCS_SITE}tutorial.html\n"
    )
    assert unresolved(text) == [
        f"{DOCS_SITE}howto/no-such-page.html",
        f"{REPO_RAW}docs/_static/screenshots/none.png",
    ]
