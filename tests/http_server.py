"""A real `prov serve` process on a loopback port, for the HTTP tests.

The server runs as its own process, exactly as an operator starts it, against the test's
own database. An admin API key for tenant `acme` is made with the CLI before it starts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import PROV, prov

TENANT = "acme"


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    log: Callable[[], str] = lambda: "",
    *,
    timeout: float = 60.0,
    answered: Callable[[int], bool] = lambda status: status == 200,
) -> None:
    """Wait until `url` answers a status `answered` accepts (200: ready); `RuntimeError`,
    with the end of `log`, if the process exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited: {log()}")
        try:
            if answered(httpx.get(url, timeout=1).status_code):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{process.args} did not get ready at {url}: {log()}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    db_url: str
    key_file: Path
    log_file: Path
    admin_key: str
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
        return (
            env
            | {
                "PROV_DATABASE_URL": self.db_url,
                "PROV_LEDGER_KEY_FILE": str(self.key_file),
                "PROV_PORT": str(self.port),
                "PROV_LOG_LEVEL": "warning",
            }
            | self.extra_env
        )

    def start(self, *, timeout: float = 60.0) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [PROV, "serve"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        wait_ready(
            f"{self.url}/readyz",
            self.process,
            lambda: self.log_file.read_text()[-2000:],
            timeout=timeout,
        )

    def kill(self) -> None:
        """kill -9: no shutdown hook runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def api_key(self, role: str, tenant: str = TENANT) -> str:
        answer = httpx.post(
            f"{self.url}/v1/api-keys",
            json={"role": role, "name": f"test {role}"},
            headers=self.auth(self.admin_key if tenant == TENANT else self.admin_for(tenant)),
        )
        answer.raise_for_status()
        key: str = answer.json()["key"]
        return key

    def admin_for(self, tenant: str) -> str:
        return create_admin_key(self.db_url, self.key_file, tenant)

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def prepared_server(db_url: str, directory: Path, **extra_env: str) -> Server:
    """A server whose ledger is initialized and which has an admin key; not yet started."""
    key_file = directory / "ledger.key"
    assert prov(["init"], db=db_url, key=key_file).code == 0
    admin_key = create_admin_key(db_url, key_file, TENANT)
    return Server(db_url, key_file, directory / "server.log", admin_key, extra_env=extra_env)


def create_admin_key(db_url: str, key_file: Path, tenant: str) -> str:
    made = prov(
        ["api-key", "create", "--tenant", tenant, "--role", "admin"], db=db_url, key=key_file
    )
    assert made.code == 0, made.err
    return str(made.json_lines()[0]["key"])
