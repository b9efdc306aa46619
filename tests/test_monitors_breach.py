"""Breaches as evidence: `prov verify-breach` recomputes every recorded breach from the log's
entries offline and accepts it, and refuses one whose stored bytes or bundle were altered,
naming what is wrong; hostile definitions are refused with the member at fault."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ledger.errors import MonitorInvalid
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.monitors.apply import parse_definitions, parse_toml
from ledger.monitors.breach_bundle import breach_bundle
from ledger.monitors.breach_check import verify_breach
from ledger.records import dsse
from ledger.storage.db import make_engine
from ledger.storage.schema import monitor_breaches, monitor_flags
from tests.conftest import TEST_ORIGIN
from tests.monitor_support import definition, loan, register_tenant
from tests.support import PROV, prov


def breached_ledger(ledger: Ledger) -> list[str]:
    """Apply a concentration monitor, append loans that breach and clear it; the breach ids."""
    register_tenant(ledger.engine, "acme")
    ledger.apply_monitors(
        [
            definition(
                "acme",
                "concentration",
                aggregate="share",
                unit="USD",
                group_by="group",
                window="1h",
                limit="0.4",
                min_count=4,
                action="flag",
                select={"group": "sector:*", "where": ["output.decision.approved == true"]},
            )
        ],
        applied_by="test",
    )
    sectors = ["a", "b", "c", "d", "a", "a", "a", "b", "c", "d", "b", "c", "d"]
    for number, sector in enumerate(sectors):
        [result] = ledger.append([loan("acme", f"l{number}", sector=sector)])
        assert isinstance(result, Receipt)
    with ledger.engine.connect() as connection:
        rows = connection.execute(
            monitor_breaches.select().order_by(monitor_breaches.c.idx)
        ).fetchall()
    return [row.record_id for row in rows]


def test_every_breach_verifies_offline_and_an_altered_one_is_refused(ledger: Ledger) -> None:
    ids = breached_ledger(ledger)
    assert len(ids) >= 2  # breached, then cleared
    with ledger.engine.connect() as connection:
        bundles = [breach_bundle(connection, "acme", record_id) for record_id in ids]
    for bundle in bundles:
        assert verify_breach(json.loads(json.dumps(bundle)), ledger.verifier), bundle
    with ledger.engine.connect() as connection:  # a breach is also found by its log index
        assert breach_bundle(connection, "acme", str(bundles[0]["breach_index"])) == bundles[0]
    bundle = json.loads(json.dumps(bundles[0]))
    # A decision of the window changed in the bundle: the chain no longer reaches the leaf.
    target = next(e for e in bundle["entries"] if "envelope" in e and e["index"] > 1)
    raw = dsse.b64decode(target["envelope"]).replace(b'"', b" ", 0)
    altered = json.loads(raw)
    altered["payload"] = dsse.b64encode(
        dsse.b64decode(altered["payload"]).replace(b'"sector:', b'"sectox:')
    )
    target["envelope"] = dsse.b64encode(json.dumps(altered).encode())
    check = verify_breach(bundle, ledger.verifier)
    assert not check
    assert "was altered" in check.failures[0]
    # The recorded value changed: the breach's own entry no longer hashes into the log.
    bundle = json.loads(json.dumps(bundles[0]))
    breach_item = bundle["entries"][-1]
    envelope = json.loads(dsse.b64decode(breach_item["envelope"]))
    payload = json.loads(dsse.b64decode(envelope["payload"]))
    payload["value"] = "0.9"
    envelope["payload"] = dsse.b64encode(json.dumps(payload).encode())
    breach_item["envelope"] = dsse.b64encode(json.dumps(envelope).encode())
    assert not verify_breach(bundle, ledger.verifier)


def test_a_window_cut_short_is_refused(ledger: Ledger) -> None:
    [first, *_] = breached_ledger(ledger)
    with ledger.engine.connect() as connection:
        bundle = breach_bundle(connection, "acme", first)
    bundle["entries"] = bundle["entries"][2:]
    assert not verify_breach(bundle, ledger.verifier)


def test_the_cli_saves_and_verifies_a_breach(tmp_path: Path) -> None:
    """`prov monitor breach` writes the bundle; `prov verify-breach` accepts it offline and
    refuses it, exit status 1 and one line, once a decision of its window is altered."""
    db, key = str(tmp_path / "ledger.db"), tmp_path / "ledger.key"
    ledger = Ledger.init(make_engine(db), key, TEST_ORIGIN)
    [first, *_] = breached_ledger(ledger)
    ledger.close()
    saved = prov(["monitor", "breach", first, "--tenant", "acme"], db=db, key=key)
    assert saved.code == 0, saved.err
    bundle_file = tmp_path / "breach.json"
    bundle_file.write_text(saved.out)
    verifier = prov(["checkpoint", "--verifier-key"], db=db, key=key).out.strip()
    checked = subprocess.run(
        [PROV, "verify-breach", str(bundle_file), "--verifier-key", verifier],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "recomputes from the log offline" in checked.stdout
    bundle = json.loads(saved.out)
    bundle["entries"] = bundle["entries"][:-3] + bundle["entries"][-2:]
    bundle_file.write_text(json.dumps(bundle))
    refused = subprocess.run(
        [PROV, "verify-breach", str(bundle_file), "--verifier-key", verifier],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("prov: breach FAILED")
    assert refused.stderr.count("\n") == 1


REGEX = "/monitor/0/select/group_regex"


@pytest.mark.parametrize(
    ("members", "pointer"),
    [
        ({"aggregate": "median"}, "/monitor/0/aggregate"),
        ({"window": "-5m"}, "/monitor/0/window"),
        ({"window": "0s"}, "/monitor/0/window"),
        (
            {"select": {"group_regex": "(a+)+$"}, "group_by": "group"},
            "/monitor/0/select/group_regex",
        ),
        (
            {"select": {"group_regex": "(a|aa)*"}, "group_by": "group"},
            "/monitor/0/select/group_regex",
        ),
        (
            {"select": {"group_regex": r"(\w)\1"}, "group_by": "group"},
            "/monitor/0/select/group_regex",
        ),
        ({"select": {"where": ["output.decision.approved = true"]}}, "/monitor/0/select/where/0"),
        ({"select": {"colour": "red"}}, "/monitor/0/select/colour"),
        ({"limit": "-1"}, "/monitor/0/limit"),
        ({"frequency": "often"}, "/monitor/0/frequency"),
        ({"aggregate": "share", "group_by": "none"}, "/monitor/0/group_by"),
    ],
)
def test_hostile_definitions_are_refused_with_the_member_at_fault(
    members: dict[str, object], pointer: str
) -> None:
    base: dict[str, object] = {
        "id": "m",
        "tenant": "acme",
        "aggregate": "count",
        "window": "1h",
        "limit": "10",
        "unit": "USD",
    }
    with pytest.raises(MonitorInvalid) as refused:
        parse_definitions({"monitor": [{**base, **members}]})
    assert refused.value.pointer == pointer, refused.value


def test_prov_reindex_rebuilds_the_monitor_indexes_and_names_what_differs(tmp_path: Path) -> None:
    db, key = str(tmp_path / "ledger.db"), tmp_path / "ledger.key"
    ledger = Ledger.init(make_engine(db), key, TEST_ORIGIN)
    breached_ledger(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(monitor_flags.delete())  # flagged decisions lost
        connection.execute(monitor_breaches.delete().where(monitor_breaches.c.state == "cleared"))
    ledger.close()
    checked = prov(["reindex", "--check"], db=db, key=key)
    assert checked.code == 1
    assert "row missing from monitor_flags" in checked.err
    assert "row missing from monitor_breaches" in checked.err
    assert prov(["reindex"], db=db, key=key).code == 0
    again = prov(["reindex", "--check"], db=db, key=key)
    assert again.code == 0, again.err
    assert "flagged decisions" in again.out


def test_the_definitions_in_the_docs_are_accepted() -> None:
    text = (Path(__file__).parents[1] / "docs" / "monitors.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        assert parse_toml(block)
