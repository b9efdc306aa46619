"""Batch replay (shadow evaluation) over demo decisions in a real ledger on both engines.

No real model provider is reachable here; `tests.model_servers.ModelServer` is a local
server that speaks the providers' wire protocols (OpenAI chat completions, Anthropic
Messages), and can be scripted to fail (500s, 429s, slow answers). Every replay is signed
and appended to the ledger; the tests read the ledger's replay index and run
`prov verify --signatures` to check what the batch reports against what is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from ledger.records.decision import StepError
from ledger.records.replay import (
    VERDICTS,
    Diff,
    Divergence,
    FieldChange,
    IntDelta,
    ModelRef,
    MoneyDelta,
    ReplayRecord,
)
from query.audit.search import DecisionFilter
from replay.batch.batch import Progress, Recorded, ledger_blobs, load_recorded, run_batch
from replay.batch.report_html import render_report
from replay.batch.shadow_report import ReportBuilder, ShadowReport, field_path, percentile
from replay.engine.engine import ReplayPlan
from replay.providers import ProviderPool, parse_registry
from service.cli.replay_inputs import select_decisions
from tests.http_helpers import SQLITE_ONLY
from tests.model_servers import API_KEY, ENV, ModelServer, running
from tests.replay_demo import CANDIDATE, demo_registry, logged_verdicts, record_demo
from tests.support import prov

TENANT = "acme"
AGAINST_CANDIDATE = ReplayPlan(mode="counterfactual", model=CANDIDATE)


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    with running(api_key=API_KEY) as server:
        yield server


def demo_indexes(ledger: Ledger, db_url: str, key_path: Path, count: int) -> list[int]:
    """`prov demo` decisions in the ledger; their log indexes, newest first."""
    record_demo(db_url, key_path, count)
    with ledger.engine.connect() as connection:
        selected = select_decisions(connection, DecisionFilter(TENANT), count)
    return [summary.index for summary in selected]


def shadow(
    ledger: Ledger,
    indexes: Sequence[int],
    plan: ReplayPlan,
    *,
    pool: ProviderPool | None,
    batch: str = "shadow-1",
    recorded: Sequence[Recorded] | None = None,
    **options: Any,
) -> ShadowReport:
    return asyncio.run(
        _closing(
            pool,
            run_batch(
                recorded if recorded is not None else load_recorded(ledger, indexes),
                total=len(indexes),
                plan=plan,
                pool=pool,
                blobs=ledger_blobs(ledger.blobs, TENANT),
                append=ledger.append_replays,
                batch=batch,
                tenant=TENANT,
                **options,
            ),
        )
    )


async def _closing(pool: ProviderPool | None, work: Any) -> ShadowReport:
    try:
        report: ShadowReport = await work
        return report
    finally:
        if pool is not None:
            await pool.aclose()


def pool_for(server: ModelServer, **knobs: Any) -> ProviderPool:
    return ProviderPool(parse_registry(demo_registry(server, **knobs)), env=ENV)


class _Links(HTMLParser):
    """The ids and the in-page links of an HTML page, and whether it has a script."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and (values.get("href") or "").startswith("#"):
            self.links.append(str(values["href"])[1:])
        self.scripts += tag == "script"


