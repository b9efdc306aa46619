"""The README's erasure walk-through, run as written (its second shell block) in an empty
directory against the session's SeaweedFS (a real S3 server on loopback): decisions about
a person, their export, refusals by the retention floor and a legal hold, the erasure, the
ledger still verifying, the objects gone from S3 and the blob unreadable from an older
backup of the database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.s3_server import SeaweedFS

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- erasure-walkthrough -->\n```sh\n(.*?)```\n<!-- /erasure-walkthrough -->",
        text,
        flags=re.DOTALL,
    )
    assert found, "the README lost its erasure walk-through block"
    return found.group(1)


def test_the_readme_erasure_walkthrough_runs_as_written(
    tmp_path: Path, seaweedfs: SeaweedFS
) -> None:
    seaweedfs.filesystem().create_dir("prov")  # the bucket the README's first block makes
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROV_")}
    env.update(seaweedfs.env())
    env["PROV_BLOB_STORE"] = "s3://prov/blobs"
    # host:port.grpc_port: the fixture's gRPC port is not SeaweedFS's default (port + 10000).
    env["WEED_MASTER"] = f"127.0.0.1:{seaweedfs.ports['master']}.{seaweedfs.ports['master.grpc']}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out, err = done.stdout, done.stderr
    assert done.returncode != 0 or out, err  # the last command fails on purpose
    # Exported and verified offline, before and after.
    assert out.count("ok: 1 decisions about 'applicant_676730' verify offline") == 2, out + err
    assert "3 erased, each listed by a signed erasure record in the log" in out
    # The floor, then the hold, refused in one line each; then the erasure went through.
    assert "prov: erasure-refused: the retention floor of 183 days keeps subject" in err
    assert "prov: erasure-refused: legal hold 'case-22-1187'" in err
    assert re.search(r'"request_id":"req-4711".*"state":"done".*"digests":3', out)
    # The ledger still verifies, and says which digests were erased and by what.
    assert "blobs: 13 present, 3 erased (3 by erasure records), 0 unreadable" in out
    assert out.count("erased on 2027-07-01 (request") == 3
    # In S3: 16 objects before, 13 after.
    counts = [int(line) for line in out.splitlines() if line.strip().isdigit()]
    assert counts == [16, 13], out
    # Gone from the ledger, and from the backup taken before: the key no longer exists.
    assert "was erased\n" in err
    assert err.rstrip().endswith("was erased: its subject's data key is destroyed"), err
