"""Per step (request, resend, verify), through the flows and through the REST API:
SQL statements, time per operation, operations per second, and the floor.

The floor is the least work a step must do, timed in the same run on the same
database and connection: for request, the INSERT of the challenge and the
INSERT of its message; for resend, the guarded UPDATE of the challenge and the
INSERT of the new message; for verify, one guarded UPDATE. Raw SQL with
parameters built beforehand, so it holds nothing but the statements. Each
step's ratio is its median time over the floor's median time.

The floor, the flows and the API run in interleaved rounds, so that drift in
the machine's load (other processes) falls on all three alike.

    BENCH_DB=postgres python -m bench.steps --ops 1000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import secrets
import uuid
from datetime import timedelta
from typing import Any

from .common import (
    capture,
    empty_tables,
    ensure_database,
    setup_django,
    shape,
    summarize,
    timed,
    write_json,
)

PURPOSE = "verify_phone"
ROUNDS = 5
API = "/api/2fa/"
DEVICE_PHONE = "+46708000000"
PASSWORD = "bench-steps-password"  # noqa: S105 - a throw-away bench user


def phone(i: int) -> str:
    """Distinct Swedish mobile numbers (+4670 1xx xx xx), not the seeded ones."""
    return f"+4670{1_000_000 + i}"


# ---------------------------------------------------------------- statements


def statements() -> dict[str, dict[str, Any]]:
    """Every budgeted statement of each step, and how many bookkeeping ones."""
    import json as _json

    from django.contrib.auth import get_user_model
    from django.test import Client

    from django_sms2fa import flows, login_flows
    from django_sms2fa.models import PhoneDevice
    from django_sms2fa.providers import locmem

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-steps").first()
    if user is None:
        user = user_model.objects.create_user(username="bench-steps", password=PASSWORD)
    device, _ = PhoneDevice.objects.get_or_create(
        user=user, number=DEVICE_PHONE, defaults={"name": "bench", "confirmed": True}
    )
    out: dict[str, dict[str, Any]] = {}

    def keep(name: str, result: tuple[list[str], list[str]]) -> None:
        counted, bookkeeping = result
        out[name] = {
            "counted": counted,
            "shapes": [shape(s) for s in counted],
            "bookkeeping": len(bookkeeping),
        }

    holder: dict[str, Any] = {}

    def request() -> None:
        holder["c"] = flows.request_challenge(phone=phone(900_000), purpose=PURPOSE)

    keep("flows request", capture(request))
    keep("flows resend", capture(lambda: flows.resend_challenge(holder["c"].pk)))
    code = locmem.outbox[-1].code
    keep("flows verify", capture(lambda: flows.verify_challenge(holder["c"].pk, code)))

    def second_factor() -> None:
        holder["login"] = login_flows.start_second_factor(user)

    keep("flows request (login)", capture(second_factor))
    code = locmem.outbox[-1].code
    keep(
        "flows verify (login)",
        capture(lambda: login_flows.finish_second_factor(holder["login"].pk, code, user=user)),
    )

    client = Client()

    def post(path: str, data: dict[str, Any] | None = None) -> Any:
        answer = client.post(
            API + path, data=_json.dumps(data or {}), content_type="application/json"
        )
        assert answer.status_code < 300, (path, answer.status_code, answer.content[:200])
        return answer.json() if answer.content else None

    keep(
        "API request",
        capture(
            lambda: holder.update(
                api=post("challenges/", {"phone": phone(900_001), "purpose": PURPOSE})
            )
        ),
    )
    cid = holder["api"]["id"]
    keep("API resend", capture(lambda: post(f"challenges/{cid}/resend/")))
    code = locmem.outbox[-1].code
    keep("API verify", capture(lambda: post(f"challenges/{cid}/verify/", {"code": code})))
    client = Client()
    keep(
        "API request (login)",
        capture(
            lambda: holder.update(
                login_api=post("login/", {"username": "bench-steps", "password": PASSWORD})
            )
        ),
    )
    cid = holder["login_api"]["challenge"]["id"]
    code = locmem.outbox[-1].code
    keep(
        "API verify (login)",
        capture(lambda: post("login/verify/", {"challenge": cid, "code": code})),
    )
    locmem.reset()
    return out


# --------------------------------------------------------------------- floor


class Floor:
    """The minimal statements of each step, raw, on Django's own connection."""

    def __init__(self) -> None:
        from django.db import connection

        from django_sms2fa.models import Challenge, Message

        self.connection = connection
        self.Challenge, self.Message = Challenge, Message
        qn = connection.ops.quote_name
        self.challenge_fields = list(Challenge._meta.concrete_fields)
        self.message_fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
        self.insert_challenge = self._insert_sql(Challenge, self.challenge_fields)
        self.insert_message = self._insert_sql(Message, self.message_fields)
        table = qn(Challenge._meta.db_table)
        self.verify_sql = (
            f"UPDATE {table} SET attempts = attempts + 1, status = %s, verified_at = %s, "
            f"closed_at = %s WHERE id = %s AND status = %s AND attempts < max_attempts "
            f"AND expires_at > %s AND code_hash = %s"
        )
        self.resend_sql = (
            f"UPDATE {table} SET code_hash = %s, checked_by = %s, provider = %s, "
            f"expires_at = %s, last_sent_at = %s, sends = sends + 1 WHERE id = %s "
            f"AND status = %s AND code_hash = %s AND attempts < max_attempts "
            f"AND last_sent_at = %s"
        )

    def _insert_sql(self, model: Any, fields: list[Any]) -> str:
        qn = self.connection.ops.quote_name
        columns = ", ".join(qn(f.column) for f in fields)
        marks = ", ".join(["%s"] * len(fields))
        return f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES ({marks})"

    def _prep(self, fields: list[Any], obj: Any) -> list[Any]:
        return [f.get_db_prep_save(getattr(obj, f.attname), self.connection) for f in fields]

    def _value(self, model: Any, name: str, value: Any) -> Any:
        return model._meta.get_field(name).get_db_prep_value(value, self.connection)

    def run(self, first: int, n: int) -> dict[str, list[float]]:
        """Request, resend and verify floors over ``n`` fresh rows."""
        from django.utils import timezone

        Challenge, Message = self.Challenge, self.Message
        now = timezone.now()
        later = now + timedelta(seconds=300)
        rows = []
        for i in range(n):
            challenge = Challenge(
                id=uuid.uuid4(),
                phone=phone(500_000 + first + i),
                region="SE",
                purpose=PURPOSE,
                code_hash=secrets.token_hex(32),
                provider="default",
                max_attempts=5,
                sends=1,
                created_at=now,
                expires_at=later,
                last_sent_at=now,
            )
            message, new_message = (
                Message(
                    challenge_id=challenge.id,
                    phone=challenge.phone,
                    provider="default",
                    provider_message_id=uuid.uuid4().hex,
                    status="sent",
                    text_masked="Your code is ••••••",
                    created_at=now,
                    sent_at=now,
                )
                for _ in range(2)
            )
            new_hash = secrets.token_hex(32)
            ids = self._value(Challenge, "id", challenge.id)
            resend = [
                new_hash,
                "local",
                "default",
                self._value(Challenge, "expires_at", later),
                self._value(Challenge, "last_sent_at", now),
                ids,
                "pending",
                challenge.code_hash,
                self._value(Challenge, "last_sent_at", now),
            ]
            verify = [
                "verified",
                self._value(Challenge, "verified_at", now),
                self._value(Challenge, "closed_at", now),
                ids,
                "pending",
                self._value(Challenge, "expires_at", now),
                new_hash,
            ]
            rows.append(
                (
                    self._prep(self.challenge_fields, challenge),
                    self._prep(self.message_fields, message),
                    resend,
                    self._prep(self.message_fields, new_message),
                    verify,
                )
            )
        changed: list[int] = []
        with self.connection.cursor() as cursor:

            def request(row: tuple) -> None:
                cursor.execute(self.insert_challenge, row[0])
                cursor.execute(self.insert_message, row[1])

            def resend(row: tuple) -> None:
                cursor.execute(self.resend_sql, row[2])
                changed.append(cursor.rowcount)
                cursor.execute(self.insert_message, row[3])

            def verify(row: tuple) -> None:
                cursor.execute(self.verify_sql, row[4])
                changed.append(cursor.rowcount)

            out = {
                "request": timed(lambda row=row: request(row) for row in rows),
                "resend": timed(lambda row=row: resend(row) for row in rows),
                "verify": timed(lambda row=row: verify(row) for row in rows),
            }
        # Every guarded UPDATE must have found its row, or the floor is no floor.
        assert changed == [1] * (2 * n), "a floor UPDATE changed no row"
        return out


