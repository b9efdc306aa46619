"""`prov fresh` and `prov verify-freshness`: may a decision still be relied on, and the check
of that answer offline (docs/freshness.md)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.text import Text

from ledger.indexes.freshness import Rebuilt, rebuild
from ledger.log.sequencer import now_micros
from ledger.monitors.reindex import MonitorsRebuilt, rebuild_monitors
from ledger.storage.db import write_transaction
from query.audit.freshness import freshness_answer
from query.audit.freshness_check import verify_freshness
from query.audit.freshness_format import describe_reason
from service.cli.audit import (
    get_json,
    load_trust,
    print_check,
    print_value,
    read_json,
    source_options,
    trust_options,
)
from service.cli.common import Failed, ledger_options, open_ledger, report_differing
from service.cli.erasure import ErasureIndexes, rebuild_erasure_indexes, report_erasure_indexes
from service.settings import Settings

_STYLE = {"fresh": "bold green", "stale": "bold red", "unknown": "bold yellow"}


@click.command("fresh")
@click.argument("record_id")
@click.option("--no-evidence", is_flag=True, help="Only the signed verdict, without evidence")
@click.option("--exit-status", is_flag=True, help="Exit 0 when fresh, 3 when stale, 4 when unknown")
@source_options
@ledger_options
def fresh(
    settings: Settings,
    record_id: str,
    no_evidence: bool,
    exit_status: bool,
    remote: tuple[str, str | None] | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Whether decision RECORD_ID may still be relied on: fresh, stale (and why) or unknown.

    Save it with --json and re-check it offline with `prov verify-freshness`."""
    if remote is not None:
        answer = get_json(
            remote,
            f"/v1/decisions/{record_id}/freshness",
            {"evidence": "false" if no_evidence else "true"},
        )
    else:
        assert tenant is not None
        ledger = open_ledger(settings)
        with ledger.engine.connect() as connection:
            answer = freshness_answer(
                connection,
                ledger.signer,
                ledger.origin,
                tenant,
                record_id,
                now_us=now_micros(),
                evidence=not no_evidence,
            )
    print_value(answer, as_json, render_freshness)
    if exit_status and answer["state"] != "fresh":
        raise click.exceptions.Exit(3 if answer["state"] == "stale" else 4)


def render_freshness(answer: dict[str, Any], console: Console) -> None:
    state = answer["state"]
    console.print(
        Text(f"{answer['id']} ", style="bold")
        + Text(state, style=_STYLE[state])
        + Text(f"  (entry {answer['index']}, checked {answer['checked_at']})", style="dim")
    )
    if answer.get("valid_until"):
        console.print(f"  valid until {answer['valid_until']}")
    for reason in answer["reasons"]:
        console.print("  · " + describe_reason(reason))


@click.command("verify-freshness")
@click.argument("answer_file", type=click.File("rb"))
@trust_options
def verify_freshness_command(
    answer_file: IO[bytes], verifier_key: str | None, state_path: Path | None
) -> None:
    """Check a saved freshness answer offline: the ledger's signature, the checkpoint, the
    decision's and each change's entry, inclusion and signature. No server is contacted."""
    verifier, _trusted = load_trust(verifier_key, state_path)
    answer = read_json(answer_file)
    if not isinstance(answer, dict):
        raise Failed(f"{answer_file.name}: not a freshness answer")
    result = verify_freshness(answer, verifier)
    print_check(result, "answer", f"the answer ({answer.get('state')}) verifies offline")


class _CheckOnly(Exception):
    """Raised inside the rebuild's transaction to roll it back after a check."""

    def __init__(
        self, rebuilt: Rebuilt, monitors: MonitorsRebuilt, erasures: ErasureIndexes
    ) -> None:
        self.rebuilt = rebuilt
        self.monitors = monitors
        self.erasures = erasures


@click.command("reindex")
@click.option(
    "--check",
    is_flag=True,
    help="Rebuild in a transaction that is rolled back, and report what differs",
)
@ledger_options
def reindex(settings: Settings, check: bool) -> None:
    """Rebuild the freshness index (dependencies, context changes, stale marks), the
    monitor indexes (versions, breaches, history, flagged decisions) and the erasure
    indexes (blob references, erasures, retention rules, holds) from the log alone;
    with --check, only compare them with those the ledger holds (exit 1 if they differ).
    Appends wait for the rebuild, which holds the log's write lock."""
    ledger = open_ledger(settings)
    try:
        with write_transaction(ledger.engine) as connection:
            rebuilt = rebuild(connection)
            monitors = rebuild_monitors(connection)
            erasures = rebuild_erasure_indexes(connection)
            if check:
                raise _CheckOnly(rebuilt, monitors, erasures)
    except _CheckOnly as done:
        rebuilt, monitors, erasures = done.rebuilt, done.monitors, done.erasures
    _report_monitors(monitors, check)
    report_erasure_indexes(erasures, check)
    click.echo(
        f"{'checked' if check else 'rebuilt'} the freshness index from {rebuilt.entries} "
        f"decisions and context changes: {rebuilt.marks} stale marks"
    )
    if rebuilt.skipped:
        click.echo(f"skipped entries that no longer decode: {rebuilt.skipped[:20]}", err=True)
    for label, marks in (
        ("missing from", rebuilt.missing),
        ("not given by the log, in", rebuilt.unexpected),
    ):
        for index, key, version, change in marks[:20]:
            click.echo(
                f"mark {label} the index: decision {index} on {key}@{version} by change {change}",
                err=True,
            )
    if not rebuilt.consistent:
        what = "differs from the log" if check else "differed from the log and was rebuilt"
        if check:
            raise Failed(f"the freshness index {what}")
        click.echo(f"the freshness index {what}")
    if check and not monitors.consistent:
        raise Failed("the monitor indexes differ from the log")
    if check and not erasures.consistent:
        raise Failed("the erasure indexes differ from the log")


def _report_monitors(rebuilt: MonitorsRebuilt, check: bool) -> None:
    click.echo(
        f"{'checked' if check else 'rebuilt'} the monitor indexes: {rebuilt.versions} "
        f"versions, {rebuilt.breaches} breaches, {rebuilt.flags} flagged decisions, "
        f"{rebuilt.samples} history rows"
    )
    report_differing(rebuilt.missing, rebuilt.unexpected)
    if not rebuilt.consistent and not check:
        click.echo("the monitor indexes differed from the log and were rebuilt")


COMMANDS = (fresh, verify_freshness_command, reindex)