def test_a_counterfactual_batch_reports_what_the_ledger_holds(
    ledger: Ledger, key_path: Path, db_url: str, model_server: ModelServer, tmp_path: Path
) -> None:
    indexes = demo_indexes(ledger, db_url, key_path, 30)
    assert len(indexes) == 30
    seen: list[Progress] = []
    report = shadow(
        ledger,
        indexes,
        AGAINST_CANDIDATE,
        pool=pool_for(model_server),
        concurrency=8,
        progress=seen.append,
    )

    # Every decision replayed once, each replay stored, the shares a partition of 1.
    assert report.total == report.stored == 30
    assert sum(share.count for share in report.verdicts) == 30
    assert sum(share.share for share in report.verdicts) == pytest.approx(1.0)
    assert [share.verdict for share in report.verdicts] == list(VERDICTS)
    counts = {share.verdict: share.count for share in report.verdicts if share.count}
    assert logged_verdicts(ledger.engine, "shadow-1") == counts
    assert [model.name for model in report.models] == [CANDIDATE]
    assert {seen.body["model"] for seen in model_server.requests} == {CANDIDATE}

    lines = report.replays
    assert [line.position for line in lines] == list(range(30))
    assert [line.record_id for line in lines] == [f"shadow-1.{n}" for n in range(30)]
    assert len({line.index for line in lines}) == 30
    assert all(line.index is not None and line.index > max(indexes) for line in lines)
    # The candidate answers unlike the recorded models: some replays differ, and each
    # difference shows on its line.
    assert counts.get("identical", 0) < 30
    for line in lines:
        assert (line.divergence is not None) == (line.verdict == "diverged")
        assert (line.error is not None) == (line.verdict == "failed")
        if line.verdict == "changed":
            assert line.changes or (line.text_only and line.text_changed)
    folded = {field_path(change.path) for line in lines for change in line.changes}
    assert {churn.path for churn in report.changed_fields} == folded

    # Usage deltas are sums over the replays that have both figures.
    paired = [
        line.input_tokens
        for line in lines
        if None not in (line.input_tokens.before, line.input_tokens.after)
    ]
    assert report.input_tokens.replays == len(paired)
    assert report.input_tokens.delta_sum == sum(p.after - p.before for p in paired)  # type: ignore[operator]

    # Progress came once per replay, in order, ending at the total.
    assert [p.done for p in seen] == list(range(1, 31))
    assert all(p.total == 30 for p in seen)
    assert sum(seen[-1].counts.values()) == 30

    # The HTML report links every replay to its own diff section, with no script.
    page = _Links()
    page.feed(render_report(report))
    anchors = {line.anchor for line in lines}
    assert anchors <= page.ids
    assert anchors <= set(page.links)
    assert page.scripts == 0

    # Every replay is a signed ledger record that verifies.
    done = prov(["verify", "--signatures"], db=db_url, key=key_path)
    assert done.code == 0, done.err
    assert "ok:" in done.out


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("fault", "error_type"),
    [("500", "server_error"), ("429", "rate_limited"), ("timeout", "provider_timeout")],
)
def test_provider_failures_are_failed_replays_and_the_batch_goes_on(
    ledger: Ledger,
    db_url: str,
    key_path: Path,
    model_server: ModelServer,
    fault: str,
    error_type: str,
) -> None:
    indexes = demo_indexes(ledger, db_url, key_path, 6)
    if fault == "500":
        model_server.script.fail(500, times=1_000)
    elif fault == "429":
        model_server.script.fail(429, times=1_000, retry_after="0")
    else:
        model_server.script.delay(3.0, times=1_000)
    report = shadow(
        ledger,
        indexes,
        AGAINST_CANDIDATE,
        pool=pool_for(model_server, timeout_s=0.3, max_retries=1),
        concurrency=3,
    )
    assert report.total == report.stored == 6
    assert {line.verdict for line in report.replays} == {"failed"}
    assert {line.error.type for line in report.replays if line.error} == {error_type}
    assert logged_verdicts(ledger.engine, "shadow-1") == {"failed": 6}
    # Each replay was tried, and retried once, before it was given up.
    assert model_server.request_count == 12


@SQLITE_ONLY
def test_an_open_breaker_stops_the_calls(
    ledger: Ledger, db_url: str, key_path: Path, model_server: ModelServer
) -> None:
    indexes = demo_indexes(ledger, db_url, key_path, 12)
    model_server.script.fail(500, times=1_000)
    report = shadow(
        ledger,
        indexes,
        AGAINST_CANDIDATE,
        pool=pool_for(model_server, max_retries=0, failure_threshold=3, cooldown_s=600),
        concurrency=1,
    )
    # Three failures open the circuit; after that no replay reaches the server.
    assert model_server.request_count == 3
    types = [line.error.type for line in report.replays if line.error]
    assert types == ["server_error"] * 3 + ["circuit_open"] * 9
    assert report.stored == 12
    assert logged_verdicts(ledger.engine, "shadow-1") == {"failed": 12}


@SQLITE_ONLY
def test_at_most_concurrency_replays_are_in_flight(
    ledger: Ledger, db_url: str, key_path: Path, model_server: ModelServer
) -> None:
    indexes = demo_indexes(ledger, db_url, key_path, 16)
    # Each call is held 200 ms, so calls overlap however slowly the client issues them: the
    # server's own count of calls in flight shows the bound, with no clock in the assertion.
    model_server.script.latency_s = 0.2
    report = shadow(ledger, indexes, AGAINST_CANDIDATE, pool=pool_for(model_server), concurrency=4)
    assert report.stored == 16
    assert 2 <= model_server.max_in_flight <= 4


