"""How each decision is attested, as the why-report, its offline check, search, the terminal
and the auditor pages show it.

Three decisions of tenant acme are built from OpenTelemetry spans, beside demo decisions
signed by their services: one the ledger signs with its record key on arrival
(ledger-attested), one whose trace never delivered its root span (ledger-attested,
incomplete), and one a collector holding the service's own key signed (producer-signed,
though built from spans). The level always follows the key that verified the signature,
never what the payload says of its source.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from rich.console import Console

from ingest.otlp.mapping import decisions_of
from ingest.otlp.spans import Span
from ledger.errors import BadRequest
from ledger.keys.apikeys import ApiKey, Role
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.log.sequencer import now_micros
from ledger.records.decision import Decision
from ledger.records.signed import parse_record
from ledger.storage.db import make_engine
from query.audit.report_check import verify_report
from query.audit.search import QUERY_FIELDS, DecisionFilter, search
from query.audit.why import why_report
from query.ui.view import environment, timeline_bars
from service.cli.why_view import render_search, render_why
from service.demo.traffic import demo_signing_key
from tests.http_server import Server, prepared_server
from tests.support import demo_envelopes, prov, sign

TENANT = "acme"
SERVICE = "loan-underwriter"  # a demo service: its demo key is registered
START_NS = 1_750_000_000_000_000_000


def spans(trace_id: str, *, root: bool = True) -> list[Span]:
    """A loan decision's trace: its head span and one model call under it. Without `root`,
    the head's own parent never arrived and no span marks a decision, so the trace is closed
    as one incomplete decision headed by its earliest orphan."""
    marked = {"prov.decision_type": "loan.approve"} if root else {}
    head = Span(
        trace_id=trace_id,
        span_id="b7ad6b7169203331",
        parent_span_id=None if root else "1111111111111111",
        name="loan.approve",
        start_ns=START_NS,
        end_ns=START_NS + 1_000_000_000,
        attributes=marked
        | {
            "prov.subject": "cust_otlp",
            "prov.output": '{"approved": false}',
        },
        service=SERVICE,
    )
    chat = Span(
        trace_id=trace_id,
        span_id="00f067aa0ba902b7",
        parent_span_id=head.span_id,
        name="chat gpt-4.1-mini",
        kind=3,
        start_ns=START_NS + 100_000_000,
        end_ns=START_NS + 900_000_000,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4.1-mini",
            "gen_ai.response.model": "gpt-4.1-mini-2025-04-14",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
        },
        service=SERVICE,
    )
    return [head, chat]


def from_spans(trace_id: str, *, root: bool = True) -> Decision:
    [decision] = decisions_of(TENANT, spans(trace_id, root=root), {}, closing=not root)
    return decision


@dataclass(frozen=True)
class Stored:
    producer: list[str]  # demo decisions, signed by their services
    attested: str  # built from spans, signed by the ledger's record key
    incomplete: str  # the same, from a trace whose root never came
    collector: str  # built from spans, signed with the service's own key


def store(ledger: Ledger) -> Stored:
    """Append the demo decisions and the three built from spans; every one is admitted."""
    raws = demo_envelopes(ledger.engine, 3, seed=11)
    attested = from_spans("0af7651916cd43dd8448eb211c80319c")
    incomplete = from_spans("1af7651916cd43dd8448eb211c80319c", root=False)
    collector = from_spans("2af7651916cd43dd8448eb211c80319c")
    raws += ledger.attest_decisions([attested, incomplete])
    raws.append(sign(collector))
    results = ledger.append(raws)
    assert all(isinstance(result, Receipt) for result in results), results
    return Stored(
        producer=[parse_record(raw).decision.id for raw in raws[:3]],
        attested=attested.id,
        incomplete=incomplete.id,
        collector=collector.id,
    )


@pytest.fixture
def stored(ledger: Ledger) -> Stored:
    return store(ledger)


def report_for(ledger: Ledger, record_id: str) -> dict[str, Any]:
    with ledger.engine.connect() as connection:
        report = why_report(
            connection, ledger.verifier, ledger.origin, TENANT, record_id, now_us=now_micros()
        )
    # As a client receives it: through JSON.
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(report))
    return decoded


def test_the_why_report_names_the_level_by_the_verifying_key(
    ledger: Ledger, stored: Stored
) -> None:
    producer = report_for(ledger, stored.producer[0])["verification"]["attestation"]
    assert producer["level"] == "producer-signed"
    assert not producer["keyid"].startswith("prov-replay:")
    assert producer["source"] is None
    assert producer["not_replayable"] is None

    attested = report_for(ledger, stored.attested)
    level = attested["verification"]["attestation"]
    assert level["level"] == "ledger-attested"
    assert level["keyid"] == attested["verification"]["signature"]["keyid"]
    assert level["keyid"].startswith(f"prov-replay:{TENANT}:")
    assert attested["evidence"]["signing_key"]["service"] == "prov-replay"
    assert "the producer did not sign it" in level["detail"]
    assert level["source"] == {
        "kind": "opentelemetry",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "service": SERVICE,
        "incomplete": False,
    }
    assert "without its messages" in level["not_replayable"]

    incomplete = report_for(ledger, stored.incomplete)["verification"]["attestation"]
    assert incomplete["level"] == "ledger-attested"
    assert incomplete["source"]["incomplete"] is True

    # Built from spans, but signed with the service's own key: the payload's account of its
    # source does not make it ledger-attested, and the key makes it producer-signed.
    collector = report_for(ledger, stored.collector)["verification"]["attestation"]
    assert collector["level"] == "producer-signed"
    assert collector["source"]["trace_id"] == "2af7651916cd43dd8448eb211c80319c"
    assert "collector" in collector["detail"]


def test_verify_report_accepts_each_level_and_refuses_a_flipped_one(
    ledger: Ledger, stored: Stored
) -> None:
    for record_id in (stored.producer[0], stored.attested, stored.incomplete, stored.collector):
        report = report_for(ledger, record_id)
        result = verify_report(report, ledger.verifier)
        assert result, (record_id, result.failure)

        flipped = copy.deepcopy(report)
        level = flipped["verification"]["attestation"]
        level["level"] = (
            "producer-signed" if level["level"] == "ledger-attested" else "ledger-attested"
        )
        refused = verify_report(flipped, ledger.verifier)
        assert refused.failure is not None, record_id
        assert refused.failure.name == "verdicts"
        assert "/verification/attestation/level" in refused.failure.detail

        # What the payload says of its source is checked too.
        claimed = copy.deepcopy(report)
        claimed["verification"]["attestation"]["source"] = None
        refused = verify_report(claimed, ledger.verifier)
        if report["verification"]["attestation"]["source"] is not None:
            assert refused.failure is not None
            assert "/verification/attestation/source" in refused.failure.detail


def test_a_report_made_before_levels_were_shown_still_verifies(
    ledger: Ledger, stored: Stored
) -> None:
    for record_id in (stored.producer[1], stored.attested):
        older = report_for(ledger, record_id)
        del older["verification"]["attestation"]
        result = verify_report(older, ledger.verifier)
        assert result, result.failure


def test_a_record_keyid_under_another_service_is_refused(ledger: Ledger, stored: Stored) -> None:
    """The keyid prefix is the offline signal: a report whose signing key has the record
    key's keyid but names the producing service (so as to pass for producer-signed) fails."""
    report = report_for(ledger, stored.attested)
    report["evidence"]["signing_key"]["service"] = SERVICE
    report["verification"]["attestation"]["level"] = "producer-signed"
    result = verify_report(report, ledger.verifier)
    assert result.failure is not None
    assert result.failure.name == "signature"
    assert "prov-replay:" in result.failure.detail


