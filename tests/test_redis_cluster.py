"""The limits on a 3-primary Redis Cluster (docs/howto/redis-cluster.md).

A cluster of three ``redis-server --cluster-enabled yes`` on loopback ports
7301–7303 (tests/cluster_support.py), started once for the module; each test
points ``SMS2FA["CACHE"]`` at a ``RedisClusterCache`` alias on it.

* each key's hash tag is what it counts, so one step's keys sit in several
  slots and nodes, while every script touches one slot;
* the limit tests of the single-Redis suite pass here unchanged (imported below:
  cooldown, windows, give-back, lockout, breaker trip, password lock);
* 40 concurrent racers against a per-phone and a site-wide limit at once: never
  more than either limit, no count leaked, exactly the limit over the window;
* a refusal by one slot's script gives back what another slot's script took
  (windows, cooldowns, the breaker's count and trip);
* the round trips of each step, counted on the sockets (at most 2);
* a script the node lost (``SCRIPT FLUSH``) is loaded again; a node down is 503.

Runs in the Redis pass (``SMS2FA_TEST_DB=postgres``); needs ``redis-server``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis.connection

from django.core.cache import caches

from django_sms2fa import flows, ratelimit
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import (
    DestinationSuspended,
    LimitsUnavailable,
    RateLimited,
    VerificationLocked,
)
from django_sms2fa.models import Purpose
from django_sms2fa.ratelimit_cluster import _BODIES as BODIES
from django_sms2fa.ratelimit_cluster import ClusterScripts
from django_sms2fa.redis_cluster import RedisClusterCache

from .cluster_support import ClusterServers

# The single-Redis suite's limit tests, run again here on the cluster (pytest
# collects them in this module, under its fixtures: the cluster is the cache).
from .test_limits_scripts import (  # noqa: F401
    test_a_lock_written_by_a_guess_is_read_and_cleared_by_generic_calls,
    test_a_refusal_by_a_later_limit_leaves_nothing_taken,
    test_a_right_guess_clears_the_count_in_its_own_round_trip,
    test_a_send_no_provider_took_gives_its_breaker_count_back,
    test_the_lockout_refuses_a_send_before_any_limit_is_taken,
)
from .test_lockout import (  # noqa: F401
    device,
    test_counts_per_phone_where_there_is_no_account,
    test_the_lock_grows_with_each_failure,
    test_wrong_4_resend_wrong_4_resend_wrong_2_locks_with_a_count_of_10,
)
from .test_password_guessing import (  # noqa: F401
    test_a_burst_of_concurrent_guesses_is_judged_at_most_threshold_times,
    test_a_right_password_resets_the_username_count,
    test_one_ip_spraying_many_usernames_is_locked,
    test_ten_wrong_passwords_lock_the_username_even_for_the_right_one,
)
from .test_seams_breaker import (  # noqa: F401
    alarms,
    defaults,
    test_a_pump_trips_its_prefix_and_nothing_else,
    test_numbers_that_verified_before_do_not_count,
)
from .test_send_limits import (  # noqa: F401
    NO_LIMITS,
    PHONE,
    frozen,
    mobiles,
    test_a_refusal_by_the_global_cap_gives_back_every_earlier_limit,
    test_a_refusal_by_the_ip_limit_gives_back_the_phone_limit,
    test_each_limit_refuses_before_any_provider_or_row,
    test_second_send_within_30_seconds_is_refused,
    test_sixth_send_in_ten_minutes_is_refused,
    via,
)

pytestmark = [pytest.mark.django_db, pytest.mark.redis_topology]

ALIAS = "cluster"
RACERS = 40


@pytest.fixture(scope="module")
def servers() -> Iterator[ClusterServers]:
    with ClusterServers() as started:
        yield started


@pytest.fixture(autouse=True)
def on_cluster(servers, settings, sms2fa_settings) -> ClusterServers:
    """The limits cache is the cluster, emptied (the suite's own cache stays the default)."""
    servers.wait_ok()
    settings.CACHES = {**settings.CACHES, ALIAS: servers.cache_config()}
    sms2fa_settings(CACHE=ALIAS)
    caches[ALIAS].clear()
    return servers


def cache() -> RedisClusterCache:
    backend = caches[ALIAS]
    assert isinstance(backend, RedisClusterCache)
    return backend


def cluster_scripts() -> ClusterScripts:
    scripts = ratelimit._scripts()
    assert isinstance(scripts, ClusterScripts), scripts
    return scripts


def made(key: str) -> str:
    return str(cache().make_key(key))


def server_slot(servers: ClusterServers, key: str) -> int:
    """The slot the cluster itself gives the key (``CLUSTER KEYSLOT``)."""
    return int(servers.node(servers.ports[0]).execute_command("CLUSTER", "KEYSLOT", made(key)))


def count(key: str) -> int:
    return int(cache().get(key) or 0)


def window(scope: str, rate: str, subject: str) -> str:
    parsed = ratelimit.parse_rate(rate)
    return ratelimit._key(
        "win", scope, parsed.seconds, int(ratelimit.time.time() // parsed.seconds), subject
    )


# ------------------------------------------------------------------ the backend


def test_the_backend_and_the_scripts_are_the_cluster_ones(servers):
    assert isinstance(caches[ALIAS]._cache.get_client(), redis.RedisCluster)
    cluster_scripts()
    with pytest.raises(Exception, match="only database 0"):
        RedisClusterCache("redis://127.0.0.1:7301/3", {})
    with pytest.raises(Exception, match="redis:// or rediss://"):
        RedisClusterCache("http://127.0.0.1:7301", {})


def test_many_key_calls_work_across_slots(servers):
    """The generic calls the admin and the tools use, on keys of many slots."""
    backend = cache()
    keys = [f"generic-{n}" for n in range(12)]
    assert len({server_slot(servers, key) for key in keys}) > 3
    backend.set_many({key: n for n, key in enumerate(keys)}, timeout=60)
    assert backend.get_many(keys) == {key: n for n, key in enumerate(keys)}
    assert backend.incr(keys[3], 10) == 13
    with pytest.raises(ValueError):
        backend.incr("generic-missing")
    assert backend.get("generic-missing") is None  # incr did not create it
    assert backend.add(keys[0], 99) is False and backend.get(keys[0]) == 0
    backend.delete_many(keys[:6])
    assert backend.get_many(keys) == {key: n for n, key in enumerate(keys) if n >= 6}
    backend.clear()
    assert backend.get_many(keys) == {}


# --------------------------------------------------------------- the hash tags


def record_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, list[str]]]]:
    """Every batch the cluster runner sends: [(script, keys)] per batch."""
    batches: list[list[tuple[str, list[str]]]] = []
    run_batch = ClusterScripts.run_batch

    def recording(self, calls, **kwargs):
        batches.append([(name, list(keys)) for name, keys, _args in calls])
        return run_batch(self, calls, **kwargs)

    monkeypatch.setattr(ClusterScripts, "run_batch", recording)
    return batches


