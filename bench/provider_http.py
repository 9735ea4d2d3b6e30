"""Provider HTTP: connection reuse, and the time the app adds on top of a provider call.

GoSMS is pointed at a fake on loopback (bench/fakes.py) that counts TCP
connections. Timed in interleaved rounds on the same fake:

* ``raw HTTP``: the bare call — one keep-alive ``requests`` POST of the same
  JSON with the same headers;
* ``provider.send``: the provider layer (payload, answer parsing, errors);
* ``flows request``: a whole request through the flows (limits, challenge
  row, code, SMS text, send, message row).

The app's overhead is ``flows request - raw HTTP`` (medians), and the provider
layer's is ``provider.send - raw HTTP``.

    BENCH_DB=postgres python -m bench.provider_http --ops 300
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import empty_tables, ensure_database, setup_django, summarize, timed, write_json
from .fakes import FAKE_TOKEN, FakeGoSMS, gosms_settings

ROUNDS = 5


def run(ops: int) -> dict[str, Any]:
    import requests

    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    from django_sms2fa import flows
    from django_sms2fa.providers import get_provider
    from django_sms2fa.types import OutgoingSms

    ensure_database()
    empty_tables()
    fake = FakeGoSMS().start()
    samples: dict[str, list[float]] = {"raw HTTP": [], "provider.send": [], "flows request": []}
    try:
        with override_settings(
            SMS2FA={**settings.SMS2FA, "PROVIDERS": {"default": gosms_settings(fake.url)}}
        ):
            provider = get_provider("default")
            raw = requests.Session()
            headers = {"Authorization": f"Bearer {FAKE_TOKEN}", "User-Agent": "django-sms2fa"}
            body = {"message": "Your code is 123456", "phone_number": "46701234567"}
            sms = OutgoingSms(to="+46701234567", text="Your code is 123456", code="123456")
            # Warm-up: imports, templates, and the one connection each client opens.
            flows.request_challenge(phone="+46706999999", purpose="login")
            provider.send(sms)
            raw.post(fake.url + "/sms/send", json=body, headers=headers).close()
            connections_before = fake.connections
            per_round = max(ops // ROUNDS, 1)
            for r in range(ROUNDS):
                samples["raw HTTP"] += timed(
                    lambda: raw.post(fake.url + "/sms/send", json=body, headers=headers).close()
                    for _ in range(per_round)
                )
                samples["provider.send"] += timed(
                    lambda: provider.send(sms) for _ in range(per_round)
                )
                samples["flows request"] += timed(
                    lambda n=r * per_round + i: flows.request_challenge(
                        phone=f"+4670{6_000_000 + n}", purpose="login"
                    )
                    for i in range(per_round)
                )
            sends = 3 * per_round * ROUNDS
            # The warm-up opened one connection for the provider (shared by the
            # flows, which use the same cached instance) and one for raw.
            new_connections = fake.connections - connections_before
    finally:
        fake.stop()
    timings = {name: summarize(values).as_dict() for name, values in samples.items()}
    raw_p50 = timings["raw HTTP"]["p50_us"]
    return {
        "db": connection.vendor,
        "sends": sends,
        "provider_sends": 2 * per_round * ROUNDS,
        "connections_total": fake.connections,
        "connections_during_run": new_connections,
        "timings": timings,
        "app_overhead_us": timings["flows request"]["p50_us"] - raw_p50,
        "provider_layer_overhead_us": timings["provider.send"]["p50_us"] - raw_p50,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=300, help="calls timed per kind")
    parser.add_argument("--json", help="write the results here (default: stdout)")
    args = parser.parse_args(argv)
    setup_django()
    result = run(args.ops)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
