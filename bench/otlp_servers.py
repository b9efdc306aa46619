"""The servers `bench/otlp_peers.py` sends OTLP to, each behind one small interface.

- Arize Phoenix and MLflow's tracing server, installed from PyPI into their own venvs
  under a cache folder (once; later runs reuse them) and started on loopback ports with
  their SQLite stores in temporary folders. They are not dependencies of the project.
- `prov serve` over a fresh SQLite file or PostgreSQL database (`bench.ingest_http`).

A `Target` says where to POST, with which headers, and how to read a trace back by id
through the server's own API, so the benchmark treats every server alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench.ingest_http import free_port, process_tree, running_server
from bench.otlp_load import Trace

HOST = "127.0.0.1"
DEFAULT_PEERS_DIR = Path.home() / ".cache" / "prov-bench" / "peers"
PHOENIX_SPEC = "arize-phoenix==20.26.1"
MLFLOW_SPEC = "mlflow==3.17.2"
SPANS_PER_TRACE = 4


@dataclass
class Target:
    """One running server, as the benchmark sees it.

    `read(client, trace)` fetches a trace by id through the server's API and returns None
    while it is not (wholly) readable, else a short description; it raises if the server
    answers with something that is not the trace sent. `stored()` counts the traces the
    store holds, read from the store itself."""

    name: str
    version: str
    ingest_url: str
    headers: dict[str, str]
    root_pid: int
    read: Callable[[httpx.Client, Trace], str | None]
    stored: Callable[[], int]
    after: Callable[[], str] = field(default=lambda: "")

    def pids(self) -> list[int]:
        return process_tree(self.root_pid)


# --- the peers' venvs ---------------------------------------------------------------------


def peer_venv(folder: Path, name: str, spec: str, distribution: str) -> tuple[Path, str]:
    """The venv `folder/name` with `spec` installed (made and installed on first use), and
    the installed version of `distribution`."""
    venv = folder / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists() or marker.read_text() != spec:
        folder.mkdir(parents=True, exist_ok=True)
        if not python.exists():
            subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        print(f"  installing {spec} into {venv} (once; a few minutes)", flush=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", spec],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip install {spec} failed:\n{done.stderr[-3000:]}")
        marker.write_text(spec)
    version = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return venv, version


# --- starting and stopping a peer --------------------------------------------------------


@contextlib.contextmanager
def _process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` in its own session, so that stopping it reaches the workers it forks."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Forked workers outlive a parent that exits first; they share its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {seconds:.0f} s: {log.read_text()[-3000:]}")


def _peer_env(extra: dict[str, str]) -> dict[str, str]:
    # Nothing of this project's environment (PROV_*, the venv) leaks into a peer.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PROV_", "VIRTUAL_ENV", "PYTHON"))
    }
    return env | {"DO_NOT_TRACK": "1"} | extra


def _count(database: Path, table: str) -> int:
    """Rows of `table` in a peer's SQLite file, read-only beside the running server."""
    if not database.exists():
        return 0
    with contextlib.closing(
        sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    ) as db:
        try:
            row = db.execute(f"SELECT count(*) FROM {table}").fetchone()
        except sqlite3.OperationalError:  # the table is not made yet
            return 0
    return int(row[0])


@contextlib.contextmanager
def phoenix(peers: Path, spec: str = PHOENIX_SPEC) -> Iterator[Target]:
    """Phoenix with its default settings, its SQLite store in a temporary folder."""
    venv, version = peer_venv(peers, "phoenix", spec, "arize-phoenix")
    with tempfile.TemporaryDirectory(prefix="prov-bench-phoenix-") as folder:
        port = free_port()
        env = _peer_env(
            {
                "PHOENIX_HOST": HOST,
                "PHOENIX_PORT": str(port),
                "PHOENIX_GRPC_PORT": str(free_port()),
                "PHOENIX_WORKING_DIR": folder,
                "PHOENIX_TELEMETRY_ENABLED": "false",
            }
        )
        log = Path(folder) / "server.log"
        url = f"http://{HOST}:{port}"
        database = Path(folder) / "phoenix.db"
        with _process([str(venv / "bin" / "phoenix"), "serve"], env, log) as process:
            _wait_ready(f"{url}/healthz", process, log, 180)

            def read(client: httpx.Client, trace: Trace) -> str | None:
                answer = client.get(
                    f"{url}/v1/projects/default/spans",
                    params={"trace_id": trace.trace_id, "limit": 100},
                )
                if answer.status_code == 404:  # no project until the first span is stored
                    return None
                answer.raise_for_status()
                spans: list[dict[str, Any]] = answer.json()["data"]
                if len(spans) < SPANS_PER_TRACE:
                    return None
                ids = {span["context"]["trace_id"] for span in spans}
                if ids != {trace.trace_id}:
                    raise AssertionError(f"phoenix answered spans of {ids} for {trace.trace_id}")
                return f"{len(spans)} spans"

            yield Target(
                name="Phoenix",
                version=version,
                ingest_url=f"{url}/v1/traces",
                headers={},
                root_pid=process.pid,
                read=read,
                # Whole traces: a trace's row is there from its first span on.
                stored=lambda: _count(database, "spans") // SPANS_PER_TRACE,
            )


