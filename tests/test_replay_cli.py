"""`prov replay` as an engineer runs it: one decision side by side, a batch with its report,
and one-line errors, against a real ledger on both engines.

No real model provider is reachable here; `tests.model_servers.ModelServer` is a local
server that speaks the providers' wire protocols, and the registry the commands are given
routes the demo's models to it. Its answers depend only on the model name and the
conversation, so a pinned replay of a demo decision asks for other tool arguments than
the recorded run did: a divergence, which the screen marks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from ledger.records.replay import decode_replay
from ledger.storage.db import make_engine
from replay.batch.shadow_report import decode_report
from tests.http_helpers import SQLITE_ONLY
from tests.model_servers import API_KEY, ModelServer, running
from tests.replay_demo import CANDIDATE, logged_verdicts, record_demo, write_registry
from tests.support import Run, prov

TENANT = "acme"


@pytest.fixture
def model_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    # The registry names these variables for the API keys; `prov` inherits them.
    monkeypatch.setenv("TEST_OPENAI_KEY", API_KEY)
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", API_KEY)
    with running(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def key(tmp_path: Path, db_url: str) -> Path:
    """A ledger with 12 demo decisions (four of each scenario); its key file."""
    path = tmp_path / "ledger.key"
    assert prov(["init"], db=db_url, key=path).code == 0
    record_demo(db_url, path, 12, seed=5)
    return path


def decision_ids(db_url: str, key: Path, decision_type: str) -> list[str]:
    found = prov(
        ["search", "--tenant", TENANT, "--type", decision_type, "--json"], db=db_url, key=key
    )
    assert found.code == 0, found.err
    return [item["id"] for item in msgspec.json.decode(found.out)["decisions"]]


def log_size(db_url: str, key: Path) -> int:
    done = prov(["verify"], db=db_url, key=key)
    assert done.code == 0, done.err
    return int(re.search(r"size (\d+)", done.out)[1])  # type: ignore[index]


def one_line_failure(done: Run, *words: str) -> None:
    assert done.code != 0
    assert done.out == ""
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    assert lines[0].startswith("prov: "), done.err
    for word in words:
        assert word in lines[0], done.err


def test_a_diverging_replay_is_shown_side_by_side_and_logged(
    db_url: str, key: Path, tmp_path: Path, model_server: ModelServer
) -> None:
    registry = write_registry(tmp_path, model_server)
    [decision_id, *_] = decision_ids(db_url, key, "order.route")
    done = prov(
        ["replay", decision_id, "--tenant", TENANT, "--registry", str(registry)], db=db_url, key=key
    )
    assert done.code == 0, done.err
    screen = done.out
    assert f"Replay of {decision_id}" in screen
    assert "mode      pinned" in screen
    assert "Recorded and replayed run" in screen
    assert "✘" in screen
    assert "DIVERGED" in screen
    assert "expected" in screen
    assert "verdict" in screen
    assert "DIVERGED " in screen.split("verdict", 1)[1]
    index = int(re.search(r"log index (\d+)", screen)[1])  # type: ignore[index]

    # The replay the screen showed is the ledger's record at that index.
    shown = prov(["show", str(index)], db=db_url, key=key)
    assert shown.code == 0, shown.err
    entry = msgspec.json.decode(shown.out)
    record = entry["payload"]
    assert record["replay_of"] == decision_id
    assert record["verdict"] == "diverged"
    assert record["divergence"]["kind"] in screen
    # Every replay verifies as a ledger record.
    verified = prov(["verify", "--signatures"], db=db_url, key=key)
    assert verified.code == 0, verified.err


def test_json_prints_the_replay_record(db_url: str, key: Path) -> None:
    [decision_id, *_] = decision_ids(db_url, key, "payment.retry")
    done = prov(
        ["replay", decision_id, "--tenant", TENANT, "--mode", "deterministic", "--json"],
        db=db_url,
        key=key,
    )
    assert done.code == 0, done.err
    record = decode_replay(done.out.encode())
    assert record.replay_of == decision_id
    assert record.mode == "deterministic"
    assert record.verdict == "identical"
    assert prov(["verify", "--signatures"], db=db_url, key=key).code == 0


def test_a_batch_appends_every_replay_and_writes_the_report(
    db_url: str, key: Path, tmp_path: Path, model_server: ModelServer
) -> None:
    registry = write_registry(tmp_path, model_server)
    report_dir = tmp_path / "shadow"
    done = prov(
        [
            "replay",
            "--where",
            "decision_type=order.route&service=order-router",
            "--against",
            CANDIDATE,
            "--concurrency",
            "3",
            "--registry",
            str(registry),
            "--report",
            str(report_dir),
            "--tenant",
            TENANT,
        ],
        db=db_url,
        key=key,
    )
    assert done.code == 0, done.err
    report = decode_report((report_dir / "report.json").read_bytes())
    assert report.total == len(decision_ids(db_url, key, "order.route")) == 4
    assert report.stored == 4
    assert sum(share.share for share in report.verdicts) == pytest.approx(1.0)
    counts = {share.verdict: share.count for share in report.verdicts if share.count}
    assert logged_verdicts(make_engine(db_url), report.batch) == counts
    html = report_dir / "report.html"
    page = html.read_text()
    assert all(f'id="{line.anchor}"' in page for line in report.replays)
    assert f"report: {html}" in done.out
    for share in report.verdicts:
        assert share.verdict.upper() in done.out
    assert prov(["verify", "--signatures"], db=db_url, key=key).code == 0


@SQLITE_ONLY
def test_errors_are_one_line_and_store_nothing(
    db_url: str, key: Path, tmp_path: Path, model_server: ModelServer
) -> None:
    registry = write_registry(tmp_path, model_server)
    broken = tmp_path / "broken.toml"
    broken.write_text("[providers.oa\nkind = 'openai'\n")
    [decision_id, *_] = decision_ids(db_url, key, "loan.approve")
    size = log_size(db_url, key)

    def replay(*args: str) -> Run:
        return prov(["replay", *args, "--tenant", TENANT], db=db_url, key=key)

    one_line_failure(replay("no-such-decision", "--mode", "deterministic"), "no-such-decision")
    one_line_failure(
        prov(
            ["replay", decision_id, "--mode", "deterministic", "--tenant", "other"],
            db=db_url,
            key=key,
        ),
        decision_id,
    )
    one_line_failure(
        replay("--where", "colour=red", "--against", CANDIDATE, "--registry", str(registry)),
        "--where",
        "colour",
    )
    one_line_failure(replay("--where", "from=yesterday", "--mode", "deterministic"), "RFC 3339")
    one_line_failure(
        replay("--where", "decision_type=no.such", "--mode", "deterministic"), "no decision"
    )
    one_line_failure(replay(decision_id, "--registry", str(broken)), str(broken), "invalid TOML")
    one_line_failure(
        replay(decision_id, "--registry", str(tmp_path / "absent.toml")), "cannot read"
    )
    one_line_failure(
        replay(decision_id, "--model", "nope@1", "--registry", str(registry)), "no route", "nope"
    )
    one_line_failure(replay(decision_id), "--registry", "PROV_REPLAY_REGISTRY")
    one_line_failure(
        replay(decision_id, "--param", "temperature=-1", "--registry", str(registry)), "temperature"
    )
    one_line_failure(
        replay(decision_id, "--param", "warmth=1", "--registry", str(registry)), "warmth"
    )
    one_line_failure(
        replay(decision_id, "--mode", "deterministic", "--model", CANDIDATE), "deterministic"
    )
    usage = replay(decision_id, "--where", "decision_type=loan.approve")
    assert usage.code == 2
    assert usage.err.startswith("prov: ")
    assert log_size(db_url, key) == size
