"""Witnesses for the tests: a real `prov witness serve` on a loopback port, and the
independent Go verifier of cosigned checkpoints.

`start_witness` runs the witness as an operator does, in its own process, with its key and
state files in the test's directory; `Witness.kill` is kill -9 and `start` again reuses the
same port, key and state. `go_note_verifier` builds tests/go/noteverify (Go's
golang.org/x/mod/sumdb/note, and a cosignature/v1 verifier written in Go from the spec) once
per session; without `go` or Debian's golang-golang-x-mod-dev it skips, unless
PROV_REQUIRE_GO=1, when it fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.http_server import free_port, wait_ready
from tests.support import PROV, Run

GO_SOURCE = Path(__file__).parent / "go" / "noteverify"
GOPATH = Path("/usr/share/gocode")
X_MOD_NOTE = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb" / "note"
_KEY_LINE = "witness verifier key: "


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}


@dataclass
class Witness:
    """A `prov witness serve` process; `logs` are its `--log` values."""

    directory: Path
    name: str
    logs: list[str]
    port: int = field(default_factory=free_port)
    state_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    verifier_key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def entry(self) -> str:
        """This witness as a `PROV_WITNESSES` entry: its verifier key, `@`, its URL."""
        return f"{self.verifier_key}@{self.url}"

    @property
    def key_file(self) -> Path:
        return self.directory / "witness.key"

    @property
    def state(self) -> Path:
        return self.state_file or self.directory / "witness.db"

    @property
    def log_file(self) -> Path:
        return self.directory / "witness.log"

    def command(self) -> list[str]:
        logs = [arg for log in self.logs for arg in ("--log", log)]
        return [
            PROV,
            "witness",
            "serve",
            "--name",
            self.name,
            "--key-file",
            str(self.key_file),
            "--state",
            str(self.state),
            "--port",
            str(self.port),
            *logs,
        ]

    def start(self, *, timeout: float = 30.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=_env(), stdout=log, stderr=subprocess.STDOUT
            )
        wait_ready(
            f"{self.url}/healthz",
            self.process,
            lambda: self.log_file.read_text()[-2000:],
            timeout=timeout,
        )
        # The command prints its verifier key before it serves.
        printed = [
            line[len(_KEY_LINE) :]
            for line in self.log_file.read_text().splitlines()
            if line.startswith(_KEY_LINE)
        ]
        self.verifier_key = printed[-1]

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

    def add_checkpoint(self, body: bytes, client: httpx.Client | None = None) -> httpx.Response:
        if client is not None:
            return client.post(f"{self.url}/add-checkpoint", content=body)
        return httpx.post(f"{self.url}/add-checkpoint", content=body, timeout=30)

    def monitoring(self, origin: str) -> httpx.Response:
        digest = hashlib.sha256(origin.encode()).hexdigest()
        return httpx.get(f"{self.url}/{digest}/checkpoint", timeout=30)

    def checkpoint_of(self, origin: str) -> str:
        """The latest checkpoint this witness cosigned for `origin`, as its monitoring path
        serves it."""
        answer = self.monitoring(origin)
        assert answer.status_code == 200, answer.text
        return answer.text

    def show(self, *args: str) -> list[dict[str, object]]:
        """`prov witness show` on this witness's state: one dict per JSON line."""
        done = subprocess.run(
            [PROV, "witness", "show", "--state", str(self.state), *args],
            capture_output=True,
            env=_env(),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        return [msgspec.json.decode(line) for line in done.stdout.splitlines() if line]


def start_witness(
    directory: Path, name: str, logs: Sequence[str], *, state_file: Path | None = None
) -> Witness:
    """A witness named `name` following `logs` (`--log` values), started; `state_file`
    defaults to one in `directory`."""
    witness = Witness(directory, name, list(logs), state_file=state_file)
    witness.start()
    return witness


def _go_problem() -> str | None:
    if shutil.which("go") is None:
        return "`go` is not installed (Debian's golang-go)"
    if not X_MOD_NOTE.is_dir():
        return f"golang.org/x/mod/sumdb/note is not at {X_MOD_NOTE} (golang-golang-x-mod-dev)"
    return None


@pytest.fixture(scope="session")
def go_note_verifier(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, Sequence[str], str], Run]:
    """`verify(log_vkey, witness_vkeys, note)`: the Go verifier's exit status and output;
    0 only when the log's signature and every witness's cosignature verify."""
    problem = _go_problem()
    if problem is not None:
        if os.environ.get("PROV_REQUIRE_GO") == "1":
            pytest.fail(f"PROV_REQUIRE_GO=1 but {problem}")
        pytest.skip(problem)
    directory = tmp_path_factory.mktemp("noteverify")
    binary = directory / "noteverify"
    # GOPATH mode, offline: the Debian package puts x/mod's source under /usr/share/gocode.
    env = _env() | {
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(directory / "cache"),
        "GOFLAGS": "",
    }
    built = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=GO_SOURCE,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr.decode()

    def verify(log_key: str, witness_keys: Sequence[str], note: str) -> Run:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=directory, suffix=".note", delete=False
        ) as f:
            f.write(note)
        keys = [arg for key in witness_keys for arg in ("-witness", key)]
        done = subprocess.run(
            [str(binary), "-log", log_key, *keys, f.name],
            capture_output=True,
            timeout=60,
            check=False,
        )
        return Run(done.returncode, done.stdout.decode(), done.stderr.decode())

    return verify
