"""A Redis Sentinel deployment on loopback, for the tests and ``bench/``.

One primary, one replica (``replicaof``; more with ``replica_ports``) and one
sentinel (quorum 1), each a
``redis-server`` process in a temporary directory, with short
``down-after-milliseconds`` and ``failover-timeout`` so that a failover takes
seconds. :meth:`SentinelServers.start` returns once the sentinel knows the
replica (a ``SENTINEL FAILOVER`` needs one to promote); :meth:`stop` kills
every process it started, also when a test failed half-way, and removes the
directory.

Use it as a context manager::

    with SentinelServers() as servers:
        settings.CACHES = {"limits": servers.cache_config(db=0)}
        ...
        servers.failover()
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis

from tests.redis_server_support import HOST, ServerProcesses, refuse_busy_port, wait_until

SERVICE = "sms2fa"


class SentinelServers(ServerProcesses):
    """A primary, its replicas and a sentinel; ``service`` names the primary."""

    def __init__(
        self,
        primary_port: int = 7201,
        replica_ports: tuple[int, ...] = (7202,),
        sentinel_port: int = 26401,
        *,
        service: str = SERVICE,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 4000,
    ) -> None:
        super().__init__()
        self.ports = {"primary": primary_port}
        for number, port in enumerate(replica_ports, start=1):
            self.ports[f"replica{number}"] = port
        self.replica_count = len(replica_ports)
        self.sentinel_port = sentinel_port
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._stopped = ""

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 20.0) -> SentinelServers:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise RuntimeError("redis-server is not installed (apt install redis-server)")
        self.directory = Path(tempfile.mkdtemp(prefix="sms2fa-sentinel-"))
        try:
            for port in (*self.ports.values(), self.sentinel_port):
                refuse_busy_port(port)
            self._start_server("primary", self.ports["primary"])
            for name, port in self.ports.items():
                if name != "primary":
                    self._start_server(name, port, replica_of=self.ports["primary"])
            wait_until(self._replicas_linked, timeout, "the replicas to sync with the primary")
            self._start_sentinel()
            wait_until(self.replica_known, timeout, "the sentinel to see the replica")
        except BaseException:
            self.stop()
            raise
        return self

    def _replicas_linked(self) -> bool:
        return all(
            self.node(port).info("replication").get("master_link_status") == "up"
            for name, port in self.ports.items()
            if name != "primary"
        )

    def _start_server(self, name: str, port: int, *, replica_of: int | None = None) -> None:
        assert self.directory is not None
        workdir = self.directory / name
        workdir.mkdir(exist_ok=True)
        lines = [
            f"port {port}",
            f"bind {HOST}",
            'save ""',
            "appendonly no",
            # A replica syncs at once (the default waits 5 s for more replicas).
            "repl-diskless-sync-delay 0",
            f"dir {workdir}",
            f"logfile {workdir / 'redis.log'}",
            # The old primary must be demotable by the sentinel, and any
            # server may be promoted.
            "replica-priority 100",
        ]
        if replica_of is not None:
            lines.append(f"replicaof {HOST} {replica_of}")
        self._launch(name, workdir, lines)
        wait_until(lambda: self.node(port).ping(), 10, f"redis-server on port {port}")

    def _start_sentinel(self) -> None:
        assert self.directory is not None
        workdir = self.directory / "sentinel"
        workdir.mkdir(exist_ok=True)
        lines = [
            f"port {self.sentinel_port}",
            f"bind {HOST}",
            f"dir {workdir}",
            f"logfile {workdir / 'sentinel.log'}",
            f"sentinel monitor {self.service} {HOST} {self.ports['primary']} 1",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.service} 1",
        ]
        self._launch("sentinel", workdir, lines, "--sentinel")
        wait_until(lambda: self.sentinel().ping(), 10, "the sentinel")

    def _launch(self, name: str, workdir: Path, lines: list[str], *extra: str) -> None:
        conf = workdir / "redis.conf"  # the sentinel rewrites its file: it must be writable
        conf.write_text("\n".join(lines) + "\n")
        self.processes[name] = subprocess.Popen(
            ["redis-server", str(conf), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # ------------------------------------------------------------- clients

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(HOST, port, socket_timeout=5, socket_connect_timeout=2)

    def sentinel(self) -> redis.Redis:
        return self.node(self.sentinel_port)

    def cache_config(self, db: int = 0, **options: Any) -> dict[str, Any]:
        """The ``CACHES`` entry docs/howto/redis-sentinel.md documents, for this deployment."""
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{self.service}/{db}",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [(HOST, self.sentinel_port)],
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 2,
                **options,
            },
        }

    # ------------------------------------------------------------ topology

    def primary_port(self) -> int:
        """The primary as the sentinel names it now."""
        _host, port = self.sentinel().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
        )
        return int(port)

    def replica_known(self) -> bool:
        """The sentinel lists a replica that is up and linked to the primary."""
        replicas = self.sentinel().execute_command("SENTINEL", "REPLICAS", self.service)
        for entry in replicas:
            fields = _pairs(entry)
            flags = fields.get("flags", "")
            if "s_down" not in flags and "disconnected" not in flags:
                if fields.get("master-link-status") == "ok":
                    return True
        return False

    def failover(self, timeout: float = 30.0) -> tuple[int, int]:
        """``SENTINEL FAILOVER``: returns (old primary port, new primary port)
        once the sentinel names the new primary (writes may still fail there
        for a while: see :meth:`wait_settled`)."""
        old = self.primary_port()
        self.sentinel().execute_command("SENTINEL", "FAILOVER", self.service)
        wait_until(
            lambda: self.primary_port() != old, timeout, "the sentinel to name a new primary"
        )
        return old, self.primary_port()

    def kill_primary(self, timeout: float = 30.0) -> tuple[int, int]:
        """A crash: kill the primary's process, then wait until the sentinel
        (after ``down_after_ms`` and an election) names a new primary. Returns
        (old port, new port); :meth:`restart_replica` brings the old one back."""
        old = self.primary_port()
        name = next(n for n, p in self.ports.items() if p == old)
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=10)
        self._stopped = name
        wait_until(
            lambda: self.primary_port() != old, timeout, "the sentinel to name a new primary"
        )
        return old, self.primary_port()

    def wait_settled(
        self, timeout: float = 60.0, *, sentinel_sees: bool = False, replicas: int | None = None
    ) -> int:
        """Until the primary the sentinel names has every replica online again
        (the demoted primary among them, resynced): the state in which
        ``LIMITS_WAIT_REPLICAS`` up to the number of replicas is satisfiable.
        Returns its port.

        The sentinel demotes the old primary about 10 s after the switch (it
        waits 8 s, then its next look at the instance), and learns that the
        link is up on its next look (every 10 s): ``sentinel_sees`` waits for
        that too, which a second ``SENTINEL FAILOVER`` needs. ``replicas``
        waits for that many instead of all (after :meth:`kill_primary`)."""
        wanted = self.replica_count if replicas is None else replicas

        def settled() -> bool:
            primary = self.node(self.primary_port())
            info = primary.info("replication")
            online = [
                value
                for key, value in info.items()
                if key.startswith("slave") and isinstance(value, dict)
            ]
            return (
                info.get("role") == "master"
                and sum(r.get("state") == "online" for r in online) >= wanted
                and (not sentinel_sees or self.replica_known())
            )

        wait_until(settled, timeout, f"the primary to have {wanted} replica(s) online")
        return self.primary_port()

    def stop_replica(self) -> int:
        """Kill a server that is a replica now; returns its port."""
        primary = self.primary_port()
        name, port = next((n, p) for n, p in self.ports.items() if p != primary)
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=10)
        self._stopped = name
        return port

    def restart_replica(self) -> None:
        """Start the server :meth:`stop_replica` killed, as a replica of the primary."""
        name = self._stopped
        assert self.directory is not None
        workdir = self.directory / name
        lines = (workdir / "redis.conf").read_text().splitlines()
        lines = [line for line in lines if not line.startswith("replicaof")]
        lines.append(f"replicaof {HOST} {self.primary_port()}")
        self._launch(name, workdir, lines)
        wait_until(lambda: self.node(self.ports[name]).ping(), 10, f"the {name} to restart")
        self.wait_settled()


def _pairs(entry: Any) -> dict[str, str]:
    """A ``SENTINEL REPLICAS`` entry (a flat list, or a dict on RESP3) as a dict of str."""
    if isinstance(entry, dict):
        items = entry.items()
    else:
        items = zip(entry[::2], entry[1::2], strict=True)
    return {_text(k): _text(v) for k, v in items}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