@contextlib.contextmanager
def mlflow(peers: Path, spec: str = MLFLOW_SPEC) -> Iterator[Target]:
    """`mlflow server` with its default settings (4 workers), a SQLite backend store."""
    venv, version = peer_venv(peers, "mlflow", spec, "mlflow")
    with tempfile.TemporaryDirectory(prefix="prov-bench-mlflow-") as folder:
        port = free_port()
        database = Path(folder) / "mlflow.db"
        env = _peer_env({"MLFLOW_DISABLE_TELEMETRY": "true"})
        log = Path(folder) / "server.log"
        url = f"http://{HOST}:{port}"
        command = [
            str(venv / "bin" / "mlflow"),
            "server",
            "--host",
            HOST,
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{database}",
            "--default-artifact-root",
            str(Path(folder) / "artifacts"),
        ]
        with _process(command, env, log) as process:
            _wait_ready(f"{url}/health", process, log, 300)
            made = httpx.post(
                f"{url}/api/2.0/mlflow/experiments/create", json={"name": "otlp-bench"}, timeout=60
            )
            made.raise_for_status()
            experiment = str(made.json()["experiment_id"])

            def read(client: httpx.Client, trace: Trace) -> str | None:
                answer = client.get(
                    f"{url}/api/3.0/mlflow/traces/get", params={"trace_id": f"tr-{trace.trace_id}"}
                )
                if answer.status_code == 404:
                    return None
                answer.raise_for_status()
                found = answer.json()["trace"]
                spans = found.get("spans") or found.get("data", {}).get("spans") or []
                if len(spans) < SPANS_PER_TRACE:
                    return None
                return f"{len(spans)} spans"

            yield Target(
                name="MLflow",
                version=version,
                ingest_url=f"{url}/v1/traces",
                headers={"x-mlflow-experiment-id": experiment},
                root_pid=process.pid,
                read=read,
                stored=lambda: _count(database, "trace_info"),
            )


# --- prov serve ---------------------------------------------------------------------------


@contextlib.contextmanager
def prov(engine_name: str, workers: int, settings: dict[str, str]) -> Iterator[Target]:
    """`prov serve` over a fresh database, sent to with an ingest key and read with the
    admin key. A trace is read back as its decision's why-report, which carries the signed
    record and the server's check of its signature."""
    with running_server(engine_name, workers, settings) as server:
        reader = {"Authorization": f"Bearer {server.admin_key}"}

        def read(client: httpx.Client, trace: Trace) -> str | None:
            answer = client.get(
                f"{server.url}/v1/decisions/{trace.decision_id}/why", headers=reader
            )
            if answer.status_code == 404:
                return None
            answer.raise_for_status()
            report = answer.json()
            decision = report["decision"]
            if decision["id"] != trace.decision_id:
                raise AssertionError(f"asked for {trace.decision_id}, got {decision['id']}")
            signature = report["verification"]["signature"]["status"]
            if signature != "valid":
                raise AssertionError(f"{trace.decision_id}: signature {signature}")
            return f"{len(decision['steps'])} steps, signature {signature}"

        def stored() -> int:
            log = httpx.get(f"{server.url}/v1/log", headers=reader, timeout=30)
            log.raise_for_status()
            return int(log.json()["tree_size"])

        def verify() -> str:
            """`prov verify --signatures` over the whole log: every record is signed."""
            done = subprocess.run(
                [
                    str(Path(sys.executable).with_name("prov")),
                    "verify",
                    "--signatures",
                    "--db",
                    server.db_url,
                    "--key-file",
                    str(server.key_file),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise AssertionError(f"prov verify --signatures failed: {done.stderr[-2000:]}")
            size = re.search(r"size (\d+)", done.stdout)
            signed = re.search(r"(\d+) signatures", done.stdout)
            if size is None or signed is None or size[1] != signed[1]:
                raise AssertionError(f"prov verify --signatures said: {done.stdout[-500:]}")
            return f"prov verify --signatures: {int(signed[1]):,} of {int(size[1]):,} signed"

        yield Target(
            name=f"prov serve ({'SQLite' if engine_name == 'sqlite' else 'PostgreSQL'})",
            version=metadata.version("provenance-ledger"),
            ingest_url=f"{server.url}/v1/traces",
            headers={"Authorization": f"Bearer {server.ingest_key}"},
            root_pid=server.process.pid,
            read=read,
            stored=stored,
            after=verify,
        )
