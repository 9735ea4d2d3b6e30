"""The contrib integrations' test projects (tests/integrations), each in a
pytest process of its own: a settings module is process-wide, and each project
installs a different authentication package (django-allauth,
django-two-factor-auth) whose login it drives end to end.

The database switches pass through (SQLite, or PostgreSQL with a test database
of the project's own, beside the one this process may hold)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_project(name: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # Never the test database this process may have open.
    env["SMS2FA_PG_NAME"] = f"{env.get('SMS2FA_PG_NAME', 'sms2fa')}_{name}"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"tests/integrations/{name}",
            f"--ds=tests.integrations.{name}.settings",
            # The projects' modules are check_*.py: the main run skips them.
            "-o",
            "python_files=check_*.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("name", ["allauth_project", "two_factor_project"])
def test_the_integration_project_logs_in_end_to_end(name):
    result = run_project(name)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " passed" in output and "skipped" not in output, output
