"""`prov why`, `prov search` and `prov verify-report`: the auditor's commands.

`why` and `search` read either the local ledger (an operator, naming the tenant) or a
served one with an API key (an auditor, whose key fixes the tenant). `verify-report` needs
neither: it checks a saved why-report against a trusted verifier key alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import httpx
import msgspec
from rich.console import Console
from rich.text import Text

from ledger.errors import NoteError
from ledger.keys.signing import public_key_from_pem
from ledger.log.note import NoteVerifier
from ledger.log.sequencer import now_micros
from query.audit.auditor import TrustedState, resolve_policy
from query.audit.report_check import ReportCheck, verify_report
from query.audit.search import ATTESTATIONS, DecisionFilter, search
from query.audit.why import why_report
from service.cli.common import Failed, emit, ledger_options, open_ledger
from service.cli.times import TIME, TIME_HELP, format_time
from service.cli.why_view import render_search, render_why
from service.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def source_options(command: F) -> F:
    """Where to read: `--url` (with `--api-key`) for a served ledger, else the local one
    with `--tenant`."""

    @click.option("--tenant", help="The tenant, when reading the local ledger")
    @click.option("--url", help="A served ledger, e.g. http://127.0.0.1:8080")
    @click.option("--api-key", envvar="PROV_API_KEY", help="Audit API key for --url")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables")
    @functools.wraps(command)
    def wrapper(tenant: str | None, url: str | None, api_key: str | None, **kwargs: Any) -> Any:
        if (url is None) == (tenant is None):
            raise click.UsageError("give either --tenant (local ledger) or --url (served)")
        if url is not None and not api_key:
            raise click.UsageError("--url needs --api-key (or PROV_API_KEY)")
        return command(remote=(url, api_key) if url else None, tenant=tenant, **kwargs)

    return wrapper  # type: ignore[return-value]


def get_json(remote: tuple[str, str | None], path: str, params: dict[str, Any]) -> Any:
    url, api_key = remote
    try:
        answer = httpx.get(
            url.rstrip("/") + path,
            params={k: v for k, v in params.items() if v is not None},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=60,
        )
    except httpx.HTTPError as error:
        raise Failed(f"cannot reach {url}: {error}") from None
    if answer.status_code != 200:
        try:
            problem = answer.json()
            detail = f"{problem.get('title')}: {problem.get('detail')}"
        except ValueError:
            detail = answer.text[:200]
        raise Failed(f"{answer.status_code} {detail}")
    return answer.json()


def print_value(value: Any, as_json: bool, render: Callable[[Any, Console], None]) -> None:
    if as_json:
        emit(value)
    else:
        render(value, Console(soft_wrap=False))


@click.command()
@click.argument("record_id")
@source_options
@ledger_options
def why(
    settings: Settings,
    record_id: str,
    remote: tuple[str, str | None] | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Why decision RECORD_ID was made: what it saw and did, and what verifies.

    Save it with --json and re-check it offline with `prov verify-report`."""
    if remote is not None:
        report = get_json(remote, f"/v1/decisions/{record_id}/why", {})
    else:
        assert tenant is not None
        ledger = open_ledger(settings)
        with ledger.engine.connect() as connection:
            report = why_report(
                connection, ledger.verifier, ledger.origin, tenant, record_id, now_us=now_micros()
            )
    print_value(report, as_json, render_why)


