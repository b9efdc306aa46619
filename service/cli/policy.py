"""`prov policy`: register versioned policy documents, list them, and re-evaluate decisions.

- `prov policy register FILE`: FILE is the document (a Cedar policy set, or the Python
  module that holds a `module:function` policy); the record names its policy id, version,
  engine and schema, and is signed with the owning service's registered key and appended
  like any record. Registering the same document again answers the stored registration
  (status "existing"); another document under a registered version is refused.
- `prov policy list`: the tenant's registered versions, one JSON line each.
- `prov policy check ID [--against VERSION]`: the decision's recorded policy inputs
  evaluated under the version that judged it (pinned: it must reproduce the recorded
  result) or under VERSION of the same policy, appended as a signed policy-check record.
  `--where FILTER` checks a batch and writes report.json and report.html. A pinned check
  that does not reproduce, or that fails, exits 1 after printing what it found.

`checked_indexes` is shared with `POST /v1/policy-checks`: one decision by id, or a batch by
the filter `GET /v1/decisions` takes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
from sqlalchemy import Connection

from ledger.errors import BadRequest, RecordRejected
from ledger.indexes.policies import list_policies
from ledger.keys.signing import load_signing_key, sign_policy
from ledger.records.policy import (
    PolicyCheckRecord,
    PolicyRecord,
    document_digest,
    policy_record_id,
)
from query.audit.why import find_decision_index
from replay.policy.check import Checked, PolicyChecker
from replay.policy.report import PolicyReport, encode_report
from replay.policy.report_html import write_report
from service.cli.common import Failed, emit, ledger_options, open_ledger
from service.cli.replay_inputs import DEFAULT_BATCH_LIMIT, MAX_BATCH, parse_where, select_decisions
from service.settings import Settings


def checked_indexes(
    connection: Connection,
    tenant: str,
    *,
    decision_id: str | None,
    where: str | None,
    limit: int | None,
) -> list[int]:
    """The log indexes of the decisions a check names: one by id, or up to `limit` that the
    filter `where` selects, newest first."""
    if (decision_id is None) == (where is None):
        raise BadRequest(
            "give `decision_id` to check one decision, or `where` to check a batch", pointer=""
        )
    if where is None:
        assert decision_id is not None
        return [find_decision_index(connection, tenant, decision_id)]
    selected = select_decisions(
        connection, parse_where(tenant, where), limit or DEFAULT_BATCH_LIMIT
    )
    if not selected:
        raise BadRequest("no decision of this tenant matches `where`", pointer="/where")
    return [summary.index for summary in selected]


@click.group("policy")
def policy() -> None:
    """Policy as code: registered policy versions, and decisions re-evaluated under them."""


@policy.command("register")
@click.argument("document", type=click.File("rb"))
@click.option("--tenant", required=True)
@click.option("--service", required=True, help="The service that owns the policy")
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="That service's registered Ed25519 private key (PEM)",
)
@click.option("--keyid", help="The keyid it is registered under (default: derived)")
@click.option("--policy-id", required=True, help="e.g. lending/personal_loan")
@click.option("--version", "version", required=True, help="e.g. v2; registered once")
@click.option("--engine", required=True, help="cedar or python")
@click.option(
    "--schema",
    "schema_file",
    type=click.File("rb"),
    help="The inputs' schema, JSON: Cedar's JSON schema (required for cedar), or a JSON Schema",
)
@click.option(
    "--entry-point",
    help="python: module:function; cedar: the action, when the schema declares several",
)
@click.option("--description", help="One line on what the version changes")
@ledger_options
def register(
    *,
    settings: Settings,
    document: IO[bytes],
    tenant: str,
    service: str,
    signing_key: Path,
    keyid: str | None,
    policy_id: str,
    version: str,
    engine: str,
    schema_file: IO[bytes] | None,
    entry_point: str | None,
    description: str | None,
) -> None:
    """Register the policy document FILE as VERSION of --policy-id; prints the receipt."""
    content = document.read()
    try:
        text = content.decode()
        schema = None if schema_file is None else json.loads(schema_file.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Failed(f"{document.name} or its schema is not UTF-8 JSON/text: {error}") from None
    if schema is not None and not isinstance(schema, dict):
        raise Failed("--schema must hold a JSON object")
    try:
        key = load_signing_key(signing_key)
    except ValueError as error:
        raise Failed(f"{signing_key}: {error}") from None
    record = PolicyRecord(
        id=policy_record_id(policy_id, version),
        tenant=tenant,
        service=service,
        registered_at=datetime.now(UTC),
        engine=engine,
        policy_id=policy_id,
        version=version,
        document=text,
        digest=document_digest(content),
        schema=schema,
        entry_point=entry_point,
        description=description,
    )
    [result] = open_ledger(settings).append([sign_policy(record, key, keyid)])
    if isinstance(result, RecordRejected):
        raise result
    emit(result)


@policy.command("list")
@click.option("--tenant", required=True)
@click.option("--policy-id", help="Only the versions of this policy")
@ledger_options
def list_command(settings: Settings, tenant: str, policy_id: str | None) -> None:
    """List the tenant's registered policy versions, one JSON line each."""
    with open_ledger(settings).engine.connect() as connection:
        for entry in list_policies(connection, tenant, policy_id):
            emit(entry.to_json())


