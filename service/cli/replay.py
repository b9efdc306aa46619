"""`prov replay`: re-run one recorded decision, or shadow-evaluate a model on many.

One decision (`prov replay ID --tenant T`): it is replayed against the local ledger,
the replay is appended as a signed record, and the recorded and replayed runs are shown
side by side with the point of divergence, the decision diff, the usage deltas and the
verdict (`--json`: the replay record). A failed replay exits 1; any other verdict, even a
divergence, is an answer and exits 0.

A batch (`prov replay --where FILTER --against MODEL --tenant T`): the decisions the
filter selects are replayed with bounded concurrency under a progress bar, each replay is
appended as it completes, and `report.json` and `report.html` are written to `--report`.

Without `--mode`, naming a model (`--model`/`--against`) or parameters means
counterfactual, and naming neither pinned. Models are called through the registry of
`--registry` (default PROV_REPLAY_REGISTRY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ledger.errors import BadRequest, NotFound
from ledger.ledger import Ledger
from ledger.records.replay import MODES, Mode
from query.audit.why import find_decision_index
from replay.batch import batch as replays
from replay.batch.jobs import new_job_id
from replay.batch.report_html import write_report
from replay.batch.shadow_report import encode_report
from replay.engine.engine import ReplayPlan
from replay.providers import ProviderPool, RegistryError, load_registry
from service.cli.common import Failed, emit, ledger_options, open_ledger
from service.cli.replay_inputs import (
    DEFAULT_BATCH_LIMIT,
    MAX_BATCH,
    check_plan,
    parse_model,
    parse_parameter,
    parse_where,
    resolve_mode,
    select_decisions,
)
from service.cli.replay_view import render_batch, render_replay
from service.settings import Settings

T = TypeVar("T")


@click.command("replay")
@click.argument("record_id", required=False)
@click.option("--tenant", required=True, help="The decision's tenant in the local ledger")
@click.option(
    "--where",
    metavar="FILTER",
    help="Replay a batch: the decisions this filter selects, as the query string "
    "GET /v1/decisions takes (decision_type=order.route&model=NAME)",
)
@click.option("--mode", type=click.Choice(MODES), help="Default: pinned, or counterfactual")
@click.option(
    "--model",
    "--against",
    "model_text",
    metavar="NAME[@VERSION]",
    help="Replay against this model (counterfactual)",
)
@click.option(
    "--param",
    "param_texts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a sampling parameter: temperature, top_p, top_k, seed, max_tokens, "
    "stop_sequences (repeatable; VALUE is JSON or a string)",
)
@click.option(
    "--registry",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The model registry (TOML) [PROV_REPLAY_REGISTRY]",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_BATCH),
    help=f"A batch: at most this many decisions, newest first [{DEFAULT_BATCH_LIMIT}]",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    help=f"A batch: replays in flight [{replays.DEFAULT_CONCURRENCY}]",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="A batch: where report.json and report.html go [replay-report]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the replay record (a batch: report)")
@ledger_options
def replay(
    *,
    settings: Settings,
    record_id: str | None,
    tenant: str,
    where: str | None,
    mode: Mode | None,
    model_text: str | None,
    param_texts: tuple[str, ...],
    registry: Path | None,
    limit: int | None,
    concurrency: int | None,
    report_dir: Path | None,
    as_json: bool,
) -> None:
    """Replay decision RECORD_ID, or a batch of decisions (--where), and append the replays.

    \b
    prov replay order-7f3a --tenant acme                    # pinned: the recorded model
    prov replay order-7f3a --model gpt-4.1@2025-04-14 --tenant acme
    prov replay --where "decision_type=order.route" --against gpt-4.1 --tenant acme
    """
    if (record_id is None) == (where is None):
        raise click.UsageError("give a decision RECORD_ID, or --where FILTER for a batch")
    batch_only = {"--limit": limit, "--concurrency": concurrency, "--report": report_dir}
    if record_id is not None and (given := [k for k, v in batch_only.items() if v is not None]):
        raise click.UsageError(f"{', '.join(given)} apply to a batch (--where)")
    try:
        model, version = parse_model(model_text) if model_text else (None, None)
        parameters = dict(parse_parameter(text) for text in param_texts)
        plan = ReplayPlan(
            mode=resolve_mode(mode, model=model, version=version, parameters=parameters),
            model=model,
            version=version,
            parameters=parameters,
        )
    except BadRequest as error:
        raise Failed(error.detail) from None
    ledger = open_ledger(settings)
    pool = _pool(plan, registry or settings.replay_registry)
    if record_id is not None:
        _replay_one(ledger, pool, plan, tenant, record_id, as_json)
    else:
        assert where is not None
        _replay_batch(
            ledger,
            pool,
            plan,
            tenant,
            where,
            limit=limit or DEFAULT_BATCH_LIMIT,
            concurrency=concurrency or replays.DEFAULT_CONCURRENCY,
            report_dir=report_dir or Path("replay-report"),
            as_json=as_json,
        )


def _pool(plan: ReplayPlan, registry: Path | None) -> ProviderPool | None:
    """The provider pool over the registry, when the plan calls models."""
    if plan.mode == "deterministic":
        return None
    if registry is None:
        raise Failed(
            f"a {plan.mode} replay calls a model: give --registry FILE or set "
            "PROV_REPLAY_REGISTRY (a deterministic replay needs neither)"
        )
    try:
        return ProviderPool(load_registry(registry))
    except RegistryError as error:
        raise Failed(str(error)) from None


def _check(plan: ReplayPlan, pool: ProviderPool | None, models: list[tuple[str, str]]) -> None:
    try:
        check_plan(plan, pool, models)
    except BadRequest as error:
        raise Failed(error.detail) from None


def _run(pool: ProviderPool | None, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` on a new event loop, and close the pool's connections after it."""

    async def closing() -> T:
        try:
            return await work
        finally:
            if pool is not None:
                await pool.aclose()

    return asyncio.run(closing())


