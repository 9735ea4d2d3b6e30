"""docs/install.md, applied to a fresh ``startproject``, gives a working site.

The test does what the page says, block by marked block, and nothing more: it
appends the settings block to ``settings.py``, replaces ``urls.py`` with the
URLs block and runs the migrate and add-phone commands. Then a driver
(tests/install_docs_driver.py, run inside the new project) logs in to the admin
and to the API as the page describes. If the site needs a step the page does
not give, this test fails; the fix belongs in the page.

The project is the one ``startproject`` makes (SQLite), whatever database the
rest of the suite uses; it runs in subprocesses with its own settings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "install.md"
DRIVER = Path(__file__).resolve().parent / "install_docs_driver.py"
MARKERS = ("pip", "settings", "urls", "migrate", "add-phone")
_MARKER = re.compile(r"<!-- install:(?P<name>[a-z][a-z0-9-]*) -->")  # not the prose's "install:…"
# The fenced block right after a marker (blank lines between are allowed).
_FENCE = re.compile(r"\s*```[\w-]*\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# A system check's id in manage.py's output: "?: (sms2fa.W005) ...".
_CHECK_ID = re.compile(r"\((?P<id>[\w.]+\.(?P<short>[EWCI]\d+))\)")
TIMEOUT = 120


def install_blocks(doc: str) -> dict[str, str]:
    """``{marker: block}`` for each ``<!-- install:… -->`` of ``doc``.

    Fails on a marker missing, unknown, repeated, not followed by a fenced
    block or followed by an empty one: an edit of the page that would leave
    this test checking less than the page says must not pass unnoticed.
    """
    found: dict[str, str] = {}
    for marker in _MARKER.finditer(doc):
        name = marker["name"]
        assert name in MARKERS, f"docs/install.md: unknown marker install:{name}"
        assert name not in found, f"docs/install.md: install:{name} appears twice"
        fence = _FENCE.match(doc, marker.end())
        assert fence is not None, f"docs/install.md: no ``` block right after install:{name}"
        assert fence["body"].strip(), f"docs/install.md: the install:{name} block is empty"
        found[name] = fence["body"]
    missing = [name for name in MARKERS if name not in found]
    assert not missing, f"docs/install.md lacks the markers: {missing}"
    return found


def shell_commands(block: str) -> list[tuple[dict[str, str], list[str]]]:
    """``(environment, argv)`` for each command line of a shell block.

    Only ``python manage.py …`` is expected (with ``NAME=value`` prefixes);
    anything else is a step this test could not take, so it fails.
    """
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        env = {}
        while words and _ASSIGNMENT.match(words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        assert words[:2] == ["python", "manage.py"], f"not a manage.py command: {line!r}"
        commands.append((env, [sys.executable, *words[1:]]))
    return commands


def option(argv: list[str], name: str) -> str:
    """The value of ``--name value`` in ``argv``."""
    assert name in argv, f"{argv} has no {name}"
    return argv[argv.index(name) + 1]


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run ``argv``; its combined output, or a failure that shows it."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{shlex.join(argv[1:])} failed ({done.returncode}):\n{output}"
    return output


def project_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the project's commands: its own settings, not the
    suite's (pytest-django set DJANGO_SETTINGS_MODULE to tests.settings)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    env.update(extra or {})
    return env


def check_ids(output: str) -> set[str]:
    return {match["id"] for match in _CHECK_ID.finditer(output)}


def undocumented(ids: set[str], doc: str) -> list[str]:
    """The check ids the page does not tell the reader about (by full id or
    its short form: "W005" for "sms2fa.W005")."""
    return sorted(check for check in ids if check not in doc and check.rsplit(".", 1)[1] not in doc)


def test_the_documented_install_gives_a_working_admin_and_api(tmp_path):
    doc = DOC.read_text(encoding="utf-8")
    blocks = install_blocks(doc)

    # install:pip: the package is already installed in this venv; the block
    # must name it (it is not on PyPI yet: a path to the checkout).
    pip = shlex.split(blocks["pip"], comments=True)
    assert pip[:2] == ["pip", "install"], blocks["pip"]
    assert any(word.rstrip("/").endswith("django-sms2fa") for word in pip[2:]), blocks["pip"]

    run([sys.executable, "-m", "django", "startproject", "mysite"], tmp_path, project_env())
    project = tmp_path / "mysite"
    settings_py = project / "mysite" / "settings.py"
    settings_py.write_text(
        settings_py.read_text(encoding="utf-8") + "\n" + blocks["settings"], encoding="utf-8"
    )
    (project / "mysite" / "urls.py").write_text(blocks["urls"], encoding="utf-8")

    outputs = []
    migrate = shell_commands(blocks["migrate"])
    names = [argv[2] for _, argv in migrate]
    assert names[0] == "migrate" and "check" in names, f"install:migrate runs {names}"
    for env, argv in migrate:
        outputs.append(run(argv, project, project_env(env)))

    # install:add-phone: the superuser, then their phone, exactly as written.
    add_phone = shell_commands(blocks["add-phone"])
    names = [argv[2] for _, argv in add_phone]
    assert names == ["createsuperuser", "sms2fa_add_phone"], f"install:add-phone runs {names}"
    (superuser_env, superuser), (_, phone_command) = add_phone
    username = option(superuser, "--username")
    password = superuser_env.get("DJANGO_SUPERUSER_PASSWORD", "")
    assert password, "createsuperuser --noinput needs DJANGO_SUPERUSER_PASSWORD"
    assert phone_command[3] == username, "the phone is added for another user than the superuser"
    assert "--confirmed" in phone_command, "an unconfirmed phone would not be asked for a code"
    for env, argv in add_phone:
        outputs.append(run(argv, project, project_env(env)))

    # Warnings do not stop a start-up; they are acceptable only where the page
    # tells the reader about them. Errors already failed the command above.
    ids = set().union(*(check_ids(output) for output in outputs))
    if ids:
        print(f"system checks reported: {sorted(ids)}")
    assert undocumented(ids, doc) == [], "checks the page does not mention"

    api_login = re.search(r'fetch\("(?P<path>[^"]+/)login/"', doc)
    assert api_login is not None, "docs/install.md shows no fetch() of the API's login/"
    api = api_login["path"]
    assert f"POST {api}logout/" in doc, f"docs/install.md does not name POST {api}logout/"
    pages = {"admin": "/admin/", "login": "/2fa/login/", "logout": "/2fa/logout/"}
    for path in pages.values():
        assert f"`{path}`" in doc, f"docs/install.md does not name {path}"
    config = {
        "username": username,
        "password": password,
        "phone": phone_command[4],
        "paths": pages,
        "api": {
            "login": f"{api}login/",
            "verify": f"{api}login/verify/",
            "devices": f"{api}devices/",
            "logout": f"{api}logout/",
        },
    }
    shutil.copy(DRIVER, project / "drive.py")
    output = run([sys.executable, "drive.py", json.dumps(config)], project, project_env())
    print(output)


def test_a_broken_page_is_noticed():
    doc = DOC.read_text(encoding="utf-8")
    install_blocks(doc)
    without_marker = doc.replace("<!-- install:urls -->", "", 1)
    with pytest.raises(AssertionError, match="lacks the markers"):
        install_blocks(without_marker)
    emptied = re.sub(
        r"(<!-- install:migrate -->\n```sh\n).*?(```)", r"\1\2", doc, count=1, flags=re.DOTALL
    )
    assert emptied != doc
    with pytest.raises(AssertionError, match="install:migrate block is empty"):
        install_blocks(emptied)
    with pytest.raises(AssertionError, match="not a manage.py command"):
        shell_commands("python manage.py migrate\npip install something-else\n")
    assert undocumented({"sms2fa.W005", "sms2fa.W999"}, "check W005 while it is unset") == [
        "sms2fa.W999"
    ]