# ---------------------------------------------------------------- the steps


def flows_round(first: int, n: int) -> dict[str, list[float]]:
    from django_sms2fa import flows
    from django_sms2fa.providers import locmem

    locmem.reset()
    made: list[tuple[Any, str]] = []

    def request(i: int) -> None:
        challenge = flows.request_challenge(phone=phone(first + i), purpose=PURPOSE)
        made.append((challenge.pk, ""))

    out = {"request": timed(lambda i=i: request(i) for i in range(n))}
    codes: list[str] = []

    def resend(pk: Any) -> None:
        flows.resend_challenge(pk)
        codes.append(locmem.outbox[-1].code)

    out["resend"] = timed(lambda pk=pk: resend(pk) for pk, _ in made)
    out["verify"] = timed(
        lambda pk=pk, code=code: flows.verify_challenge(pk, code)
        for (pk, _), code in zip(made, codes, strict=True)
    )
    locmem.reset()
    return out


def api_round(first: int, n: int) -> dict[str, list[float]]:
    """The same through the REST API (Django's test client: middleware, DRF, session).

    One client owns at most 20 challenges (api/session.py), so each client
    session does 20 requests, their resends, then their verifies.
    """
    from django.test import Client

    from django_sms2fa.providers import locmem

    out: dict[str, list[float]] = {"request": [], "resend": [], "verify": []}
    for start in range(0, n, 20):
        locmem.reset()
        for step, values in _api_batch(Client(), first, range(start, min(start + 20, n))).items():
            out[step] += values
    locmem.reset()
    return out


