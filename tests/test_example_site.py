"""The example site is what a newcomer copies: its own ``manage.py check`` is clean.

Run as a newcomer runs it: a subprocess in ``example_project/`` with none of
the example's optional environment variables (``EXAMPLE_*``,
``DJANGO_SECRET_KEY``) and not this suite's settings module, so every default
of ``example/settings.py`` is the one checked. A warning there (say
``sms2fa.W005``, no ``ALLOWED_REGIONS``) would teach the newcomer to ignore
warnings; a deprecated import there (the old webhook URLs) would teach the
old name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_project"


def example_env() -> dict[str, str]:
    """This process's environment without anything that changes the example's defaults."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("EXAMPLE_", "DJANGO_", "SMS2FA_"))
    }
    # Shown, not hidden: a DeprecationWarning at import time is caught below.
    env["PYTHONWARNINGS"] = "always::DeprecationWarning"
    return env


def test_the_example_site_passes_its_own_check_with_no_warnings():
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=EXAMPLE_DIR,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout, done.stdout
    assert "WARNING" not in done.stdout + done.stderr
    assert "DeprecationWarning" not in done.stderr, done.stderr