def test_a_replay_the_ledger_refuses_is_on_its_line_and_the_batch_goes_on(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    indexes = demo_indexes(ledger, db_url, key_path, 5)
    recorded = list(load_recorded(ledger, indexes))
    # A replay naming its decision by another leaf hash than the decision's entry has.
    recorded[2] = Recorded(recorded[2].decision, bytes(32))
    report = shadow(ledger, indexes, ReplayPlan(mode="deterministic"), pool=None, recorded=recorded)
    assert report.total == 5
    assert report.stored == 4
    refused = report.replays[2]
    assert refused.index is None
    assert refused.append_error is not None
    assert refused.append_error.startswith("replay-of-unknown")
    assert all(line.index is not None for n, line in enumerate(report.replays) if n != 2)
    assert sum(logged_verdicts(ledger.engine, "shadow-1").values()) == 4


@SQLITE_ONLY
def test_a_replay_that_raises_is_recorded_as_failed(
    ledger: Ledger, db_url: str, key_path: Path, model_server: ModelServer
) -> None:
    indexes = demo_indexes(ledger, db_url, key_path, 6)
    # Without the blob bytes read along with each decision, the replay asks the store.
    recorded = [
        Recorded(one.decision, one.leaf_hash)
        for one in load_recorded(ledger, indexes)
        if one.decision.prompt is not None and one.decision.prompt.messages_blob is not None
    ]
    assert recorded, "the demo stores some prompts as blobs"

    def broken_store(digest: str) -> bytes | None:
        raise OSError(f"blob store unreachable for {digest}")

    report = asyncio.run(
        _closing(
            pool := pool_for(model_server),
            run_batch(
                recorded,
                total=len(recorded),
                plan=AGAINST_CANDIDATE,
                pool=pool,
                blobs=broken_store,
                append=ledger.append_replays,
                batch="shadow-1",
                tenant=TENANT,
            ),
        )
    )
    assert {line.verdict for line in report.replays} == {"failed"}
    assert all(
        line.error and line.error.type == "replay_error" and "OSError" in line.error.message
        for line in report.replays
    )
    assert report.stored == len(recorded)


# The report's arithmetic, on arbitrary replays -------------------------------------

_NOW = datetime(2026, 1, 1, tzinfo=UTC)
_MODEL = ModelRef(provider="oa", name="m", version="1")
_POINTERS = st.lists(
    st.sampled_from(["/carrier", "/reasons/0", "/reasons/3", "/eta/days", ""]), max_size=3
)
_COUNT = st.integers(min_value=0, max_value=10_000)


@st.composite
def replays(draw: st.DrawFn) -> ReplayRecord:
    verdict = draw(st.sampled_from(VERDICTS))
    paths = sorted(set(draw(_POINTERS))) if verdict in ("changed", "diverged") else []
    cost = draw(st.one_of(st.none(), st.decimals(min_value=0, max_value=10, places=4)))
    text_only = verdict == "changed" and not paths and draw(st.booleans())
    return ReplayRecord(
        id=f"r-{draw(st.integers(0, 10**9))}",
        tenant="acme",
        service="prov-replay",
        occurred_at=_NOW,
        replay_of="d-1",
        replay_of_leaf="sha256:" + "0" * 64,
        mode="counterfactual",
        recorded_model=_MODEL,
        model=_MODEL,
        verdict=verdict,
        divergence=Divergence(kind="other_tool", recorded_step=1, replayed_step=1, detail="x")
        if verdict == "diverged"
        else None,
        error=StepError(type="server_error", message="x") if verdict == "failed" else None,
        diff=Diff(
            decision=[FieldChange(path=p, change="changed", before=1, after=2) for p in paths],
            text_only=text_only,
            text_changed=text_only or draw(st.booleans()),
            input_tokens=IntDelta(draw(_COUNT), draw(st.one_of(st.none(), _COUNT))),
            latency_ms=IntDelta(draw(_COUNT), draw(st.one_of(st.none(), _COUNT))),
            cost=MoneyDelta(Decimal("0.5"), cost, "USD"),
        ),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(replays(), max_size=40), st.randoms())
def test_the_report_adds_up(records: list[ReplayRecord], rng: Any) -> None:
    order = list(range(len(records)))
    rng.shuffle(order)  # replays complete in any order
    builder = ReportBuilder(batch="b", tenant="acme", mode="counterfactual")
    for position in order:
        builder.add(records[position], position, position + 100)
    report = builder.report(_NOW)

    assert report.total == len(records)
    assert [line.position for line in report.replays] == list(range(len(records)))
    assert [line.record_id for line in report.replays] == [r.id for r in records]
    assert sum(v.count for v in report.verdicts) == len(records)
    if records:
        assert sum(v.share for v in report.verdicts) == pytest.approx(1.0)
    for share in report.verdicts:
        assert share.count == sum(r.verdict == share.verdict for r in records)
    for churn in report.changed_fields:
        touched = [
            r for r in records if churn.path in {field_path(c.path) for c in r.diff.decision}
        ]
        assert churn.count == len(touched)
    assert report.text_only == sum(r.diff.text_only for r in records)
    counts = [f.count for f in report.changed_fields]
    assert counts == sorted(counts, reverse=True)

    pairs = [r.diff.input_tokens for r in records if r.diff.input_tokens.after is not None]
    assert report.input_tokens.replays == len(pairs)
    assert report.input_tokens.delta_sum == sum(p.after - p.before for p in pairs)  # type: ignore[operator]
    priced = [r.diff.cost for r in records if r.diff.cost.after is not None]
    if priced:
        [usd] = report.cost
        assert usd.delta_sum == sum(c.after - c.before for c in priced)  # type: ignore[operator]
    latency = report.latency_ms
    if latency.replays:
        assert latency.delta_p50 is not None
        assert latency.delta_p95 is not None
        assert latency.delta_p50 <= latency.delta_p95
        assert latency.before_p50 <= latency.before_p95  # type: ignore[operator]


@given(st.lists(st.integers(-(10**6), 10**6), min_size=1), st.floats(0.01, 1.0))
def test_a_percentile_is_a_value_of_the_list_and_grows_with_the_fraction(
    values: list[int], fraction: float
) -> None:
    ordered = sorted(values)
    found = percentile(ordered, fraction)
    assert found in ordered
    assert percentile(ordered, 1.0) == ordered[-1]
    assert found <= percentile(ordered, min(1.0, fraction + 0.1))  # type: ignore[operator]
    # At least that fraction of the values is at or below it.
    assert sum(v <= found for v in ordered) >= fraction * len(ordered)  # type: ignore[operator]


@given(
    st.lists(
        st.one_of(st.from_regex(r"[a-z_]{1,6}", fullmatch=True), st.integers(0, 999).map(str)),
        max_size=6,
    )
)
def test_field_paths_fold_array_positions(parts: list[str]) -> None:
    pointer = "".join("/" + part for part in parts)
    folded = field_path(pointer)
    assert field_path(folded) == folded
    assert folded.count("/") == pointer.count("/")
    assert not any(part.isdigit() for part in folded.split("/"))
    assert [p for p in folded.split("/") if p != "*"] == [
        p for p in pointer.split("/") if not p.isdigit()
    ]


@SQLITE_ONLY
def test_prompt_blobs_are_read_with_the_decisions_and_an_erased_one_fails_its_replay(
    ledger: Ledger, db_url: str, key_path: Path, model_server: ModelServer
) -> None:
    indexes = demo_indexes(ledger, db_url, key_path, 6)
    recorded = list(load_recorded(ledger, indexes))
    by_blob = [one for one in recorded if one.decision.prompt and one.decision.prompt.messages_blob]
    assert by_blob
    for one in by_blob:
        assert one.decision.prompt is not None
        assert set(one.blobs) == {one.decision.prompt.messages_blob}
    erased = by_blob[0].decision
    assert erased.prompt is not None
    assert erased.prompt.messages_blob is not None
    ledger.blobs.erase_now(TENANT, [erased.prompt.messages_blob], now_us=now_micros())

    report = shadow(ledger, indexes, AGAINST_CANDIDATE, pool=pool_for(model_server))
    [line] = [line for line in report.replays if line.replay_of == erased.id]
    assert line.verdict == "failed"
    assert line.error is not None
    assert line.error.type == "blob_missing"
    assert report.stored == 6
    assert sum(line.verdict == "failed" for line in report.replays) == 1
