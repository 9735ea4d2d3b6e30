"""WSGI entry point of the django-sms2fa example site."""

import os
import sys
from pathlib import Path

# Same paths as manage.py: this project and the repository root.
for _path in (Path(__file__).resolve().parent.parent, Path(__file__).resolve().parents[2]):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from django.core.wsgi import get_wsgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

application = get_wsgi_application()