def _api_batch(client: Any, first: int, batch: range) -> dict[str, list[float]]:
    from django_sms2fa.providers import locmem

    ids: list[str] = []
    codes: list[str] = []

    def post(path: str, data: dict[str, Any], expect: int) -> Any:
        answer = client.post(API + path, data=json.dumps(data), content_type="application/json")
        assert answer.status_code == expect, (path, answer.status_code, answer.content[:200])
        return answer

    def request(i: int) -> None:
        answer = post("challenges/", {"phone": phone(first + i), "purpose": PURPOSE}, 202)
        ids.append(answer.json()["id"])

    def resend(cid: str) -> None:
        post(f"challenges/{cid}/resend/", {}, 202)
        codes.append(locmem.outbox[-1].code)

    out = {"request": timed(lambda i=i: request(i) for i in batch)}
    out["resend"] = timed(lambda cid=cid: resend(cid) for cid in ids)
    out["verify"] = timed(
        lambda cid=cid, code=code: post(f"challenges/{cid}/verify/", {"code": code}, 200)
        for cid, code in zip(ids, codes, strict=True)
    )
    return out


def run(ops: int) -> dict[str, Any]:
    from django.db import connection

    ensure_database()
    empty_tables()
    result: dict[str, Any] = {"db": connection.vendor, "ops": ops, "statements": statements()}
    empty_tables()
    floor = Floor()
    # A short warm-up (imports, template loading, first connection, caches).
    flows_round(800_000, 20)
    api_round(810_000, 20)
    floor.run(820_000, 20)
    samples: dict[str, dict[str, list[float]]] = {"floor": {}, "flows": {}, "API": {}}
    per_round = max(ops // ROUNDS, 1)
    for r in range(ROUNDS):
        base = r * per_round
        for name, part in (
            ("floor", floor.run(base, per_round)),
            ("flows", flows_round(100_000 + base, per_round)),
            ("API", api_round(200_000 + base, per_round)),
        ):
            for step, values in part.items():
                samples[name].setdefault(step, []).extend(values)
    result["timings"] = {
        path: {step: summarize(values).as_dict() for step, values in steps.items()}
        for path, steps in samples.items()
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1000, help="operations per step and path")
    parser.add_argument("--json", help="write the results here (default: stdout)")
    args = parser.parse_args(argv)
    setup_django()
    result = run(args.ops)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
