"""examples/otel_openai.py as examples/README.md tells a newcomer to run it: `prov serve`
with no configuration, `prov models serve` (the local wire-protocol model server: no real
provider is reachable here), and the example, which uses the `openai` client and the
OpenTelemetry SDK only. Each decision it prints must be in the ledger, ledger-attested,
with its two steps, shown on the auditor page with its attestation, and replay
`identical`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.http_server import free_port, wait_ready
from tests.support import PROV, prov

EXAMPLE = Path(__file__).parents[1] / "examples" / "otel_openai.py"
pytestmark = pytest.mark.slow


def test_the_opentelemetry_only_example_lands_attested_decisions(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
    port, models_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [PROV, "serve", "--port", str(port)], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL
    )
    models = subprocess.Popen(
        [PROV, "models", "serve", "--port", str(models_port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    db, key = str(tmp_path / "prov.db"), tmp_path / "prov-ledger.key"
    try:
        wait_ready(f"{url}/readyz", server)
        # The model server has no health route: any answer short of an error means it is up.
        wait_ready(f"http://127.0.0.1:{models_port}/", models, answered=lambda status: status < 500)
        made = prov(["api-key", "create", "--tenant", "acme", "--role", "ingest"], db=db, key=key)
        ingest_key = str(made.json_lines()[0]["key"])
        audit = prov(["api-key", "create", "--tenant", "acme", "--role", "audit"], db=db, key=key)
        audit_key = str(audit.json_lines()[0]["key"])
        done = subprocess.run(
            [sys.executable, str(EXAMPLE)],
            cwd=tmp_path,
            env=env
            | {
                "PROV_URL": url,
                "PROV_API_KEY": ingest_key,
                "MODELS_URL": f"http://127.0.0.1:{models_port}/v1",
            },
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        ids = re.findall(r"^decision (\S+)$", done.stdout.decode(), re.MULTILINE)
        assert len(ids) == 3
        headers = {"Authorization": f"Bearer {audit_key}"}
        for record_id in ids:
            deadline = time.monotonic() + 30
            while (
                why := httpx.get(f"{url}/v1/decisions/{record_id}/why", headers=headers)
            ).status_code == 404 and time.monotonic() < deadline:
                time.sleep(0.2)
            report = why.json()
            decision = report["decision"]
            assert [s["kind"] for s in decision["steps"]] == ["tool_call", "llm_call"]
            assert decision["service"] == "loan-underwriter"
            assert set(decision["output"]["decision"]) >= {"approved"}
            assert report["evidence"]["signing_key"]["service"] == "prov-replay"
        # The page an auditor opens shows the decision and how it was attested.
        with httpx.Client(base_url=url) as browser:
            signed_in = browser.post(
                "/ui/login", data={"api_key": audit_key}, follow_redirects=True
            )
            assert signed_in.status_code == 200
            page = browser.get(f"/ui/decisions/{ids[0]}")
            assert page.status_code == 200
            assert "ledger-attested" in page.text
            for step in ("tool_call", "llm_call", "credit_bureau"):
                assert step in page.text
        replayed = prov(
            ["replay", ids[0], "--tenant", "acme", "--mode", "deterministic", "--json"],
            db=db,
            key=key,
        )
        assert replayed.code == 0, replayed.err
        assert json.loads(replayed.out)["verdict"] == "identical"
    finally:
        for process in (server, models):
            process.terminate()
            process.wait(timeout=30)