@click.command("search")
@click.option("--service")
@click.option("--type", "decision_type", help="decision_type, e.g. loan.approve")
@click.option("--model", help="Model name")
@click.option("--model-version")
@click.option("--from", "occurred_from", type=TIME, help=f"occurred_at >= this time ({TIME_HELP})")
@click.option("--to", "occurred_to", type=TIME, help="occurred_at < this time")
@click.option("--subject")
@click.option("--delegator", help="The root delegator's DID")
@click.option(
    "--root-principal",
    help="Who authorized it: the enrolled principal at the chain root, e.g. alice@example.com",
)
@click.option("--output", "output_match", help="PATH=VALUE in output.decision: approved=true")
@click.option(
    "--freshness",
    type=click.Choice(["stale", "fresh", "unknown"]),
    help="Decisions in this state now (docs/freshness.md)",
)
@click.option("--stale", is_flag=True, help="Decisions that are stale now: --freshness stale")
@click.option(
    "--since", "stale_since", type=TIME, help="With --stale: those that went stale at or after"
)
@click.option(
    "--attestation",
    type=click.Choice(ATTESTATIONS),
    help="producer-signed (the service's own key) or ledger-attested (built by the ledger "
    "from OpenTelemetry spans)",
)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page")
@source_options
@ledger_options
def search_command(
    *,
    settings: Settings,
    remote: tuple[str, str | None] | None,
    tenant: str | None,
    as_json: bool,
    service: str | None,
    decision_type: str | None,
    model: str | None,
    model_version: str | None,
    occurred_from: datetime | None,
    occurred_to: datetime | None,
    subject: str | None,
    delegator: str | None,
    root_principal: str | None,
    output_match: str | None,
    freshness: str | None,
    stale: bool,
    stale_since: datetime | None,
    attestation: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """Find decisions, newest first."""
    if stale and freshness not in (None, "stale"):
        raise click.UsageError("--stale is --freshness stale")
    params = {
        "service": service,
        "decision_type": decision_type,
        "model": model,
        "model_version": model_version,
        # One spelling for the local filter and the server: UTC with `Z`.
        "from": None if occurred_from is None else format_time(occurred_from),
        "to": None if occurred_to is None else format_time(occurred_to),
        "subject": subject,
        "delegator": delegator,
        "root_principal": root_principal,
        "output": output_match,
        "freshness": "stale" if stale else freshness,
        "since": None if stale_since is None else format_time(stale_since),
        "attestation": attestation,
    }
    if remote is not None:
        page = get_json(remote, "/v1/decisions", params | {"limit": limit, "cursor": cursor})
    else:
        assert tenant is not None
        where = DecisionFilter.from_query(tenant, params)
        with open_ledger(settings).engine.connect() as connection:
            page = msgspec.to_builtins(search(connection, where, cursor=cursor, limit=limit))
    print_value(page, as_json, render_search)


def trust_options(command: F) -> F:
    """`--verifier-key` and `--state`: the ledger key an offline check trusts, given
    outright or pinned by a `prov audit` state file (`load_trust` reads them)."""
    command = click.option(
        "--state",
        "state_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A `prov audit` state file: its pinned key",
    )(command)
    return click.option("--verifier-key", help="The log's note verifier key")(command)


def witness_options(command: F) -> F:
    """`--witness` (repeatable) and `--witnesses-required`: the auditor's witness policy,
    k of these n witness keys (`query.audit.auditor.resolve_policy` reads them)."""
    command = click.option(
        "--witnesses-required",
        type=click.IntRange(min=1),
        help="How many of the --witness keys must have cosigned  [default: all of them]",
    )(command)
    return click.option(
        "--witness",
        "witnesses",
        multiple=True,
        metavar="KEY",
        help="A witness's verifier key, name+id+base64(0x04||key); repeat for each witness",
    )(command)


@click.command("verify-report")
@click.argument("report_file", type=click.File("rb"))
@click.option("--verifier-key", help="The log's note verifier key")
@click.option(
    "--state",
    "state_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A `prov audit` state file: its pinned key, witness policy and trusted checkpoint",
)
@click.option(
    "--service-key",
    "service_key_file",
    type=click.File("rb"),
    help="PEM public key of the service, to pin instead of the key the report names",
)
@witness_options
def verify_report_command(
    report_file: IO[bytes],
    verifier_key: str | None,
    state_path: Path | None,
    service_key_file: IO[bytes] | None,
    witnesses: tuple[str, ...],
    witnesses_required: int | None,
) -> None:
    """Check a saved why-report offline: checkpoint signature, entry, inclusion proof,
    payload, record signature and analysis. No server is contacted.

    With --witness keys (or a policy pinned in the --state file), the decision must be in
    a checkpoint that enough of those witnesses cosigned."""
    verifier, trusted = load_trust(verifier_key, state_path)
    policy, _ = resolve_policy(
        trusted.witnesses if trusted else None, witnesses, witnesses_required
    )
    report = read_json(report_file)
    service_key = None
    if service_key_file is not None:
        try:
            service_key = public_key_from_pem(service_key_file.read())
        except ValueError as error:
            raise Failed(f"{service_key_file.name}: {error}") from None
    result = verify_report(
        report, verifier, trusted=trusted, service_key=service_key, policy=policy
    )
    print_check(result, "report", "every claim in the report verifies offline")


def load_trust(
    verifier_key: str | None, state_path: Path | None
) -> tuple[NoteVerifier, TrustedState | None]:
    """The ledger key to trust (`--verifier-key`, else the one a `prov audit` state file
    pinned) and that file's trusted checkpoint."""
    trusted = None
    if state_path is not None:
        try:
            trusted = msgspec.json.decode(state_path.read_bytes(), type=TrustedState)
        except msgspec.DecodeError as error:
            raise Failed(f"{state_path}: not an audit state file: {error}") from None
    key_text = verifier_key or (trusted.verifier_key if trusted else None)
    if key_text is None:
        raise click.UsageError("give --verifier-key or --state")
    try:
        return NoteVerifier.parse(key_text), trusted
    except NoteError as error:
        raise Failed(f"verifier key: {error}") from None


def read_json(source: IO[bytes]) -> Any:
    try:
        return msgspec.json.decode(source.read())
    except msgspec.DecodeError as error:
        raise Failed(f"{source.name}: not JSON: {error}") from None


def print_check(result: ReportCheck, what: str, success: str) -> None:
    """Each step of an offline check, what only the server can know, and the outcome."""
    console = Console(stderr=False, soft_wrap=True)
    for step in result.steps:
        mark = Text("✔ ", style="green") if step.ok else Text("✘ ", style="bold red")
        console.print(mark + Text(f"{step.name}: {step.detail}"))
    for claim in result.unverifiable:
        console.print(Text(f"· server's word, not checkable offline: {claim}", style="dim"))
    failure = result.failure
    if failure is not None:
        raise Failed(f"{what} FAILED at {failure.name}: {failure.detail}")
    console.print(Text(f"ok: {success}", style="bold green"))


COMMANDS = (why, search_command, verify_report_command)
