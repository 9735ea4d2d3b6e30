#!/usr/bin/env python
"""Django's command-line utility for the django-sms2fa example site.

Works from any directory, e.g. from the repository root::

    python example_project/manage.py migrate
    python example_project/manage.py demo_setup
    python example_project/manage.py runserver
"""

import os
import sys
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXAMPLE_DIR.parent


def main() -> None:
    # The example project itself (the ``example`` package) and the repository
    # root (so ``django_sms2fa`` imports even when it is not installed).
    for path in (str(EXAMPLE_DIR), str(REPO_ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Is it installed and available on your "
            "PYTHONPATH environment variable? Did you forget to activate a "
            "virtual environment? (`bash example_project/run.sh` makes one.)"
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
