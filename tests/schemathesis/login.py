"""Log the example site's demo user in through the API; print the headers a
client of that session sends (used by run.sh; standard library only).

    python login.py BASE_URL SERVER_LOG

Password first (``login/``), then the SMS code, which the console provider
printed to the output of the site's task worker (SERVER_LOG), to ``login/verify/``. Prints two
lines, ``Cookie: sessionid=...; csrftoken=...`` and ``X-CSRFToken: ...``: a
session verified with a second factor, and the CSRF token Django requires of
a logged-in session's unsafe requests.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import sys
import time
import urllib.request
from pathlib import Path

# example_project/example/management/commands/demo_setup.py
USERNAME = "demo"
PASSWORD = "demo-password"
CODE_IN_SMS = re.compile(r"Your verification code is ([0-9]+)")


def main(base_url: str, server_log: Path) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    sent_before = len(CODE_IN_SMS.findall(server_log.read_text(errors="replace")))
    answer = post("login/", {"username": USERNAME, "password": PASSWORD})
    if not answer.get("mfa_required"):
        sys.exit(f"login/ did not ask for a code: {answer}")
    code = None
    for _ in range(100):
        codes = CODE_IN_SMS.findall(server_log.read_text(errors="replace"))
        if len(codes) > sent_before:
            code = codes[-1]
            break
        time.sleep(0.1)
    if code is None:
        sys.exit(f"no SMS code appeared in {server_log}")
    post("login/verify/", {"challenge": answer["challenge"]["id"], "code": code})
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies or "csrftoken" not in cookies:
        sys.exit(f"login/verify/ set no session or CSRF cookie: {sorted(cookies)}")
    print(f"Cookie: sessionid={cookies['sessionid']}; csrftoken={cookies['csrftoken']}")
    print(f"X-CSRFToken: {cookies['csrftoken']}")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/") + "/", Path(sys.argv[2]))
