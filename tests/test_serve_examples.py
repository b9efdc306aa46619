"""From the README: `prov serve` with no configuration, and the example service against it.

The server starts in an empty directory with no `PROV_*` variable set (only `--port`, so
that parallel tests do not collide) and must create its SQLite ledger and key there. The
example registers its signing key and underwrites loans through the SDK, exactly as
examples/README.md tells a newcomer to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.http_server import free_port
from tests.support import PROV, prov

EXAMPLE = Path(__file__).parents[1] / "examples" / "loan_service.py"


def test_serve_needs_no_configuration_and_the_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
    port = free_port()
    server = subprocess.Popen(
        [PROV, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "prov serve did not get ready"
            assert server.poll() is None, "prov serve exited"
            time.sleep(0.1)
        assert (tmp_path / "prov.db").exists()
        assert (tmp_path / "prov-ledger.key").stat().st_mode & 0o077 == 0

        db, key = str(tmp_path / "prov.db"), tmp_path / "prov-ledger.key"

        def api_key(role: str) -> str:
            made = prov(["api-key", "create", "--tenant", "acme", "--role", role], db=db, key=key)
            assert made.code == 0, made.err
            return str(made.json_lines()[0]["key"])

        verifier = prov(["checkpoint", "--verifier-key"], db=db, key=key).out.strip()
        example_env = env | {
            "PROV_URL": url,
            "PROV_ADMIN_KEY": api_key("admin"),
            "PROV_API_KEY": api_key("ingest"),
            "PROV_VERIFIER_KEY": verifier,
        }
        for args in (["register"], ["run", "--count", "5"]):
            done = subprocess.run(
                [sys.executable, str(EXAMPLE), *args],
                cwd=tmp_path,
                env=example_env,
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()
        receipts = [line for line in done.stdout.decode().splitlines() if line.startswith("{")]
        assert len(receipts) == 5
    finally:
        server.terminate()
        server.wait(timeout=30)
    verified = prov(["verify", "--signatures"], db=db, key=key)
    assert verified.code == 0, verified.err
    assert "size 5" in verified.out
