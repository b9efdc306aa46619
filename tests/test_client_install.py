"""The client on its own: an install without the `server` extra that signs, sends and
verifies against a live `prov serve`, and `prov verify-receipt` against a live server.

The client-only venv is built once per session from a copy of this checkout (the base
install, no extras), and the test asserts that none of the server's packages got in.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest

from ingest.client import Client, Receipt
from ledger.keys.ed25519 import load_signing_key
from ledger.keys.signing import SigningKey, save_signing_key
from ledger.log.note import NoteSigner, NoteVerifier
from ledger.log.receipt import issue_receipt
from ledger.log.sequencer import Appended
from ledger.records.decision import Model, Output
from tests.http_server import TENANT, Server
from tests.support import PROV

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "loan-underwriter"
# What the base install must not pull in: the server's dependencies.
SERVER_PACKAGES = (
    "sqlalchemy",
    "litestar",
    "uvicorn",
    "duckdb",
    "pyarrow",
    "matplotlib",
    "psycopg",
    "alembic",
)
# Everything the base install is built from; tests, .venv and caches stay out.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "ledger", "ingest", "query", "replay",
           "service", "httpapi", "migrations")  # fmt: skip

# Runs inside the client-only venv: sign, send, verify the receipt in the log, fetch and
# save a why-report, verify it offline. Prints what it found as one JSON object.
CLIENT_SCRIPT = r"""
import importlib.metadata, json, sys
from pathlib import Path

from ingest.client import Client, verify_receipt_in_log
from ledger.keys.signing import load_signing_key
from ledger.log.note import NoteVerifier
from ledger.records.decision import Model, Output
from query.audit.report_check import verify_report
from query.subjects.check import verify_subject_bundle  # the offline subject bundle check

url, ingest_key, audit_key, key_file, verifier_text, out_dir = sys.argv[1:]
verifier = NoteVerifier.parse(verifier_text)
with Client(url, ingest_key, load_signing_key(Path(key_file)), tenant="acme",
            service="loan-underwriter", verifier_key=verifier) as client:
    decision = client.new_decision(
        "loan.approve", inputs={"application": 7},
        model=Model(provider="local", name="rules", version="2026-11"),
        output=Output(decision={"approved": True}),
    )
    receipt = client.append(decision)
    in_log = client.verify_receipt(receipt)
import msgspec, httpx
saved = Path(out_dir) / "receipt.json"
saved.write_bytes(msgspec.json.encode(receipt))
again = verify_receipt_in_log(url, saved.read_bytes(), verifier, api_key=audit_key)
answer = httpx.get(f"{url}/v1/decisions/{decision.id}/why",
                   headers={"Authorization": f"Bearer {audit_key}"})
answer.raise_for_status()
report_file = Path(out_dir) / "why.json"
report_file.write_bytes(answer.content)
check = verify_report(json.loads(report_file.read_bytes()), verifier)
server_only = ("sqlalchemy", "litestar", "uvicorn", "duckdb", "pyarrow", "matplotlib",
               "psycopg", "alembic")
print(json.dumps({
    "index": receipt.index,
    "in_log_index": in_log.body.index,
    "in_log_size": in_log.checkpoint.size,
    "again_leaf": again.body.leaf_hash,
    "leaf": receipt.leaf_hash,
    "report_ok": bool(check),
    "report_steps": [[s.name, s.ok, s.detail] for s in check.steps],
    "imported": sorted(m for m in server_only if m in sys.modules),
}))
"""

INSTALLED_SCRIPT = r"""
import importlib.metadata, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
print(json.dumps({"found": found, "client": importlib.metadata.version("provenance-ledger")}))
"""


@pytest.fixture(scope="session")
def client_python(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The python of a fresh venv holding only the base install of this checkout.

    Built once per run: under xdist the workers share the parent of their temporary
    directories, and a file lock lets the first build it while the others wait.
    """
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    base = shared / "client-only"
    base.mkdir(exist_ok=True)
    with (base / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = base / "venv" / "bin" / "python"
        if not (base / "built").exists():
            _build_client_venv(base)
            (base / "built").touch()
    return python


def _build_client_venv(base: Path) -> None:
    source = base / "src"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, source / name)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _register(server: Server, key: SigningKey) -> None:
    answer = httpx.post(
        f"{server.url}/v1/keys",
        json={"service": SERVICE, "public_key": key.public_key.hex()},
        headers=server.auth(server.admin_key),
    )
    assert answer.status_code == 201, answer.text


def _ledger_signer(server: Server) -> NoteSigner:
    """The ledger's note signer, from its key file: the trust anchor comes from the operator,
    not from what the server says about itself (only its origin is read from it)."""
    origin = httpx.get(f"{server.url}/v1/log", headers=server.auth(server.admin_key))
    return NoteSigner(origin.json()["origin"], load_signing_key(server.key_file))


def _verifier_text(server: Server) -> str:
    return _ledger_signer(server).verifier.encode()