def test_one_sends_keys_spread_over_slots_and_nodes_one_slot_per_script(
    servers, sms2fa_settings, monkeypatch
):
    """A send's lockout, breaker and per-scope limits sit in several slots on
    several nodes; each script's keys are all in one slot (the cluster itself
    says so: ``CLUSTER KEYSLOT``)."""
    sms2fa_settings(
        LIMITS={
            "phone": ["1/30s", "5/10m"],
            "ip": ["20/h"],
            "user": ["10/d"],
            "country": ["1000/h"],
            "global": ["5000/h"],
        }
    )
    batches = record_calls(monkeypatch)
    phone = "+46701234567"
    ratelimit.guard_send(
        lock_subject="user:7",
        breaker_prefix=ratelimit.number_prefix(phone),
        takes=[
            ("phone", f"password:{phone}"),
            ("ip", "203.0.113.9"),
            ("user", "7"),
            ("country", "SE"),
            ("global", "all"),
        ],
        pump=ratelimit.PumpCount(phone, ratelimit.number_prefix(phone), False, 0.0),
    )
    [batch] = batches  # one batch: one round trip
    slots = []
    for _name, keys in batch:
        [slot] = {server_slot(servers, key) for key in keys}
        assert slot == cluster_scripts().slot(keys[0])  # the runner's slot is the server's
        slots.append(slot)
    nodes = {servers.port_of_slot(slot) for slot in slots}
    print(f"\n[cluster] one send: {len(batch)} scripts, slots {slots}, nodes {sorted(nodes)}")
    # lockout, breaker (check and count), phone, ip, user, country, global:
    # seven tags; two of them may share a slot only by chance of the hash.
    assert len(set(slots)) == len(batch) >= 6
    assert len(nodes) >= 2


