"""Run every benchmark and print one table per part (bench/run.sh calls this).

Each part runs in its own process (its own settings and database) and leaves
its JSON in ``bench/.data/``; this script then prints the tables that
bench/README.md keeps. ``--render-only`` prints them again from the JSON.

Environment: ``BENCH_OPS`` (operations per step, default 1000), ``BENCH_BIG=1``
(the scale run goes to 1,000,000 challenges instead of 100,000),
``BENCH_PG_NAME``, ``BENCH_REDIS_URL``, ``BENCH_DATABASES`` (default
``sqlite postgres``), ``BENCH_LOAD_CYCLES`` (default 1000), ``BENCH_WORKERS``
(default 3), ``BENCH_CLIENTS`` (default 8).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
STEPS = ("request", "resend", "verify")


def env_for(db: str) -> dict[str, str]:
    return {**os.environ, "BENCH_DB": db, "PYTHONPATH": str(ROOT)}


def part(name: str, args: list[str], db: str, out: Path) -> None:
    started = time.perf_counter()
    print(f"== {name} ({db})", file=sys.stderr, flush=True)
    subprocess.run(
        [sys.executable, "-m", *args, "--json", str(out)], env=env_for(db), cwd=ROOT, check=True
    )
    print(f"   done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def run_all() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    ops = os.environ.get("BENCH_OPS", "1000")
    big = os.environ.get("BENCH_BIG") == "1"
    sizes = "10000,1000000" if big else "10000,100000"
    databases = os.environ.get("BENCH_DATABASES", "sqlite postgres").split()
    for stale in DATA.glob("*.json"):
        stale.unlink()
    meta = {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "started": time.time()}
    for db in databases:
        part("steps", ["bench.steps", "--ops", ops], db, DATA / f"steps-{db}.json")
        part("provider HTTP", ["bench.provider_http"], db, DATA / f"provider-{db}.json")
    if "postgres" in databases:
        part(
            "verify at scale",
            ["bench.scale", "--sizes", sizes, "--samples", "200"],
            "postgres",
            DATA / "scale-postgres.json",
        )
        part(
            "load (gunicorn)",
            [
                "bench.load",
                "--cycles",
                os.environ.get("BENCH_LOAD_CYCLES", "1000"),
                "--workers",
                os.environ.get("BENCH_WORKERS", "3"),
                "--clients",
                os.environ.get("BENCH_CLIENTS", "8"),
            ],
            "postgres",
            DATA / "load-postgres.json",
        )
    meta.update(load_after=os.getloadavg(), minutes=(time.time() - meta["started"]) / 60)
    (DATA / "meta.json").write_text(json.dumps(meta))


# --------------------------------------------------------------- rendering


def load(name: str) -> dict[str, Any] | None:
    path = DATA / name
    return json.loads(path.read_text()) if path.exists() else None


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def render_steps(results: list[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        db = "PostgreSQL" if result["db"] == "postgresql" else "SQLite"
        timings, statements = result["timings"], result["statements"]
        for path in ("floor", "flows", "API"):
            for step in STEPS:
                timing = timings[path][step]
                floor = timings["floor"][step]["p50_us"]
                if path == "floor":
                    sql = {"request": "2", "resend": "2", "verify": "1"}[step]
                else:
                    counted = statements[f"{path} {step}"]
                    sql = str(len(counted["shapes"]))
                    if counted["bookkeeping"]:
                        sql += f" (+{counted['bookkeeping']})"
                rows.append(
                    [
                        db,
                        path,
                        step,
                        sql,
                        us(timing["p50_us"]),
                        us(timing["mean_us"]),
                        f"{timing['ops_per_s']:,.0f}",
                        f"{timing['p50_us'] / floor:.1f}",
                    ]
                )
    ops = results[0]["ops"] if results else 0
    note = (
        f"{ops} operations per step and path, in 5 interleaved rounds. SQL: statements "
        "counted in the budget (+ session/auth bookkeeping, not counted). Ratio: median "
        "time over the floor's median time on the same database in the same run."
    )
    headers = ["DB", "path", "step", "SQL", "p50 µs", "mean µs", "ops/s", "× floor"]
    return note + "\n\n" + table(headers, rows)


def render_login_statements(results: list[dict[str, Any]]) -> str:
    if not results:
        return ""
    statements = results[0]["statements"]
    rows = [
        [name, len(s["shapes"]), s["bookkeeping"], "; ".join(s["shapes"])]
        for name, s in statements.items()
    ]
    return table(["step", "SQL", "bookkeeping", "statements"], rows)


def render_scale(result: dict[str, Any] | None) -> str:
    if not result:
        return "(not run)"
    rows = [
        [
            f"{entry['size']:,}" + (" (again)" if entry.get("again") else ""),
            f"{entry['rows']:,}",
            us(entry["p50_us"]),
            us(entry["p99_us"]),
            f"{entry['ops_per_s']:,.0f}",
            us(entry["floor_p50_us"]),
            f"{entry['ratio']:.1f}",
            f"{entry['seed_seconds']}",
        ]
        for entry in result["sizes"]
    ]
    text = table(
        [
            "challenges",
            "rows",
            "verify p50 µs",
            "verify p99 µs",
            "ops/s",
            "floor p50 µs",
            "× floor",
            "seeded in s",
        ],
        rows,
    )
    sizes = result["sizes"]
    first = sizes[0]
    largest = max(sizes, key=lambda entry: entry["size"])
    text += (
        f"\n\nverify p50 at {largest['size']:,} / at {first['size']:,}: "
        f"{largest['p50_us'] / first['p50_us']:.2f}; floor p50: "
        f"{largest['floor_p50_us'] / first['floor_p50_us']:.2f} "
        f"({result['samples']} verifies and {result['samples']} floor updates per size, "
        "interleaved)"
    )
    plans = largest.get("plans")
    if plans:
        text += "\n\nPlans at the largest size:\n\n```\n" + plans["select"] + "\n\n"
        text += plans["update"] + "\n```"
    return text


def render_provider(results: list[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        db = "PostgreSQL" if result["db"] == "postgresql" else "SQLite"
        t = result["timings"]
        rows.append(
            [
                db,
                result["sends"],
                f"{result['connections_total']} ({result['connections_during_run']} new)",
                us(t["raw HTTP"]["p50_us"]),
                us(t["provider.send"]["p50_us"]),
                us(t["flows request"]["p50_us"]),
                us(result["provider_layer_overhead_us"]),
                us(result["app_overhead_us"]),
            ]
        )
    headers = [
        "DB",
        "sends",
        "TCP connections (new in the timed part)",
        "raw HTTP p50 µs",
        "provider.send p50 µs",
        "flows request p50 µs",
        "provider layer adds µs",
        "app adds µs",
    ]
    note = (
        "\n\nThe connections: one for the provider (the flows and `provider.send` use the "
        "same cached instance) and one for the bare client, both opened in the warm-up."
    )
    return table(headers, rows) + note


def render_load(result: dict[str, Any] | None) -> str:
    if not result:
        return "(not run)"
    steps = result["steps"]
    rows = [
        [
            result["workers"],
            result["clients"],
            f"{result['cycles_done']}/{result['cycles_planned']}",
            result["seconds"],
            result["cycles_per_s"],
            f"{steps['request']['p50_ms']:.0f} / {steps['request']['p99_ms']:.0f}",
            f"{steps['verify']['p50_ms']:.0f} / {steps['verify']['p99_ms']:.0f}",
            result["error_count"] + sum(result["unexpected"].values()),
        ]
    ]
    headers = [
        "gunicorn workers",
        "clients",
        "cycles",
        "seconds",
        "cycles/s",
        "request p50/p99 ms",
        "verify p50/p99 ms",
        "errors + non-2xx",
    ]
    check = result["limit_check"]
    return (
        table(headers, rows)
        + f"\n\nAnswers: {result['statuses']}; provider connections: "
        + f"{result['provider_connections']}.\n\nExact limit across workers: "
        + f"{check['attempts']} simultaneous requests for one phone with a limit of "
        + f"{check['phone_limit']} -> {check['answers']}."
    )


def render() -> str:
    steps = [r for r in (load("steps-sqlite.json"), load("steps-postgres.json")) if r]
    providers = [r for r in (load("provider-sqlite.json"), load("provider-postgres.json")) if r]
    meta = load("meta.json")
    machine = (
        f"Machine: {meta['cpus']} CPUs; load average {meta['load_before'][0]:.1f} before "
        f"and {meta['load_after'][0]:.1f} after the run ({meta['minutes']:.0f} min)."
        if meta
        else ""
    )
    parts = [
        machine,
        "### Steps: SQL, time, operations per second, ratio to the floor",
        render_steps(steps),
        "### Statements of each step (the same on both databases)",
        render_login_statements(steps),
        "### Verify at 10k and at 1M challenges (PostgreSQL)",
        render_scale(load("scale-postgres.json")),
        "### Provider HTTP (GoSMS on a loopback fake)",
        render_provider(providers),
        "### Load: the example site under gunicorn (PostgreSQL + Redis)",
        render_load(load("load-postgres.json")),
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.render_only:
        run_all()
    text = render()
    (DATA / "tables.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