def test_pinning_the_services_key_refuses_a_ledger_attested_report(
    ledger: Ledger, stored: Stored
) -> None:
    """The producer did not sign it: its own key does not verify the record."""
    pinned = demo_signing_key(TENANT, SERVICE).public_key
    assert verify_report(report_for(ledger, stored.collector), ledger.verifier, service_key=pinned)
    refused = verify_report(
        report_for(ledger, stored.attested), ledger.verifier, service_key=pinned
    )
    assert refused.failure is not None
    assert refused.failure.name == "signature"


def found(ledger: Ledger, **query: str) -> dict[str, str]:
    with ledger.engine.connect() as connection:
        page = search(connection, DecisionFilter.from_query(TENANT, query), limit=500)
    return {item.id: item.attestation for item in page.decisions}


def test_search_shows_and_filters_by_level(ledger: Ledger, stored: Stored) -> None:
    everything = found(ledger)
    assert everything == {
        **dict.fromkeys(stored.producer, "producer-signed"),
        stored.attested: "ledger-attested",
        stored.incomplete: "ledger-attested",
        stored.collector: "producer-signed",
    }
    assert set(found(ledger, attestation="ledger-attested")) == {
        stored.attested,
        stored.incomplete,
    }
    assert set(found(ledger, attestation="producer-signed")) == {
        *stored.producer,
        stored.collector,
    }
    combined = found(ledger, attestation="ledger-attested", decision_type="loan.approve")
    assert set(combined) == {stored.attested, stored.incomplete}
    for bad in ("signed", "LEDGER-ATTESTED", "unverified"):
        with pytest.raises(BadRequest) as raised:
            DecisionFilter.from_query(TENANT, {"attestation": bad})
        assert raised.value.pointer == "/attestation"
        assert "producer-signed, ledger-attested" in raised.value.detail