@policy.command("check")
@click.argument("record_id", required=False)
@click.option("--tenant", required=True, help="The decision's tenant in the local ledger")
@click.option(
    "--against",
    metavar="VERSION",
    help="Evaluate this version of the decision's policy (default: the pinned one)",
)
@click.option(
    "--where",
    metavar="FILTER",
    help="Check a batch: the decisions this filter selects, as the query string "
    "GET /v1/decisions takes (decision_type=loan.approve&since=…)",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_BATCH),
    help=f"A batch: at most this many decisions, newest first [{DEFAULT_BATCH_LIMIT}]",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="A batch: where report.json and report.html go [policy-check-report]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the check record (a batch: report)")
@ledger_options
def check(
    *,
    settings: Settings,
    record_id: str | None,
    tenant: str,
    against: str | None,
    where: str | None,
    limit: int | None,
    report_dir: Path | None,
    as_json: bool,
) -> None:
    """Re-evaluate decision RECORD_ID's recorded policy inputs, or a batch's (--where), and
    append each check as a signed record.

    \b
    prov policy check loan-0001 --tenant acme                 # pinned: must reproduce
    prov policy check loan-0001 --against v2 --tenant acme    # what would v2 decide?
    prov policy check --where "decision_type=loan.approve" --against v2 --tenant acme
    """
    if record_id is not None and (limit is not None or report_dir is not None):
        raise click.UsageError("--limit and --report apply to a batch (--where)")
    ledger = open_ledger(settings)
    with ledger.engine.connect() as connection:
        indexes = checked_indexes(
            connection, tenant, decision_id=record_id, where=where, limit=limit
        )
    checker = PolicyChecker(ledger)
    if record_id is not None:
        checked = checker.check_one(indexes[0], against)
        if as_json:
            emit(checked.record)
        else:
            _show_check(checked)
        if checked.record.verdict in ("mismatch", "error"):
            raise Failed(_finding(checked.record))
        return
    report = checker.check_batch(tenant, indexes, against)
    folder = report_dir or Path("policy-check-report")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_bytes(encode_report(report))
    html = write_report(report, folder / "report.html")
    if as_json:
        emit(report)
    else:
        _show_batch(report, html)
    counts = {share.verdict: share.count for share in report.verdicts}
    if against is None and (counts["mismatch"] or counts["error"]):
        raise Failed(
            f"{counts['mismatch']} decisions did not reproduce under their pinned policy and "
            f"{counts['error']} could not be evaluated: findings (see {html})"
        )
    if report.checked and counts["error"] == report.checked:
        raise Failed(f"every check failed (see {html})")


def _finding(record: PolicyCheckRecord) -> str:
    if record.error is not None:
        return f"the policy could not be evaluated: {record.error.type}: {record.error.message}"
    return (
        f"{record.policy.policy_id} {record.policy.version} did not reproduce the recorded "
        f"result of {record.decision_id!r}: a finding"
    )


def _outcome(result: str, reasons: list[str]) -> str:
    return result + (f"  ({', '.join(reasons)})" if reasons else "")


def _show_check(checked: Checked) -> None:
    record = checked.record
    ref = record.policy
    lines: list[tuple[str, Any]] = [
        ("decision", record.decision_id),
        ("policy", f"{ref.engine} {ref.policy_id} {ref.version} ({ref.digest[:19]}…)"),
        ("mode", record.mode),
        ("recorded", _outcome(record.recorded.result, record.recorded.reasons)),
    ]
    if record.outcome is not None:
        lines.append(("evaluated", _outcome(record.outcome.result, record.outcome.reasons)))
    if record.error is not None:
        lines.append(("error", f"{record.error.type}: {record.error.message}"))
    lines += [
        ("verdict", record.verdict),
        ("check", f"{record.id} at log index {checked.receipt.index}"),
    ]
    for label, value in lines:
        click.echo(f"{label:>10}  {value}")


def _show_batch(report: PolicyReport, html: Path) -> None:
    counts = ", ".join(f"{v.count} {v.verdict}" for v in report.verdicts if v.count)
    click.echo(
        f"batch {report.batch}: {report.checked} of {report.total} decisions checked "
        f"({report.stored} appended): {counts or 'none'}"
    )
    for move in report.transitions:
        click.echo(f"  {move.before} -> {move.after}: {move.count}")
    for churn in report.reasons[:10]:
        click.echo(f"  reason {churn.reason}: +{churn.added} -{churn.removed}")
    for item in report.unchecked[:5]:
        click.echo(f"  not checked: {item.decision_id}: {item.kind}: {item.detail}")
    click.echo(f"report: {html}")


COMMANDS = (policy,)
