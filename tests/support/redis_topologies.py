"""Private Redis topologies on loopback for tests: a 3-master Cluster and a Sentinel-managed master
with one replica. Each server runs on a free port in a temporary directory and is stopped (by its own
process id) afterwards; the shared Redis at 6379 is never touched."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
MISSING = None if REDIS_SERVER and REDIS_CLI else "redis-server and redis-cli are not installed (apt: redis-server)"


def free_ports(n: int) -> list[int]:
    """n distinct free ports (for a cluster node p, p+10000 must be free too: the bus port)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def cli(port: int, *args: str, timeout: float = 5.0) -> str:
    assert REDIS_CLI
    out = subprocess.run([REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True, timeout=timeout)
    return out.stdout.strip()


def wait_for(check: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class Servers:
    workdir: Path
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, port: int, *args: str, conf: str | None = None) -> subprocess.Popen[bytes]:
        assert REDIS_SERVER
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        argv = [REDIS_SERVER]
        if conf is not None:
            path = node_dir / "redis.conf"
            path.write_text(conf)
            argv.append(str(path))
        argv += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(node_dir), "--logfile", str(node_dir / "log"), *args]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs[port] = proc
        wait_for(lambda: cli(port, "ping") == "PONG", f"redis on {port}")
        return proc

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(5)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[list[int]]:
    """A Redis Cluster of `masters` masters (no replicas) on loopback; yields their ports."""
    with tempfile.TemporaryDirectory(prefix="gw-cluster-") as tmp:
        servers = Servers(Path(tmp))
        try:
            ports = free_ports(masters)
            for port in ports:
                servers.start(port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                              "--cluster-node-timeout", "2000")
            assert REDIS_CLI
            subprocess.run([REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                            "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=30)
            wait_for(lambda: all("cluster_state:ok" in cli(p, "cluster", "info") for p in ports), "cluster_state:ok")
            yield ports
        finally:
            servers.stop_all()


@dataclass
class SentinelSetup:
    servers: Servers
    master: int
    replica: int
    sentinels: list[int]
    service: str = "mymaster"

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{self.service}?db=0"

    def master_port(self) -> int:
        host_port = cli(self.sentinels[0], "sentinel", "get-master-addr-by-name", self.service).split()
        return int(host_port[1])


@contextlib.contextmanager
def redis_sentinel(sentinels: int = 1, master_args: tuple[str, ...] = ()) -> Iterator[SentinelSetup]:
    """A master, one replica and `sentinels` sentinels (quorum 1) on loopback."""
    with tempfile.TemporaryDirectory(prefix="gw-sentinel-") as tmp:
        servers = Servers(Path(tmp))
        try:
            master, replica, *sentinel_ports = free_ports(2 + sentinels)
            # No diskless-sync delay (Redis waits 5 s by default to batch replicas): a replica re-pointed
            # by a failover is in sync within a second, as docs/deployment.md recommends.
            sync = ("--repl-diskless-sync-delay", "0")
            servers.start(master, *sync, *master_args)
            servers.start(replica, *sync, "--replicaof", "127.0.0.1", str(master), "--replica-priority", "100")
            wait_for(lambda: "master_link_status:up" in cli(replica, "info", "replication"), "replication")
            conf = (f"sentinel monitor mymaster 127.0.0.1 {master} 1\n"
                    "sentinel down-after-milliseconds mymaster 1000\n"
                    "sentinel failover-timeout mymaster 5000\n"
                    "sentinel parallel-syncs mymaster 1\n")
            for port in sentinel_ports:
                servers.start(port, "--sentinel", conf=conf)
            setup = SentinelSetup(servers, master, replica, sentinel_ports)
            wait_for(lambda: all("slaves=1" in cli(p, "info", "sentinel") for p in sentinel_ports),
                     "the sentinels to see the replica")
            yield setup
        finally:
            servers.stop_all()