def rendered(render: Any, value: Any) -> str:
    output = io.StringIO()
    render(value, Console(file=output, width=400, color_system=None))
    return output.getvalue()


def test_the_terminal_view_shows_the_level(ledger: Ledger, stored: Stored) -> None:
    attested = rendered(render_why, report_for(ledger, stored.attested))
    line = next(line for line in attested.splitlines() if "attested " in line)
    assert "ledger-attested" in line
    assert "built by the ledger from OpenTelemetry spans" in line
    assert "the producer did not sign it" in line
    assert "OpenTelemetry trace 0af7651916cd43dd8448eb211c80319c" in attested
    assert "not replayable" in attested

    incomplete = rendered(render_why, report_for(ledger, stored.incomplete))
    assert "incomplete: its root span never arrived" in incomplete

    producer = rendered(render_why, report_for(ledger, stored.producer[0]))
    assert "producer-signed" in producer
    assert "ledger-attested" not in producer
    assert "OpenTelemetry" not in producer

    with ledger.engine.connect() as connection:
        page = search(connection, DecisionFilter(TENANT), limit=500)
    table = rendered(render_search, msgspec.to_builtins(page))
    rows = {
        record_id: line
        for line in table.splitlines()
        for record_id in found(ledger)
        if record_id in line
    }
    assert "ledger-attested" in rows[stored.attested]
    assert "producer-signed" in rows[stored.collector]


AUDITOR = ApiKey("k1", TENANT, Role.AUDIT, "auditor", 0, None)


def page_html(template: str, **context: Any) -> str:
    """A page rendered as `query.ui.pages` renders it for an audit key of the tenant."""
    return environment().get_template(template).render(caller=AUDITOR, section="search", **context)


def badge_of(html: str) -> tuple[str, str]:
    """The level shown in the decision page's header badge, and its tone."""
    found = re.search(
        r'<dd id="attestation"><span class="badge badge-(\w+)" data-attestation="([\w-]+)"', html
    )
    assert found is not None, html
    return found[2], found[1]


def decision_page(ledger: Ledger, record_id: str) -> str:
    """The decision page as `query.ui.pages.decision_page` renders it."""
    report = report_for(ledger, record_id)
    return page_html(
        "decision.html",
        record_id=record_id,
        report=report,
        bars=timeline_bars(report["analysis"]["timeline"]),
        blobs={blob["digest"]: blob for blob in report["verification"]["blobs"]},
        checkpoint_size=None,
        verifier_key="KEY",
    )


