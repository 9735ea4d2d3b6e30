"""A 3-primary Redis Cluster on loopback, for the tests and ``bench/``.

Three ``redis-server --cluster-enabled yes`` processes in a temporary
directory, joined by ``redis-cli --cluster create`` (no replicas: each primary
owns a third of the 16384 slots). :meth:`ClusterServers.start` returns once
every node reports ``cluster_state:ok``; :meth:`stop` kills every process it
started, also when a test failed half-way, and removes the directory.

Use it as a context manager::

    with ClusterServers() as servers:
        settings.CACHES = {"limits": servers.cache_config()}
        ...
        servers.stop_node(7302)  # a node down
        servers.start_node(7302)  # back, with its slots (its nodes.conf is kept)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis

from tests.redis_server_support import HOST, ServerProcesses, refuse_busy_port, wait_until

PORTS = (7301, 7302, 7303)
BACKEND = "django_sms2fa.redis_cluster.RedisClusterCache"


class ClusterServers(ServerProcesses):
    """Three cluster-enabled ``redis-server`` processes holding every slot."""

    def __init__(self, ports: tuple[int, ...] = PORTS, *, node_timeout_ms: int = 2000) -> None:
        super().__init__()
        self.ports = ports
        self.node_timeout_ms = node_timeout_ms

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> ClusterServers:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed (apt install redis-server)")
        self.directory = Path(tempfile.mkdtemp(prefix="sms2fa-cluster-"))
        try:
            for port in self.ports:
                refuse_busy_port(port)
            for port in self.ports:
                self.start_node(port, wait_cluster=False)
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"{HOST}:{port}" for port in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, port: int, *, wait_cluster: bool = True) -> None:
        """Start (or restart, after :meth:`stop_node`) the node on ``port``.

        A restarted node reads its ``nodes.conf`` back: it rejoins the cluster
        with the slots it had (their keys are gone: nothing is saved)."""
        assert self.directory is not None
        workdir = self.directory / str(port)
        workdir.mkdir(exist_ok=True)
        lines = [
            f"port {port}",
            f"bind {HOST}",
            'save ""',
            "appendonly no",
            "cluster-enabled yes",
            f"cluster-config-file {workdir / 'nodes.conf'}",
            f"cluster-node-timeout {self.node_timeout_ms}",
            f"dir {workdir}",
            f"logfile {workdir / 'redis.log'}",
        ]
        conf = workdir / "redis.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.processes[port] = subprocess.Popen(
            ["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: self.node(port).ping(), 10, f"redis-server on port {port}")
        if wait_cluster:
            self.wait_ok()

    def stop_node(self, port: int) -> None:
        """Kill the node on ``port`` (its slots have no replica to fail over to)."""
        process = self.processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says ``cluster_state:ok`` and sees every other."""

        def ok() -> bool:
            for port in self.processes:
                info = self.node(port).execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                fields = dict(
                    line.split(":", 1) for line in text.splitlines() if ":" in line.strip()
                )
                if fields.get("cluster_state", "").strip() != "ok":
                    return False
                if int(fields.get("cluster_known_nodes", 0)) < len(self.ports):
                    return False
            return True

        wait_until(ok, timeout, "cluster_state:ok on every node")

    # ------------------------------------------------------------- clients

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(HOST, port, socket_timeout=5, socket_connect_timeout=2)

    def cluster(self) -> redis.RedisCluster:
        return redis.RedisCluster(HOST, self.ports[0], socket_timeout=5)

    def location(self) -> list[str]:
        return [f"redis://{HOST}:{port}" for port in self.ports]

    def cache_config(self, **options: Any) -> dict[str, Any]:
        """The ``CACHES`` entry docs/howto/redis-cluster.md documents, for this cluster."""
        return {
            "BACKEND": BACKEND,
            "LOCATION": ",".join(self.location()),
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2, **options},
        }

    def port_of_slot(self, slot: int) -> int:
        """The port of the primary that owns ``slot`` now."""
        for start, end, primary, *_replicas in self.node(self.ports[0]).execute_command(
            "CLUSTER", "SLOTS"
        ):
            if int(start) <= slot <= int(end):
                return int(primary[1])
        raise LookupError(f"no node owns slot {slot}")