def _replay_one(
    ledger: Ledger,
    pool: ProviderPool | None,
    plan: ReplayPlan,
    tenant: str,
    record_id: str,
    as_json: bool,
) -> None:
    try:
        with ledger.engine.connect() as connection:
            index = find_decision_index(connection, tenant, record_id)
    except NotFound as error:
        raise Failed(f"{error.detail} in tenant {tenant!r}") from None
    [recorded] = replays.load_recorded(ledger, [index])
    decision = recorded.decision
    _check(plan, pool, [(decision.model.name, decision.model.version)])

    record = _run(
        pool,
        replays.replay_one(
            recorded,
            plan=plan,
            pool=pool,
            blobs=replays.ledger_blobs(ledger.blobs, tenant),
            tools=None,
            record_id=new_job_id(),
            batch=None,
        ),
    )
    receipt = ledger.append_replay(record)
    if as_json:
        emit(record)
    else:
        render_replay(decision, record, receipt.index, Console(soft_wrap=False))
    if record.verdict == "failed":
        assert record.error is not None
        raise Failed(f"the replay failed: {record.error.type}: {record.error.message}")


def _replay_batch(
    ledger: Ledger,
    pool: ProviderPool | None,
    plan: ReplayPlan,
    tenant: str,
    where: str,
    *,
    limit: int,
    concurrency: int,
    report_dir: Path,
    as_json: bool,
) -> None:
    try:
        with ledger.engine.connect() as connection:
            selected = select_decisions(connection, parse_where(tenant, where), limit)
    except BadRequest as error:
        raise Failed(f"--where: {error.detail}") from None
    if not selected:
        raise Failed(f"no decision of tenant {tenant!r} matches {where!r}")
    _check(plan, pool, [(summary.model, summary.model_version) for summary in selected])
    indexes = [summary.index for summary in selected]
    batch = new_job_id()
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )

    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("", total=len(indexes))
        report = _run(
            pool,
            replays.run_batch(
                replays.load_recorded(ledger, indexes),
                total=len(indexes),
                plan=plan,
                pool=pool,
                blobs=replays.ledger_blobs(ledger.blobs, tenant),
                append=ledger.append_replays,
                batch=batch,
                tenant=tenant,
                concurrency=concurrency,
                progress=lambda now: bar.update(
                    task,
                    completed=now.done,
                    description=" ".join(f"{v} {n}" for v, n in sorted(now.counts.items())),
                ),
            ),
        )
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_bytes(encode_report(report))
    html = write_report(report, report_dir / "report.html")
    if as_json:
        emit(report)
    else:
        render_batch(report, str(html), Console(soft_wrap=False))
    errors = [line.error for line in report.replays if line.error is not None]
    if errors and len(errors) == report.total:
        # A model server down or a registry pointing nowhere: say so, not "done".
        raise Failed(f"every replay failed; the first: {errors[0].type}: {errors[0].message}")


COMMANDS = (replay,)