def test_the_pages_draw_each_level_its_own_way(ledger: Ledger, stored: Stored) -> None:
    attested = decision_page(ledger, stored.attested)
    assert badge_of(attested) == ("ledger-attested", "attested")
    assert "the producer did not sign it" in attested
    assert 'id="attestation-source"' in attested
    assert "0af7651916cd43dd8448eb211c80319c" in attested
    assert 'id="attestation-incomplete"' not in attested
    assert 'id="not-replayable"' in attested
    assert 'id="attestation-incomplete"' in decision_page(ledger, stored.incomplete)

    producer = decision_page(ledger, stored.producer[0])
    assert badge_of(producer) == ("producer-signed", "signed")
    assert "attestation-source" not in producer
    # Neither level is drawn as a passed check: the header holds no pass at all.
    for html in (attested, producer):
        header = re.search(r'<header class="card head">.*?</header>', html, re.S)
        assert header is not None
        assert "badge-pass" not in header[0]

    with ledger.engine.connect() as connection:
        results = search(connection, DecisionFilter(TENANT), limit=500)
    html = page_html(
        "search.html",
        filters=dict.fromkeys(QUERY_FIELDS, ""),
        error=None,
        found=results,
        next_url=None,
        first_url=None,
    )
    shown = dict(
        re.findall(
            r'<a href="/ui/decisions/[^"]+">([^<]+)</a></td>.*?data-attestation="([\w-]+)"',
            html,
            re.S,
        )
    )
    assert shown == found(ledger)
    # Ledger-attested rows carry a stripe, visible even with the table scrolled.
    assert html.count('<tr class="level-ledger-attested">') == 2
    # The stylesheet gives the two levels distinct looks.
    css = (Path(__file__).parent.parent / "query/ui/static/pages.css").read_text()
    rules = dict(re.findall(r"^\.badge-(signed|attested) \{([^}]*)\}", css, re.M))
    assert set(rules) == {"signed", "attested"}
    assert rules["signed"] != rules["attested"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Stored]]:
    """A real `prov serve` over a ledger holding the decisions of `store`."""
    server = prepared_server(str(tmp_path / "ledger.db"), tmp_path)
    engine = make_engine(server.db_url)
    ledger = Ledger.open(engine, server.key_file)
    try:
        decisions = store(ledger)
    finally:
        ledger.pool.close()
        engine.dispose()
    server.start()
    try:
        yield server, decisions
    finally:
        server.stop()


@pytest.mark.slow
def test_a_served_ledger_shows_and_filters_the_level(served: tuple[Server, Stored]) -> None:
    server, decisions = served
    key = server.api_key("audit")
    with httpx.Client(base_url=server.url, headers=server.auth(key), timeout=30) as api:
        listed = api.get("/v1/decisions", params={"attestation": "ledger-attested"}).json()
        assert {item["id"] for item in listed["decisions"]} == {
            decisions.attested,
            decisions.incomplete,
        }
        assert {item["attestation"] for item in listed["decisions"]} == {"ledger-attested"}
        refused = api.get("/v1/decisions", params={"attestation": "self-signed"})
        assert refused.status_code == 400
        assert "producer-signed, ledger-attested" in refused.json()["detail"]

    with httpx.Client(base_url=server.url, timeout=30) as browser:
        signed_in = browser.post("/ui/login", data={"api_key": key})
        assert signed_in.status_code == 303
        page = browser.get(f"/ui/decisions/{decisions.attested}")
        assert page.status_code == 200
        assert badge_of(page.text) == ("ledger-attested", "attested")
        producer = browser.get(f"/ui/decisions/{decisions.producer[0]}")
        assert badge_of(producer.text) == ("producer-signed", "signed")
        results = browser.get("/ui/", params={"attestation": "producer-signed"})
        assert results.status_code == 200
        assert 'data-attestation="ledger-attested"' not in results.text
        assert results.text.count('data-attestation="producer-signed"') == 4
        bad = browser.get("/ui/", params={"attestation": "nobody"})
        assert bad.status_code == 400
        assert "attestation is one of" in bad.text

    # The command line, against the served ledger, as an auditor runs it.
    command = [
        "search",
        "--url",
        server.url,
        "--api-key",
        key,
        "--attestation",
        "ledger-attested",
        "--json",
    ]
    done = prov(command, db=server.db_url, key=server.key_file)
    assert done.code == 0, done.err
    ids = {item["id"] for item in msgspec.json.decode(done.out)["decisions"]}
    assert ids == {decisions.attested, decisions.incomplete}
    wrong = prov([*command[:-2], "bogus"], db=server.db_url, key=server.key_file)
    assert wrong.code != 0
    assert "producer-signed" in wrong.err
