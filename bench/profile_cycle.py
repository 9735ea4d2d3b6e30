"""A profile of one request and one verify, under cProfile.

N request -> verify cycles through the flows, on the configured database and
cache (``BENCH_DB``, as for the other step benchmarks: SQLite with the
local-memory cache, or PostgreSQL with Redis): ``flows.request_challenge`` of a
login code for a user with a confirmed phone, then ``flows.verify_challenge``
with the right code. Each user and phone is fresh, so every cycle is a success.

Every security default is on (send limits, resend cooldown, SMS-pumping
breaker, lockouts), except the per-country and site-wide send ceilings, widened
so that N codes can be sent; the provider is the test settings' locmem one
(no network). A few warm-up cycles run first, unprofiled (imports, connections,
first queries). Then each request and each verify is profiled on its own (the
profiler enabled around that call only), and the two profiles are written as
text: the top 40 functions by cumulative time, totals over the N calls (divide
by N for one call; the header gives the mean wall time per call).

    python -m bench.profile_cycle --cycles 200                         # SQLite
    BENCH_DB=postgres BENCH_PG_NAME=... BENCH_REDIS_URL=... \\
        python -m bench.profile_cycle --cycles 200 --label before

Writes ``bench/profiles/<label>-request.txt`` and ``<label>-verify.txt``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import os
import platform
import pstats
import time
from pathlib import Path
from typing import Any

from .common import ROOT, empty_tables, ensure_database, setup_django

PROFILES = ROOT / "bench" / "profiles"
TOP = 40
WARM_UP = 5
USER_PREFIX = "bench-profile-"
WIDE = ["1000000/h"]  # the country and global ceilings, out of the way


def phone(i: int) -> str:
    """Distinct Swedish mobile numbers (+4670 2xx xx xx)."""
    return f"+4670{2_000_000 + i}"


def make_users(count: int) -> list[tuple[Any, Any]]:
    """``count`` fresh users, each with a confirmed phone."""
    from django.contrib.auth import get_user_model

    from django_sms2fa.models import PhoneDevice

    user_model = get_user_model()
    user_model.objects.filter(username__startswith=USER_PREFIX).delete()
    users = user_model.objects.bulk_create(
        [user_model(username=f"{USER_PREFIX}{i}") for i in range(count)]
    )
    if users and users[0].pk is None:  # back ends that return no keys
        users = list(user_model.objects.filter(username__startswith=USER_PREFIX).order_by("pk"))
    devices = PhoneDevice.objects.bulk_create(
        [
            PhoneDevice(user=user, number=phone(i), name="bench", confirmed=True)
            for i, user in enumerate(users)
        ]
    )
    if devices and devices[0].pk is None:
        by_user = {d.user_id: d for d in PhoneDevice.objects.filter(user__in=users)}
        devices = [by_user[user.pk] for user in users]
    return list(zip(users, devices, strict=True))


def security_defaults() -> dict[str, Any]:
    """The SMS2FA settings with every security default on (see the docstring)."""
    from django.conf import settings

    from django_sms2fa.conf import DEFAULT_LIMITS

    sms2fa = {
        key: value
        for key, value in settings.SMS2FA.items()
        if key not in ("LIMITS", "RESEND_INTERVAL", "PUMPING")
    }
    sms2fa["LIMITS"] = {**DEFAULT_LIMITS, "country": WIDE, "global": WIDE}
    return sms2fa


def run(cycles: int) -> dict[str, Any]:
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    from django_sms2fa import flows
    from django_sms2fa.models import Purpose
    from django_sms2fa.providers import locmem

    ensure_database()
    empty_tables()
    pairs = make_users(WARM_UP + cycles)
    profiles = {"request": cProfile.Profile(), "verify": cProfile.Profile()}
    wall: dict[str, float] = {"request": 0.0, "verify": 0.0}
    with override_settings(SMS2FA=security_defaults()):
        for i, (user, device) in enumerate(pairs):
            profiled = i >= WARM_UP

            def step(name: str, call: Any, *, profiled: bool = profiled) -> Any:
                started = time.perf_counter()
                if not profiled:
                    return call()
                profiles[name].enable()
                try:
                    return call()
                finally:
                    profiles[name].disable()
                    wall[name] += time.perf_counter() - started

            challenge = step(
                "request",
                lambda user=user, device=device: flows.request_challenge(
                    phone=device.number, purpose=Purpose.LOGIN, user=user, device=device
                ),
            )
            code = locmem.outbox[-1].code
            verified = step(
                "verify",
                lambda challenge=challenge, code=code, user=user: flows.verify_challenge(
                    challenge.pk, code, user=user, purpose=Purpose.LOGIN
                ),
            )
            assert verified.status == "verified", verified.status
            locmem.reset()
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    return {
        "cycles": cycles,
        "db": connection.vendor,
        "cache": cache,
        "profiles": profiles,
        "wall": wall,
    }


def render(result: dict[str, Any], name: str) -> str:
    cycles = result["cycles"]
    mean_ms = result["wall"][name] / cycles * 1000
    out = io.StringIO()
    stats = pstats.Stats(result["profiles"][name], stream=out)
    stats.sort_stats("cumulative").print_stats(TOP)
    import django

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = [
        f"Profile of one {name}: flows, login code for a user with a confirmed phone, right code,",
        "every security default on (country/global ceilings widened), locmem provider.",
        f"Taken {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by "
        "bench/profile_cycle.py on "
        f"{result['db']} + {result['cache']}, {os.cpu_count()} CPUs, load average {load:.1f}; "
        f"Python {platform.python_version()}, Django {django.get_version()}.",
        f"{cycles} {name} calls profiled (after {WARM_UP} unprofiled warm-up cycles): the "
        f"times below are totals over {cycles} calls; divide by {cycles} for one.",
        f"Mean wall time per {name} under the profiler: {mean_ms:.2f} ms "
        "(the profiler's own overhead included).",
        "",
    ]
    return "\n".join(header) + shorten(out.getvalue())


def shorten(text: str) -> str:
    """Paths relative to the repository and to site-packages (django/..., redis/...)."""
    import sysconfig

    for prefix in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], ROOT):
        text = text.replace(f"{prefix}{os.sep}", "")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--label", default="before", help="file prefix: before, after, ...")
    parser.add_argument("--out", default=str(PROFILES), help="folder for the text profiles")
    args = parser.parse_args()
    setup_django()
    result = run(args.cycles)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("request", "verify"):
        path = folder / f"{args.label}-{name}.txt"
        path.write_text(render(result, name))
        print(
            f"[profile] {name}: {result['wall'][name] / args.cycles * 1000:.2f} ms per call "
            f"under the profiler on {result['db']} + {result['cache']} -> {path}",
            flush=True,
        )


if __name__ == "__main__":
    main()
