"""A browser and an API client against a project built from docs/install.md.

``tests/test_install_docs.py`` copies this file into the project that
``startproject`` made (after applying the page's blocks) and runs it there::

    python drive.py '{"username": ..., "password": ..., "phone": ..., "paths": {...}}'

It runs in its own process, with the project's settings (``mysite.settings``),
not the test suite's: the point is to prove that the documented settings and
URLs are enough. It exits non-zero, with the reason, at the first step that
does not go as the page says.
"""

from __future__ import annotations

import json
import os
import sys
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

# Most redirects the admin may take to reach the login page: /admin/ ->
# /admin/login/?next=/admin/ -> /2fa/login/?next=/admin/. More would be a loop
# in the making.
MAX_HOPS = 2


class Failed(Exception):
    """A step did not go as docs/install.md says."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


class _Forms(HTMLParser):
    """The ``<form>``s of a page: action, method and the named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(
                {
                    "action": attributes.get("action", ""),
                    "method": attributes.get("method", "get").lower(),
                    "inputs": {},
                }
            )
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["inputs"][attributes["name"]] = attributes


def find_form(response: Any, field: str) -> dict[str, Any]:
    """The first POST form of ``response`` with an input named ``field``."""
    parser = _Forms()
    parser.feed(response.content.decode())
    for form in parser.forms:
        if form["method"] == "post" and field in form["inputs"]:
            return form
    raise Failed(f"{response.request['PATH_INFO']} shows no POST form with a {field!r} input")


def submit(client: Any, page_url: str, form: dict[str, Any], **fields: str) -> Any:
    """Post ``form`` as a browser would: its hidden inputs (the CSRF token,
    ``next``) plus ``fields``, to its action (the page itself when empty)."""
    data = {
        name: attributes.get("value", "")
        for name, attributes in form["inputs"].items()
        if attributes.get("type") == "hidden"
    }
    data.update(fields)
    return client.post(urljoin(page_url, form["action"] or page_url), data, follow=True)


def last_url(response: Any, first: str) -> str:
    return response.redirect_chain[-1][0] if response.redirect_chain else first


def admin_login(config: dict[str, Any], outbox: list[Any]) -> None:
    """The admin sends a visitor to the app's login; password, code, admin index."""
    from django.contrib.sessions.models import Session
    from django.test import Client

    paths = config["paths"]
    # enforce_csrf_checks: the forms must carry their token, as in a browser.
    # SERVER_NAME: a host that DEBUG's empty ALLOWED_HOSTS accepts (runserver's).
    browser = Client(enforce_csrf_checks=True, SERVER_NAME="localhost")
    page = browser.get(paths["admin"], follow=True)
    hops = page.redirect_chain
    expect(
        1 <= len(hops) <= MAX_HOPS,
        f"GET {paths['admin']} took {len(hops)} redirects ({hops}), not 1 to {MAX_HOPS}",
    )
    login_url = last_url(page, paths["admin"])
    expect(
        urlsplit(login_url).path == paths["login"],
        f"the admin sent the visitor to {login_url}, not to {paths['login']}",
    )
    expect(
        parse_qs(urlsplit(login_url).query).get("next") == [paths["admin"]],
        f"{login_url} does not come back to {paths['admin']} afterwards",
    )
    expect(page.status_code == 200, f"{login_url} answered {page.status_code}")
    form = find_form(page, "password")
    expect(form["inputs"]["password"].get("type") == "password", "no password input")

    page = submit(
        browser, login_url, form, username=config["username"], password=config["password"]
    )
    code_url = last_url(page, login_url)
    expect(page.status_code == 200, f"the password answered {page.status_code}")
    expect(len(outbox) == 1, f"{len(outbox)} SMS sent for one password, not 1")
    sms = outbox[-1]
    expect(sms.to == config["phone"], "the code went to another number than the one added")
    page = submit(browser, code_url, find_form(page, "code"), code=sms.code)

    expect(page.status_code == 200, f"the code answered {page.status_code}")
    expect(
        page.resolver_match is not None and page.resolver_match.view_name == "admin:index",
        f"the code led to {last_url(page, code_url)}, not to the admin index",
    )
    again = browser.get(paths["admin"])
    expect(again.status_code == 200, f"GET {paths['admin']} after the code: {again.status_code}")
    print("admin: /admin/ -> login -> password -> code -> admin index")

    # The pages' logout: a GET shows a button, its POST ends the session.
    session_key = browser.session.session_key
    page = browser.get(paths["logout"])
    expect(page.status_code == 200, f"GET {paths['logout']} answered {page.status_code}")
    expect(Session.objects.filter(session_key=session_key).exists(), "a GET logged out")
    page = submit(browser, paths["logout"], find_form(page, "csrfmiddlewaretoken"))
    expect(page.status_code == 200, f"the logout answered {page.status_code}")
    expect(
        not Session.objects.filter(session_key=session_key).exists(),
        "the session is still there after the logout",
    )
    page = browser.get(paths["admin"], follow=True)
    expect(
        urlsplit(last_url(page, paths["admin"])).path == paths["login"],
        "after the logout the admin did not ask for a login again",
    )
    print(f"admin: POST {paths['logout']} ended the session")


