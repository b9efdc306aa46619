"""The README's witness walk-through, run as written in an empty directory (its ports moved
to free ones): two witnesses and a ledger that asks them, the cosigned checkpoint, an
auditor with a 2-of-2 witness policy, a COSE receipt verified by `scitt-cose` (a verifier
this project did not write), a fork refused by the witness and then by the auditor."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http_server import free_port

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- witness-walkthrough -->\n```sh\n(.*?)```\n<!-- /witness-walkthrough -->",
        text,
        flags=re.DOTALL,
    )
    assert found, "the README lost its witness walk-through block"
    script = found.group(1)
    for port in ("7381", "7382", "8080", "8081"):
        assert port in script
        script = script.replace(port, str(free_port()))
    return script


def test_the_readme_witness_walkthrough_runs_as_written(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROV_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # Its own process group, so that no server outlives the test, even on a timeout.
    shell = subprocess.Popen(
        ["bash", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 1, out + err  # the last command fails on purpose
    # The served checkpoint carries the log's signature and both cosignatures.
    note = re.search(r"prov\.local/ledger\n(\d+)\n\S+=\n\n((?:\u2014 .*\n){3})", out)
    assert note, out
    lines = note.group(2).splitlines()
    assert [line.split()[1] for line in lines] == ["prov.local/ledger", "w1.example", "w2.example"]
    assert "cosigned by 2 of 2 witnesses (w1.example, w2.example)" in out
    # scitt-cose accepted the receipt.
    assert re.search(r"ok\s+:\s+True", out), out
    assert re.search(r"leaf_index\s+:\s+3", out)
    # The witness refused the fork's checkpoint, and the auditor refused the fork.
    assert '"status":422' in out
    assert "does not verify against the root" in out
    assert (
        err.rstrip()
        .splitlines()[-1]
        .startswith(
            "prov: witness-policy-unmet: the server's checkpoint: the checkpoint carries 0 verified"
        )
    ), err
    assert not (tmp_path / "fresh.json").exists()