# ------------------------------------------------------------- the round trips


class RoundTrips:
    """Counts round trips on the sockets: a write after a read (or first) starts
    one. A pipelined batch writes to every node before it reads any: one round
    trip, however many nodes. Connection handshakes are not counted (once per
    pooled connection, not per step)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trips = 0
        self.writes = 0
        self._writing = False
        self._handshake = False
        base = redis.connection.AbstractConnection
        send, read, on_connect = base.send_packed_command, base.read_response, base.on_connect
        counter = self

        def counting_send(conn, command, *args, **kwargs):
            if not counter._handshake:
                counter.writes += 1
                if not counter._writing:
                    counter.trips += 1
                counter._writing = True
            return send(conn, command, *args, **kwargs)

        def counting_read(conn, *args, **kwargs):
            if not counter._handshake:
                counter._writing = False
            return read(conn, *args, **kwargs)

        def quiet_connect(conn, *args, **kwargs):
            counter._handshake = True
            try:
                return on_connect(conn, *args, **kwargs)
            finally:
                counter._handshake = False

        monkeypatch.setattr(base, "send_packed_command", counting_send)
        monkeypatch.setattr(base, "read_response", counting_read)
        monkeypatch.setattr(base, "on_connect", quiet_connect)

    @contextmanager
    def measure(self, step: str, into: dict[str, tuple[int, int]]) -> Iterator[None]:
        self.trips, self.writes, self._writing = 0, 0, False
        yield
        into[step] = (self.trips, self.writes)


def test_round_trips_per_step(servers, sms2fa_settings, monkeypatch):
    """At most two round trips per step; one on every pass path but a right
    code counted for the breaker (its count waits for the guess's admission)."""
    sms2fa_settings(LIMITS={**NO_LIMITS, "phone": ["1/h"], "ip": ["3/h"], "global": ["100/h"]})
    phone = "+46701234567"
    prefix = ratelimit.number_prefix(phone)
    # The client's start (the slot map), each node's first connection and its
    # first sight of each script (NOSCRIPT: one more round trip, once per node
    # and script — see test_a_node_that_lost_its_scripts_gets_them_again) are
    # not a step's: warm them.
    for key in [f"warm-{n}" for n in range(20)]:
        cache().get(key)
    for body in BODIES.values():
        cache()._cache.get_client().script_load(body)  # on every primary
    counter = RoundTrips(monkeypatch)
    trips: dict[str, tuple[int, int]] = {}

    def send(ip: str, to: str = phone) -> ratelimit.SendTicket:
        return ratelimit.guard_send(
            lock_subject=f"phone:{to}",
            breaker_prefix=prefix,
            takes=[("phone", to), ("ip", ip), ("global", "all")],
            pump=ratelimit.PumpCount(to, prefix, False, ratelimit.time.time()),
        )

    with frozen():
        with counter.measure("send guard, passes", trips):
            send("192.0.2.1")
        with (
            counter.measure("send guard, refused (phone: its cooldown)", trips),
            pytest.raises(RateLimited),
        ):
            send("192.0.2.2")
        subject = "user:trips"
        with counter.measure("reserve, wrong code", trips):
            guess = ratelimit.reserve_guess(subject)
        with counter.measure("settle, wrong", trips):
            ratelimit.settle_wrong(guess)
        verified = ratelimit.PumpCount(phone, prefix, False, ratelimit.time.time())
        assert cluster_scripts().slot(ratelimit._key("fail-n", subject)) != cluster_scripts().slot(
            ratelimit._key("pump-ok", "prefix", prefix, 0)
        )
        with counter.measure("reserve, right code (with the breaker's count)", trips):
            ratelimit.reserve_guess(subject, right=True, verified=verified)
        with counter.measure("reserve, right code (no breaker count)", trips):
            ratelimit.reserve_guess(subject, right=True)
        guess = ratelimit.reserve_guess(subject)
        with counter.measure("settle, right (with the breaker's count)", trips):
            ratelimit.settle_right(guess, verified=verified)
        # The username's count and the IP's on two nodes.
        ip = apart_from(servers, ("password", "alice"), "password_ip")
        with counter.measure("password take", trips):
            guess = ratelimit._take_password_guess("alice", ip, now=None)
        with counter.measure("password give-back (a right password)", trips):
            ratelimit._give_back_password_guess(guess, clear=guess.username_key)
        ip = apart_from(servers, ("password", "bob"), "password_ip")
        for n in range(app_settings.PASSWORD_LOCKOUT["IP_THRESHOLD"]):
            with ratelimit.password_guess(f"user{n}", ip) as attempt:
                attempt.right = False
        with (
            counter.measure("password take, refused (IP locked)", trips),
            pytest.raises(RateLimited),
        ):
            with ratelimit.password_guess("bob", ip):
                pass
    for step, (round_trips, writes) in trips.items():
        print(f"\n[cluster round trips] {step}: {round_trips} ({writes} socket writes)")
    assert {step: t for step, (t, _w) in trips.items()} == {
        "send guard, passes": 1,
        "send guard, refused (phone: its cooldown)": 2,
        "reserve, wrong code": 1,
        "settle, wrong": 1,
        "reserve, right code (with the breaker's count)": 2,
        "reserve, right code (no breaker count)": 1,
        "settle, right (with the breaker's count)": 1,
        "password take": 1,
        "password give-back (a right password)": 1,
        "password take, refused (IP locked)": 2,
    }
    # Several nodes written in each of these one-round-trip batches.
    assert trips["send guard, passes"][1] == 3
    assert trips["password take"][1] == 2
    assert trips["password give-back (a right password)"][1] == 2


def apart_from(servers: ClusterServers, first: tuple[str, str], scope: str) -> str:
    """A subject of ``scope`` whose password count is on another node than ``first``'s."""
    node = servers.port_of_slot(cluster_scripts().slot(ratelimit._key("pw-n", *first)))
    for n in range(100):
        subject = f"ip:192.0.2.{n}"
        key = ratelimit._key("pw-n", scope, subject)
        if servers.port_of_slot(cluster_scripts().slot(key)) != node:
            return subject
    raise AssertionError("no subject on another node")  # pragma: no cover


# ---------------------------------------------------------------- give-back


def test_a_refusal_by_one_slot_gives_back_what_the_others_took(sms2fa_settings):
    """The IP's window refuses in its slot; the phone's cooldown and window, the
    site's window and the breaker's count (and trip) of this send, taken in
    other slots in the same batch, go back."""
    sms2fa_settings(
        LIMITS={**NO_LIMITS, "phone": ["1/30s", "5/h"], "ip": ["1/h"], "global": ["10/h"]},
        # The first send to a never-verified number trips the breaker.
        PUMPING={"MIN_SENDS": 1, "MIN_VERIFIED_RATIO": 1.0},
    )
    first, second = mobiles(2)
    prefix = ratelimit.number_prefix(second)
    scripts = cluster_scripts()
    with frozen():
        ratelimit.guard_send(
            lock_subject="a", breaker_prefix=None, takes=[("ip", "ip-1"), ("global", "all")]
        )
        keys = {
            "cooldown": ratelimit._key("cool", "phone", 30, second),
            "phone": window("phone", "5/h", second),
            "ip": ratelimit._key("cool", "ip", 3600, "ip-1"),  # a rate of one: a cooldown
            "global": window("global", "10/h", "all"),
            "sent": ratelimit._key(
                "pump-sent", "prefix", prefix, ratelimit._bucket(ratelimit.time.time())
            ),
            "open": ratelimit._key("pump-open", "prefix", prefix),
            "known": ratelimit._key("pump-known", second),
        }
        assert len({scripts.slot(key) for key in keys.values()}) >= 4
        before = {name: cache().get(key) for name, key in keys.items()}
        assert before["ip"] is not None and before["global"] == 1
        with pytest.raises(RateLimited) as refused:
            ratelimit.guard_send(
                lock_subject="b",
                breaker_prefix=prefix,
                takes=[("phone", second), ("ip", "ip-1"), ("global", "all")],
                pump=ratelimit.PumpCount(second, prefix, False, ratelimit.time.time()),
            )
        assert refused.value.context["limit"] == "ip"
        after = {name: cache().get(key) for name, key in keys.items()}
        assert after == {**before, "phone": 0, "global": 1, "sent": 0}, after
        assert after["cooldown"] is None and after["open"] is None and after["known"] is None
        # And the number can be sent to from another IP at once: nothing of it was kept.
        ticket = ratelimit.guard_send(
            lock_subject="b",
            breaker_prefix=prefix,
            takes=[("phone", second), ("ip", "ip-2"), ("global", "all")],
            pump=ratelimit.PumpCount(second, prefix, False, ratelimit.time.time()),
        )
        assert ticket.tripped  # its own count trips it now
        assert count(keys["global"]) == 2 and count(keys["phone"]) == 1


def test_the_same_refusal_as_on_one_redis_whichever_slot_answers(sms2fa_settings):
    """Lockout, then breaker, then the takes in order, though each is in its own
    slot and every slot refuses at once."""
    sms2fa_settings(LIMITS={**NO_LIMITS, "ip": ["2/h"], "user": ["2/h"], "global": ["2/h"]})
    prefix = "+467012"
    takes = [("ip", "i"), ("user", "u"), ("global", "all")]
    with frozen():
        scripts = cluster_scripts()
        slots = {scripts.slot(window(scope, "2/h", subject)) for scope, subject in takes}
        slots |= {
            scripts.slot(ratelimit._key("fail-s", "y")),
            scripts.slot(ratelimit._key("pump-open", "prefix", prefix)),
        }
        assert len(slots) == 5  # each refusal below comes from its own slot
        for _ in range(2):
            ratelimit.guard_send(lock_subject="x", breaker_prefix=None, takes=takes)
        with pytest.raises(RateLimited) as refused:
            ratelimit.guard_send(lock_subject="y", breaker_prefix=prefix, takes=takes[::-1])
        assert refused.value.context["limit"] == "global"  # the first in order
        with pytest.raises(RateLimited) as refused:
            ratelimit.guard_send(lock_subject="y", breaker_prefix=prefix, takes=takes)
        assert refused.value.context["limit"] == "ip"
        cache().set(
            ratelimit._key("pump-open", "prefix", prefix),
            ratelimit._ms(ratelimit.time.time() + 600),
            600,
        )
        with pytest.raises(DestinationSuspended):
            ratelimit.guard_send(lock_subject="y", breaker_prefix=prefix, takes=takes)
        for _ in range(app_settings.LOCKOUT_THRESHOLD):
            ratelimit.record_failure("y")
        with pytest.raises(VerificationLocked) as locked:
            ratelimit.guard_send(lock_subject="y", breaker_prefix=prefix, takes=takes)
        assert locked.value.context["limit"] == "lockout"
        # Nothing was taken by the refused sends: the counts are the first two sends'.
        for scope, subject in takes:
            assert count(window(scope, "2/h", subject)) == 2


def test_a_right_code_counts_for_the_breaker_only_once_admitted():
    """The breaker's count of a verification is in the prefix's slot, the guess's
    count in the subject's: the count is made after the guess was admitted, so
    a right code refused by the lock is not counted."""
    subject, phone = "user:admitted", "+46701234567"
    prefix = ratelimit.number_prefix(phone)
    scripts = cluster_scripts()
    with frozen():
        verified = ratelimit.PumpCount(phone, prefix, False, ratelimit.time.time())
        ok_key = ratelimit._key("pump-ok", "prefix", prefix, ratelimit._bucket(verified.sent_at))
        known_key = ratelimit._key("pump-known", phone)
        assert scripts.slot(ratelimit._key("fail-n", subject)) != scripts.slot(ok_key)
        assert scripts.slot(known_key) == scripts.slot(ok_key)
        for _ in range(app_settings.LOCKOUT_THRESHOLD):
            ratelimit.record_failure(subject)
        with pytest.raises(ratelimit.LockRunning):
            ratelimit.reserve_guess(subject, right=True, verified=verified)
        assert count(ok_key) == 0 and cache().get(known_key) is None
        ratelimit.reset_failures(subject)
        assert ratelimit.reserve_guess(subject, right=True, verified=verified).settled
        assert count(ok_key) == 1 and cache().get(known_key) == 1
        # Proved now: its next verification is not counted again.
        ratelimit.reserve_guess(subject, right=True, verified=verified)
        assert count(ok_key) == 1


# ------------------------------------------------------------------ the race


def test_forty_racers_against_a_phone_limit_and_a_site_limit(sms2fa_settings):
    """40 threads at once, 10 per number, against "3/h" per phone and "8/h" for
    the site (different slots, on different nodes): never more than either
    limit; after the burst every count equals what passed (nothing leaked, the
    refused ones' takes went back); and over the window exactly 8 pass.

    A take in one slot and a refusal in another are one round trip apart, so in
    the burst a racer can find the site's count full of takes about to be given
    back (refused a moment too early, never let through): what passes in the
    burst alone can be under 8; over the window it is exactly 8."""
    sms2fa_settings(LIMITS={**NO_LIMITS, "phone": ["3/h"], "global": ["8/h"]})
    phones = mobiles(4, base="+46705")
    scripts = cluster_scripts()
    assert scripts.slot(window("phone", "3/h", phones[0])) != scripts.slot(
        window("global", "8/h", "all")
    )
    passed: list[str] = []
    refused: list[str] = []
    failed: list[BaseException] = []
    barrier = threading.Barrier(RACERS)
    lock = threading.Lock()

    def send(phone: str) -> bool:
        try:
            ratelimit.guard_send(
                lock_subject=f"phone:{phone}",
                breaker_prefix=None,
                takes=[("phone", phone), ("global", "all")],
            )
        except RateLimited as err:
            assert err.context["limit"] in ("phone", "global")
            return False
        return True

    def racer(phone: str) -> None:
        try:
            caches[ALIAS].get("warm-up")  # this thread's client and connections, before the start
            ratelimit._scripts()
            barrier.wait()
            ok = send(phone)
        except BaseException as err:  # noqa: BLE001 - reported below
            with lock:
                failed.append(err)
            return
        with lock:
            (passed if ok else refused).append(phone)

    with frozen():
        threads = [threading.Thread(target=racer, args=(phones[n % 4],)) for n in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failed, failed
        burst = len(passed)
        per_phone = {phone: passed.count(phone) for phone in phones}
        # Never more than a limit, and no count leaked: each equals what passed.
        assert burst + len(refused) == RACERS
        assert burst <= 8 and all(n <= 3 for n in per_phone.values()), per_phone
        assert count(window("global", "8/h", "all")) == burst
        for phone in phones:
            assert count(window("phone", "3/h", phone)) == per_phone[phone]
        # The rest of the window: one at a time, each number until it is refused.
        for phone in phones:
            while send(phone):
                passed.append(phone)
        print(f"\n[cluster race] {RACERS} racers: {burst} passed at once, {len(passed)} in all")
        assert len(passed) == 8
        assert all(passed.count(phone) <= 3 for phone in phones)
        assert count(window("global", "8/h", "all")) == 8


# -------------------------------------------------------------- lost scripts


def test_a_node_that_lost_its_scripts_gets_them_again(servers, sms2fa_settings, monkeypatch):
    """After a ``SCRIPT FLUSH`` (a restart, a failover) a script is sent again
    with ``EVAL``, which loads it on its node: one more round trip, the first
    time each script meets each node again; the counts stay exact."""
    sms2fa_settings(LIMITS={**NO_LIMITS, "phone": ["2/h"], "ip": ["5/h"]})
    takes = [("phone", PHONE), ("ip", "ip-flush")]
    with frozen():
        ratelimit.guard_send(lock_subject="f", breaker_prefix=None, takes=takes)
        for port in servers.ports:
            servers.node(port).script_flush()
        counter = RoundTrips(monkeypatch)
        trips: dict[str, tuple[int, int]] = {}
        with counter.measure("after the flush", trips):
            ratelimit.guard_send(lock_subject="f", breaker_prefix=None, takes=takes)
        with counter.measure("refused: its give-back's script reloaded", trips):
            with pytest.raises(RateLimited):
                ratelimit.guard_send(lock_subject="f", breaker_prefix=None, takes=takes)
        with counter.measure("refused, every script loaded", trips):
            with pytest.raises(RateLimited):
                ratelimit.guard_send(lock_subject="f", breaker_prefix=None, takes=takes)
        assert count(window("phone", "2/h", PHONE)) == 2
        assert count(window("ip", "5/h", "ip-flush")) == 2
    print(f"\n[cluster round trips] after SCRIPT FLUSH: {trips}")
    assert {step: t for step, (t, _w) in trips.items()} == {
        "after the flush": 2,
        "refused: its give-back's script reloaded": 3,
        "refused, every script loaded": 2,  # the batch and its give-back
    }


def test_limits_wait_replicas_waits_on_each_node_in_the_same_round_trip(
    sms2fa_settings, monkeypatch
):
    """With ``LIMITS_WAIT_REPLICAS`` each batch ends with a ``WAIT`` on every
    node it wrote to, in the same round trip; these primaries have no replica,
    so none acknowledges, and the step is refused with 503, never let through."""
    sms2fa_settings(LIMITS={**NO_LIMITS, "phone": ["5/h"], "global": ["100/h"]})
    takes = [("phone", PHONE), ("global", "all")]
    for body in BODIES.values():
        cache()._cache.get_client().script_load(body)
    with frozen():
        ratelimit.guard_send(lock_subject="w", breaker_prefix=None, takes=takes)
        sms2fa_settings(LIMITS_WAIT_REPLICAS=1, LIMITS_WAIT_TIMEOUT=0.01)
        counter = RoundTrips(monkeypatch)
        trips: dict[str, tuple[int, int]] = {}
        with counter.measure("waited", trips), pytest.raises(LimitsUnavailable):
            ratelimit.guard_send(lock_subject="w", breaker_prefix=None, takes=takes)
        assert trips["waited"][0] == 1
        # The refused step's counts stay (the safe side), as on Sentinel.
        assert count(window("phone", "5/h", PHONE)) == 2


# ---------------------------------------------------------------- a node down


def port_of(servers: ClusterServers, key: str) -> int:
    return servers.port_of_slot(cluster_scripts().slot(key))


def test_a_script_that_fails_gives_back_what_the_others_took(sms2fa_settings, monkeypatch):
    """One slot's script cannot run (its node is gone between two batches):
    503, and the scripts of the other slots, which ran in the same batch, give
    back what they took."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    sms2fa_settings(LIMITS={**NO_LIMITS, "phone": ["1/30s", "3/h"], "global": ["100/h"]})
    send = ClusterScripts._send
    lost = ratelimit._key("fail-s", "phone:lost")

    def losing_one(self, calls, *, load):
        # The lockout's script is not sent at all: its node "is gone".
        kept = [call for call in calls if made(lost) not in call[1]]
        answers, waits = send(self, kept, load=load)
        results = iter(answers)
        return [
            RedisConnectionError("gone") if made(lost) in call[1] else next(results)
            for call in calls
        ], waits

    with frozen():
        takes = [("phone", PHONE), ("global", "all")]
        ratelimit.guard_send(lock_subject="phone:other", breaker_prefix=None, takes=[takes[1]])
        monkeypatch.setattr(ClusterScripts, "_send", losing_one)
        with pytest.raises(LimitsUnavailable):
            ratelimit.guard_send(lock_subject="phone:lost", breaker_prefix=None, takes=takes)
        monkeypatch.setattr(ClusterScripts, "_send", send)
        assert cache().get(ratelimit._key("cool", "phone", 30, PHONE)) is None
        assert count(window("phone", "3/h", PHONE)) == 0
        assert count(window("global", "100/h", "all")) == 1  # the first send's only


def test_a_node_down_is_503_never_a_pass(servers, sms2fa_settings, outbox):
    """A primary killed (no replica to take its slots): every step whose keys
    are on it answers LimitsUnavailable — 503 — and nothing is sent; the other
    slots keep no count of the refused sends; once the node is back the limits
    hold again."""
    import time

    sms2fa_settings(LIMITS={**NO_LIMITS, "phone": ["2/h"], "global": ["100/h"]})
    with frozen():
        phone_key, global_key = window("phone", "2/h", PHONE), window("global", "100/h", "all")
        live = {port_of(servers, phone_key), port_of(servers, global_key)}
        subject = next(
            f"phone:down-{n}"
            for n in range(200)
            if port_of(servers, ratelimit._key("fail-s", f"phone:down-{n}")) not in live
        )
        down = port_of(servers, ratelimit._key("fail-s", subject))
        takes = [("phone", PHONE), ("global", "all")]
        ratelimit.guard_send(lock_subject=subject, breaker_prefix=None, takes=takes)
        # The live nodes keep serving their slots while one is down (the
        # default stops them all once the cluster marks it failed).
        for port in servers.ports:
            servers.node(port).config_set("cluster-require-full-coverage", "no")
        servers.stop_node(down)
        try:
            started = time.monotonic()
            with pytest.raises(LimitsUnavailable):
                ratelimit.guard_send(lock_subject=subject, breaker_prefix=None, takes=takes)
            waited = time.monotonic() - started
            assert count(phone_key) == 1 and count(global_key) == 1
            with pytest.raises(LimitsUnavailable):
                flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
            assert outbox == []
        finally:
            servers.start_node(down)
            for port in servers.ports:
                servers.node(port).config_set("cluster-require-full-coverage", "yes")
            servers.wait_ok()
        print(f"\n[cluster] a node down: LimitsUnavailable after {waited:.2f} s")
        # Back (its keys are gone: nothing is saved in these tests), the limits hold.
        ratelimit.guard_send(lock_subject=subject, breaker_prefix=None, takes=takes)
        with pytest.raises(RateLimited):
            ratelimit.guard_send(lock_subject=subject, breaker_prefix=None, takes=takes)
        assert count(phone_key) == 2 and count(global_key) == 2


def test_a_node_down_through_the_api_is_the_503_error_shape(servers, client, outbox):
    down = servers.ports[1]
    servers.stop_node(down)
    try:
        # Many numbers: some send's keys are on the stopped node.
        answers = [
            client.post(
                "/api/2fa/challenges/",
                {"phone": phone, "purpose": "verify_phone"},
                content_type="application/json",
            )
            for phone in mobiles(6, base="+46706")
        ]
    finally:
        servers.start_node(down)
    statuses = [answer.status_code for answer in answers]
    assert 503 in statuses, statuses
    assert set(statuses) <= {202, 503}, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json() == {
                "error": {
                    "code": "service_unavailable",
                    "message": "The service is unavailable right now. Try again in a moment.",
                }
            }
    assert len(outbox) == statuses.count(202)