def api_login(config: dict[str, Any], outbox: list[Any]) -> None:
    """The API's login with JSON and ``X-CSRFToken``, as the page's fetch() does."""
    from django.contrib.sessions.models import Session
    from django.test import Client

    paths = config["paths"]
    api = config["api"]
    client = Client(enforce_csrf_checks=True, SERVER_NAME="localhost")

    def post(path: str, body: dict[str, Any] | None = None, *, token: bool = True) -> Any:
        # The cookie's current value: login rotates the token.
        headers = {"X-CSRFToken": client.cookies["csrftoken"].value} if token else {}
        data = json.dumps(body) if body is not None else None
        return client.post(path, data, content_type="application/json", headers=headers)

    # "A page of your site sets that cookie when it renders a form with
    # {% csrf_token %} (the app's /2fa/login/ does)", says the page.
    client.get(paths["login"])
    expect("csrftoken" in client.cookies, f"GET {paths['login']} set no csrftoken cookie")

    answer = post(api["login"], {"username": config["username"], "password": config["password"]})
    expect(answer.status_code == 200, f"POST {api['login']}: {answer.status_code} {answer.content}")
    body = answer.json()
    expect(body.get("mfa_required") is True, f"POST {api['login']} asked for no code: {body}")
    expect(len(outbox) == 1, f"{len(outbox)} SMS sent for one API password, not 1")
    sms = outbox[-1]
    expect(sms.to == config["phone"], "the API's code went to another number")
    answer = post(api["verify"], {"challenge": body["challenge"]["id"], "code": sms.code})
    expect(
        answer.status_code == 200, f"POST {api['verify']}: {answer.status_code} {answer.content}"
    )

    answer = client.get(api["devices"])
    expect(answer.status_code == 200, f"GET {api['devices']}: {answer.status_code}")
    expect(len(answer.json()) >= 1, f"GET {api['devices']} lists no phone: {answer.content}")

    # Without the header, a logged-in session's POST is refused (CSRF).
    for path, payload in ((api["devices"], {"phone": "+46701234568"}), (api["logout"], None)):
        answer = post(path, payload, token=False)
        expect(answer.status_code == 403, f"POST {path} without X-CSRFToken: {answer.status_code}")
        code = answer.json().get("error", {}).get("code")
        expect(code == "permission_denied", f"POST {path} without X-CSRFToken: {code!r}")
    expect(client.get(api["devices"]).status_code == 200, "a refused logout logged out")
    print("api: login -> login/verify -> devices; POST without X-CSRFToken -> 403")

    session_key = client.session.session_key
    answer = post(api["logout"])
    expect(answer.status_code == 204, f"POST {api['logout']}: {answer.status_code}")
    expect(
        not Session.objects.filter(session_key=session_key).exists(),
        f"the session is still there after POST {api['logout']}",
    )
    answer = client.get(api["devices"])
    expect(answer.status_code == 403, f"GET {api['devices']} after logout: {answer.status_code}")
    print(f"api: POST {api['logout']} -> 204, session gone")


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import caches
    from django.test.utils import override_settings

    from django_sms2fa.providers import locmem

    # The one departure from the project as documented: the console provider
    # prints each code where a person reads it; the locmem provider keeps it
    # in locmem.outbox, where this script reads it. Nothing else is changed.
    provider = {"default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"}}
    try:
        with override_settings(SMS2FA={**settings.SMS2FA, "PROVIDERS": provider}):
            admin_login(config, locmem.outbox)
            # Two visits, not one: forget the send counters (the project's
            # cache is this process's memory), as the 30 s of the number's
            # limit (one SMS per 30 s) would, or the API's code is refused.
            caches["default"].clear()
            locmem.reset()
            api_login(config, locmem.outbox)
    except Failed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