@pytest.mark.slow
def test_client_only_install_signs_sends_and_verifies(
    client_python: Path, server: Server, tmp_path: Path
) -> None:
    installed = subprocess.run(
        [str(client_python), "-c", INSTALLED_SCRIPT, *SERVER_PACKAGES],
        capture_output=True,
        text=True,
        check=True,
    )
    packages = json.loads(installed.stdout)
    assert packages["found"] == {}, f"server packages in the client install: {packages}"
    assert packages["client"] == "0.1.0"

    key = SigningKey.generate()
    _register(server, key)
    key_file = tmp_path / "service.key"
    save_signing_key(key, key_file)
    ran = subprocess.run(
        [
            str(client_python),
            "-c",
            CLIENT_SCRIPT,
            server.url,
            server.api_key("ingest"),
            server.api_key("audit"),
            str(key_file),
            _verifier_text(server),
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: the venv's own copy is what gets imported
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    found = json.loads(ran.stdout)
    assert found["in_log_index"] == found["index"]
    assert found["in_log_size"] > found["index"]
    assert found["again_leaf"] == found["leaf"]
    assert found["report_ok"], found["report_steps"]
    assert found["imported"] == []
    # The report the client saved is the server's own for this record.
    report = json.loads((tmp_path / "why.json").read_bytes())
    assert report["evidence"]["entry"]["index"] == found["index"]


@dataclass
class Appended1:
    receipt: Receipt
    verifier: str
    api_key: str


def _append_one(server: Server) -> Appended1:
    key = SigningKey.generate()
    _register(server, key)
    verifier = _verifier_text(server)
    with Client(
        server.url,
        server.api_key("ingest"),
        key,
        tenant=TENANT,
        service=SERVICE,
        verifier_key=NoteVerifier.parse(verifier),
    ) as client:
        for n in range(3):  # a few entries, so the proof has nodes in it
            receipt = client.append(
                client.new_decision(
                    "loan.approve",
                    inputs={"application": n},
                    model=Model(provider="local", name="rules", version="2026-11"),
                    output=Output(decision={"approved": True}),
                )
            )
    return Appended1(receipt, verifier, server.api_key("audit"))


def _verify(
    receipt: bytes, tmp_path: Path, server: Server, *trust: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "receipt.json"
    path.write_bytes(receipt)
    return subprocess.run(
        [PROV, "verify-receipt", str(path), "--url", server.url, *trust],
        check=False,
        capture_output=True,
        text=True,
    )


def _forged(server: Server, good: Receipt, *, index: int, leaf_hash: bytes) -> bytes:
    """A receipt signed with the real ledger key for an entry the log does not hold."""
    signer = _ledger_signer(server)
    appended = Appended(
        index=index,
        leaf_hash=leaf_hash,
        integrated_us=1_800_000_000_000_000,
        tenant=good.tenant,
        record_id=good.id,
        envelope_digest=bytes(32),
        created=True,
    )
    return msgspec.json.encode(issue_receipt(appended, signer, signer.name))


@pytest.mark.slow
def test_verify_receipt_against_a_live_server(server: Server, tmp_path: Path) -> None:
    appended = _append_one(server)
    good = appended.receipt
    saved = msgspec.json.encode(good)
    trust = ("--verifier-key", appended.verifier, "--api-key", appended.api_key)

    done = _verify(saved, tmp_path, server, *trust)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {TENANT}/{good.id} is entry {good.index} ")

    # With an auditor's state file instead of the key: the log must extend its checkpoint.
    state = tmp_path / "audit.json"
    audited = subprocess.run(
        [PROV, "audit", "--url", server.url, "--state", str(state), *trust],
        check=False,
        capture_output=True,
        text=True,
    )
    assert audited.returncode == 0, audited.stderr
    done = _verify(saved, tmp_path, server, "--state", str(state), "--api-key", appended.api_key)
    assert done.returncode == 0, done.stderr

    def refused(receipt: bytes, *options: str) -> str:
        done = _verify(receipt, tmp_path, server, *(options or trust))
        assert done.returncode != 0
        assert done.stdout == ""
        [line] = done.stderr.splitlines()
        assert line.startswith("prov: receipt REFUSED:")
        return line

    # The clear fields altered: they no longer match the signed body.
    for field, value in (("leaf_hash", "00" * 32), ("index", good.index - 1)):
        shown = json.loads(saved) | {field: value}
        line = refused(json.dumps(shown).encode())
        assert f"{field} {value!r} in the clear differs from the signed" in line

    # Signed with the ledger's own key, for entries the log does not hold: only the
    # inclusion proof can tell, and it does.
    line = refused(_forged(server, good, index=good.index, leaf_hash=b"\x17" * 32))
    assert f"is not entry {good.index} of the log" in line
    beyond = _forged(server, good, index=good.index + 1000, leaf_hash=bytes.fromhex(good.leaf_hash))
    line = refused(beyond)
    assert f"entry {good.index + 1000} is not in the log" in line

    # Trusting another key, the genuine receipt is refused.
    stranger = NoteSigner(NoteVerifier.parse(appended.verifier).name, SigningKey.generate())
    line = refused(saved, "--verifier-key", stranger.verifier.encode(), "--api-key", "x")
    assert "is not signed by the ledger key" in line

    # And with the right trust it still verifies: each refusal was the receipt's fault.
    assert _verify(saved, tmp_path, server, *trust).returncode == 0
