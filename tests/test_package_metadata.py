"""The version has one source, ``django_sms2fa.__version__``.

pyproject.toml reads it (``[tool.setuptools.dynamic]``), the installed
distribution's metadata carries it, and CHANGELOG.md's newest release is it:
a bump that misses one of them fails here, before a release goes out with
two different numbers.
"""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import django_sms2fa

ROOT = Path(__file__).resolve().parent.parent

# "## [0.1.0] - 2026-12-06": a release heading of Keep a Changelog.
RELEASE_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\] - (?P<date>\d{4}-\d{2}-\d{2})$")


def changelog_releases() -> list[str]:
    """The versions of CHANGELOG.md's release headings, newest first."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return [m["version"] for line in text.splitlines() if (m := RELEASE_HEADING.match(line))]


def test_installed_metadata_matches_the_package():
    # A stale install (the version bumped since `pip install -e .`) fails too:
    # reinstall, as the release steps in docs/releasing.md say.
    assert importlib.metadata.version("django-sms2fa") == django_sms2fa.__version__


def test_pyproject_reads_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"], "the version must not be hard-coded in pyproject"
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "django_sms2fa.__version__"}


def test_changelog_newest_release_is_the_package_version():
    releases = changelog_releases()
    assert releases, "CHANGELOG.md has no '## [x.y.z] - YYYY-MM-DD' release heading"
    assert releases[0] == django_sms2fa.__version__


def test_changelog_keeps_an_unreleased_section_on_top():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## [Unreleased]"


def test_changelog_links_every_heading():
    # Keep a Changelog's link references: "[0.1.0]: https://…" at the bottom.
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    for version in ["Unreleased", *changelog_releases()]:
        assert re.search(rf"^\[{re.escape(version)}\]: https://", text, re.M), version


def test_release_heading_pattern_rejects_what_is_not_a_release():
    # The pattern is what the version test relies on: make sure it can say no.
    assert RELEASE_HEADING.match("## [0.1.0] - 2026-12-06")
    assert not RELEASE_HEADING.match("## [Unreleased]")
    assert not RELEASE_HEADING.match("## [0.1.0]")
    assert not RELEASE_HEADING.match("### [0.1.0] - 2026-12-06")
