"""The `prov` command line. Each subcommand is a thin shell over `ledger.Ledger`.

Output that other tools read (receipts, proofs, entries) is JSON on stdout; every failure
is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TypeVar

import click
import httpx
import msgspec
import sqlalchemy.exc

from ledger.erasure.blob_check import check_blobs
from ledger.errors import ProvError, RecordRejected
from ledger.keys.apikeys import Role, create_api_key, list_api_keys, revoke_api_key
from ledger.keys.keyring import list_keys, register_key, revoke_key
from ledger.keys.signing import public_key_from_pem
from ledger.ledger import Ledger
from ledger.log.note import NoteVerifier
from ledger.log.proofs import consistency_proof, inclusion_proof
from ledger.log.sequencer import now_micros
from ledger.storage.db import side_write_transaction, write_transaction
from query.audit.auditor import audit as audit_log
from query.audit.entry_view import show_entry
from query.audit.published import audit_published
from service.cli.analytics import COMMANDS as ANALYTICS_COMMANDS
from service.cli.audit import COMMANDS as AUDIT_COMMANDS
from service.cli.audit import witness_options
from service.cli.blobs import COMMANDS as BLOB_COMMANDS
from service.cli.collector import COMMANDS as COLLECTOR_COMMANDS
from service.cli.common import (
    Failed,
    emit,
    failure_for,
    global_ledger_options,
    ledger_options,
    open_ledger,
    settings_from_env,
)
from service.cli.delegation import COMMANDS as DELEGATION_COMMANDS
from service.cli.erasure import COMMANDS as ERASURE_COMMANDS
from service.cli.erasure import print_blobs
from service.cli.freshness import COMMANDS as FRESHNESS_COMMANDS
from service.cli.models import COMMANDS as MODELS_COMMANDS
from service.cli.monitors import COMMANDS as MONITOR_COMMANDS
from service.cli.policy import COMMANDS as POLICY_COMMANDS
from service.cli.receipts import COMMANDS as RECEIPT_COMMANDS
from service.cli.replay import COMMANDS as REPLAY_COMMANDS
from service.cli.subjects import COMMANDS as SUBJECT_COMMANDS
from service.cli.subscriptions import COMMANDS as SUBSCRIPTION_COMMANDS
from service.cli.times import TIME, TIME_HELP
from service.cli.witness import COMMANDS as WITNESS_COMMANDS
from service.demo.microloans import run_microloans
from service.demo.traffic import demo_context_change, demo_envelopes, prepare_demo
from service.ledger_setup import init_ledger
from service.settings import Settings

APPEND_CHUNK = 1_000


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@global_ledger_options
def cli() -> None:
    """Provenance Ledger: signed, append-only records of AI decisions.

    --db and --key-file go before the subcommand (prov --db URL init) or, on the
    subcommands that open the ledger, after it (prov init --db URL); after wins.
    """


@cli.command()
@click.option("--origin", help="Log origin, fixed at first init [PROV_ORIGIN]")
@ledger_options
def init(settings: Settings, origin: str | None) -> None:
    """Create or migrate the ledger, and create its keys (ledger, replay, blob KEK) if missing."""
    ledger = init_ledger(settings, origin)
    checkpoint = ledger.latest_checkpoint()
    click.echo(f"ledger ready: origin {ledger.origin}, size {checkpoint.tree_size}")
    click.echo(f"verifier key: {ledger.verifier.encode()}")


@cli.command()
@click.option(
    "--records",
    "count",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    metavar="N",
    help="How many decisions to append",
)
@click.option("--seed", type=int, help="Seed for the generated decisions (default: random)")
@click.option("--tenant", default="acme", show_default=True)
@click.option(
    "--emit",
    type=click.File("wb"),
    help="Write the signed envelopes as NDJSON here instead of appending them",
)
@click.option(
    "--change",
    "changes",
    multiple=True,
    metavar="KEY=VERSION",
    help="After the decisions, append a context change of a demo key (carrier.cutoffs, "
    "credit.bureau_report, ...) signed by the service that owns it; repeatable",
)
@click.option(
    "--scenario",
    type=click.Choice(["mixed", "microloans"]),
    default="mixed",
    show_default=True,
    help="mixed: order routing, loan approval and payment retry decisions; microloans: "
    "small loan approvals drifting into one sector until a sector-concentration monitor "
    "(applied first) is breached, then a summary of the breach",
)
@ledger_options
def demo(
    settings: Settings,
    count: int,
    seed: int | None,
    tenant: str,
    emit: IO[bytes] | None,
    changes: tuple[str, ...],
    scenario: str,
) -> None:
    """Append N (--records) signed demo decisions, registering the demo service keys first;
    then each --change, saying how many decisions it made stale. With --scenario
    microloans, apply a sector-concentration monitor, append N small loan approvals and
    say where and when the monitor was breached."""
    parsed = [_key_version(text) for text in changes]
    if scenario == "microloans":
        if emit is not None or parsed:
            raise click.UsageError("--scenario microloans takes neither --emit nor --change")
        run = run_microloans(open_ledger(settings), count, seed=_demo_seed(seed), tenant=tenant)
        for line in run.summary():
            click.echo(line)
        if run.rejected:
            raise Failed(f"{run.rejected} demo records were rejected")
        return
    ledger = open_ledger(settings)
    shape = prepare_demo(ledger, tenant)
    if count == 0:
        _append_changes(ledger, tenant, parsed)
        return
    started = time.perf_counter()
    rejected = 0
    envelopes = demo_envelopes(count, seed=seed, tenant=tenant, shape=shape, store_blobs=ledger)
    chunks = _chunks(envelopes, APPEND_CHUNK)
    if emit is not None:
        for chunk in chunks:
            emit.write(b"".join(raw + b"\n" for raw in chunk))
        click.echo(f"wrote {count} signed demo envelopes to {emit.name}")
        return
    for results in ledger.append_many(chunks):
        for result in results:
            if isinstance(result, RecordRejected):
                rejected += 1
                click.echo(f"prov: demo record rejected: {result}", err=True)
    elapsed = time.perf_counter() - started
    checkpoint = ledger.latest_checkpoint()
    click.echo(
        f"appended {count - rejected} demo decisions in {elapsed:.2f}s "
        f"({(count - rejected) / elapsed:,.0f}/s); log size {checkpoint.tree_size}, "
        f"root {checkpoint.root_hash.hex()}"
    )
    if rejected:
        raise Failed(f"{rejected} demo records were rejected")
    _append_changes(ledger, tenant, parsed)


def _demo_seed(seed: int | None) -> int:
    # A random seed by default, so that two runs add new loans rather than retrying.
    return secrets.randbits(48) if seed is None else seed


def _key_version(text: str) -> tuple[str, str]:
    key, equals, version = text.partition("=")
    if not equals or not key or not version:
        raise click.BadParameter(f"{text!r} is not KEY=VERSION", param_hint="--change")
    return key, version


def _append_changes(ledger: Ledger, tenant: str, changes: list[tuple[str, str]]) -> None:
    for key, version in changes:
        [result] = ledger.append([demo_context_change(tenant, key, version, reason="demo")])
        if isinstance(result, RecordRejected):
            raise Failed(f"context change of {key!r} rejected: {result}")
        click.echo(
            f"context change {result.id} ({key} -> {version}) at index {result.index}: "
            f"{result.invalidated or 0} decisions went stale"
        )


@cli.command("append")
@click.argument("source", type=click.File("rb"))
@ledger_options
def append_command(settings: Settings, source: IO[bytes]) -> None:
    """Append DSSE envelopes read as NDJSON from SOURCE (`-` for stdin).

    Prints one receipt JSON line per stored record. Each rejected line is reported on
    stderr with its line number and stored nowhere; the exit status is then 1.
    """
    ledger = open_ledger(settings)
    rejected = stored = 0
    # Line numbers of the batches in flight (at most two), so input streams in bounded memory.
    in_flight: deque[list[int]] = deque()

    def batches() -> Iterator[list[bytes]]:
        for chunk in _chunks(_numbered_lines(source), APPEND_CHUNK):
            in_flight.append([number for number, _ in chunk])
            yield [raw for _, raw in chunk]

    for results in ledger.append_many(batches()):
        for number, result in zip(in_flight.popleft(), results, strict=True):
            if isinstance(result, RecordRejected):
                rejected += 1
                click.echo(f"prov: line {number}: {result.kind}: {result}", err=True)
            else:
                stored += 1
                emit(result)
    if rejected:
        raise Failed(f"{rejected} of {rejected + stored} records rejected; {stored} stored")


@cli.command()
@click.option("--host", help="Address to listen on [PROV_HOST]")
@click.option("--port", type=click.IntRange(0, 65535), help="Port [PROV_PORT]")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes [PROV_WORKERS]")
@ledger_options
def serve(settings: Settings, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API, creating or migrating the ledger first."""
    from service.web.serve import serve as run  # noqa: PLC0415 - the server stack loads only here

    overrides = {"host": host, "port": port, "workers": workers}
    run(msgspec.structs.replace(settings, **{k: v for k, v in overrides.items() if v is not None}))


@cli.group("api-key")
def api_key() -> None:
    """API keys for the HTTP service: a role and a tenant each, stored only as hashes."""


@api_key.command("create")
@click.option("--tenant", required=True)
@click.option("--role", type=click.Choice([role.value for role in Role]), required=True)
@click.option("--name", default="", help="A label for listings")
@ledger_options
def api_key_create(settings: Settings, tenant: str, role: str, name: str) -> None:
    """Create a key and print it once, with its id; only its hash is stored."""
    with write_transaction(open_ledger(settings).engine) as connection:
        key, token = create_api_key(
            connection, tenant=tenant, role=Role(role), name=name, now_us=now_micros()
        )
    emit(key.to_json() | {"key": token})


@api_key.command("list")
@click.option("--tenant", required=True)
@ledger_options
def api_key_list(settings: Settings, tenant: str) -> None:
    """List a tenant's API keys, one JSON line each: id, role, name, created and revoked."""
    with open_ledger(settings).engine.connect() as connection:
        for key in list_api_keys(connection, tenant):
            emit(key.to_json())


@api_key.command("revoke")
@click.option("--tenant", required=True)
@click.argument("key_id")
@ledger_options
def api_key_revoke(settings: Settings, tenant: str, key_id: str) -> None:
    """Revoke the API key KEY_ID; each server stops accepting it within
    PROV_AUTH_CACHE_SECONDS."""
    with write_transaction(open_ledger(settings).engine) as connection:
        emit(revoke_api_key(connection, tenant, key_id, now_us=now_micros()).to_json())


@cli.command()
@click.option(
    "--url",
    help="The ledger service, e.g. http://127.0.0.1:8080 (with --from-published: where to "
    "ask for consistency proofs)",
)
@click.option(
    "--from-published",
    "published",
    metavar="DIR|s3://BUCKET/PREFIX",
    help="Follow the checkpoints the ledger published there (PROV_S3_* reach S3) instead "
    "of the served one",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File holding the last trusted checkpoint; created by the first audit",
)
@click.option("--verifier-key", help="The log's note verifier key (needed the first time)")
@witness_options
@click.option("--api-key", envvar="PROV_API_KEY", help="API key, unless reads are public")
def audit(
    url: str | None,
    published: str | None,
    state_path: Path,
    verifier_key: str | None,
    witnesses: tuple[str, ...],
    witnesses_required: int | None,
    api_key: str | None,
) -> None:
    """Check that the log only grew since the last trusted checkpoint, then trust the new one.

    Refuses, and keeps the old state, on a bad signature, a rollback or a fork; with
    --witness keys (pinned in the state file after), also on a checkpoint that fewer than
    --witnesses-required of those witnesses cosigned. --from-published checks every
    published checkpoint: none deleted, rewritten or missing, sizes never shrinking, and
    (with --url) each consistent with the one before."""
    if url is None and published is None:
        raise click.UsageError("give --url, --from-published, or both")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(base_url=url or "", headers=headers, timeout=30) as client:
            if published is not None:
                summary = audit_published(
                    state_path,
                    published,
                    # PROV_S3_* reach S3, as for the server's blob store and publication.
                    s3=(
                        settings_from_env().s3_options() if published.startswith("s3://") else None
                    ),
                    client=client if url is not None else None,
                    verifier_key=verifier_key,
                    witnesses=witnesses,
                    witnesses_required=witnesses_required,
                )
                click.echo(summary.summary())
                return
            result = audit_log(client, state_path, verifier_key, witnesses, witnesses_required)
    except httpx.HTTPError as error:
        raise Failed(f"cannot reach {url}: {error}") from None
    checkpoint = result.checkpoint
    since = (
        "first checkpoint trusted"
        if result.previous_size is None
        else f"consistent with the trusted size {result.previous_size}"
    )
    click.echo(
        f"ok: size {checkpoint.size}, root {checkpoint.root_hash.hex()}, {since}"
        + result.witnesses_line()
    )


@cli.command()
@click.option("--signatures", is_flag=True, help="Also re-check every record signature")
@click.option(
    "--blobs",
    is_flag=True,
    help="Also check every blob: present (opens and hashes to its digest), erased (by an "
    "erasure record that lists it) or unreadable",
)
@click.option("--verifier-key", help="Trust this note verifier key instead of the key file's")
@ledger_options
def verify(settings: Settings, signatures: bool, blobs: bool, verifier_key: str | None) -> None:
    """Recompute every leaf, chain link, tree node and root; check every checkpoint; with
    --blobs, every blob's bytes or its erasure (`ledger.erasure.blob_check`)."""
    ledger = open_ledger(settings)
    verifier = NoteVerifier.parse(verifier_key) if verifier_key else None
    started = time.perf_counter()
    report = ledger.verify(signatures=signatures, verifier=verifier)
    elapsed = time.perf_counter() - started
    if not report:
        raise Failed(f"verification FAILED at {report.fault}")
    rate = f", {report.size / elapsed:,.0f} entries/s" if elapsed > 0 and report.size else ""
    click.echo(
        f"ok: size {report.size}, root {report.root_hash.hex()}, "
        f"{report.checkpoints_checked} checkpoints"
        + (f", {report.signatures_checked} signatures" if signatures else "")
        + rate
    )
    for note in report.notes:
        click.echo(f"note: {note}")
    if blobs:
        print_blobs(check_blobs(ledger.engine, ledger.blobs))


@cli.command()
@click.option("--verifier-key", "show_key", is_flag=True, help="Print the note verifier key")
@ledger_options
def checkpoint(settings: Settings, show_key: bool) -> None:
    """Print the latest signed checkpoint note."""
    ledger = open_ledger(settings)
    if show_key:
        click.echo(ledger.verifier.encode())
    else:
        click.echo(ledger.latest_checkpoint().note, nl=False)


@cli.group()
def proof() -> None:
    """Inclusion and consistency proofs (RFC 9162), as JSON."""


@proof.command("inclusion")
@click.argument("index", type=click.IntRange(min=0))
@click.option("--size", type=click.IntRange(min=1), help="Tree size (default: current)")
@ledger_options
def proof_inclusion(settings: Settings, index: int, size: int | None) -> None:
    """The inclusion proof of entry INDEX in the tree of --size entries."""
    with open_ledger(settings).engine.connect() as connection:
        emit(inclusion_proof(connection, index, size).to_json())


@proof.command("consistency")
@click.argument("old", type=click.IntRange(min=1))
@click.argument("new", type=click.IntRange(min=1))
@ledger_options
def proof_consistency(settings: Settings, old: int, new: int) -> None:
    """The consistency proof from the tree of OLD entries to the tree of NEW entries."""
    with open_ledger(settings).engine.connect() as connection:
        emit(consistency_proof(connection, old, new).to_json())


@cli.command()
@click.argument("index", type=click.IntRange(min=0))
@ledger_options
def show(settings: Settings, index: int) -> None:
    """Print an entry, its decoded payload and its verification status, as JSON."""
    emit(show_entry(open_ledger(settings), index))


@cli.group()
def keys() -> None:
    """The service-key registry: who may sign records for a tenant and service."""


@keys.command("add")
@click.option("--tenant", required=True)
@click.option("--service", required=True)
@click.option(
    "--public-key",
    "public_key_file",
    type=click.File("rb"),
    required=True,
    help="PEM file of the Ed25519 public key",
)
@click.option("--valid-from", type=TIME, help=f"{TIME_HELP}; default now")
@click.option("--valid-until", type=TIME, help=f"{TIME_HELP}; default open-ended")
@click.option("--keyid", help="DSSE keyid (default: hex SHA-256 of the key)")
@ledger_options
def keys_add(
    *,
    settings: Settings,
    tenant: str,
    service: str,
    public_key_file: IO[bytes],
    valid_from: datetime | None,
    valid_until: datetime | None,
    keyid: str | None,
) -> None:
    """Register a service's signing key."""
    try:
        public_key = public_key_from_pem(public_key_file.read())
    except ValueError as error:
        raise Failed(f"{public_key_file.name}: {error}") from None
    now = datetime.now(UTC)
    with side_write_transaction(open_ledger(settings).engine) as connection:
        key = register_key(
            connection,
            tenant=tenant,
            service=service,
            public_key=public_key,
            valid_from=valid_from or now,
            valid_until=valid_until,
            keyid=keyid,
            now=now,
        )
    emit(key.to_json())


@keys.command("list")
@click.option("--tenant")
@ledger_options
def keys_list(settings: Settings, tenant: str | None) -> None:
    """List registered service keys (all tenants' unless --tenant), one JSON line each."""
    with open_ledger(settings).engine.connect() as connection:
        for key in list_keys(connection, tenant):
            emit(key.to_json())


@keys.command("revoke")
@click.argument("keyid")
@ledger_options
def keys_revoke(settings: Settings, keyid: str) -> None:
    """Revoke the service key KEYID as of now: new records signed with it are refused."""
    with side_write_transaction(open_ledger(settings).engine) as connection:
        emit(revoke_key(connection, keyid, at=datetime.now(UTC)).to_json())


def _numbered_lines(source: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(source, start=1):
        stripped = line.strip()
        if stripped:
            yield number, stripped


T = TypeVar("T")


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


for _command in (
    *AUDIT_COMMANDS,
    *DELEGATION_COMMANDS,
    *ANALYTICS_COMMANDS,
    *REPLAY_COMMANDS,
    *MODELS_COMMANDS,
    *RECEIPT_COMMANDS,
    *POLICY_COMMANDS,
    *SUBSCRIPTION_COMMANDS,
    *FRESHNESS_COMMANDS,
    *MONITOR_COMMANDS,
    *COLLECTOR_COMMANDS,
    *SUBJECT_COMMANDS,
    *ERASURE_COMMANDS,
    *BLOB_COMMANDS,
    *WITNESS_COMMANDS,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point: click's parsing, with ledger and database errors as one line each."""
    try:
        cli.main(standalone_mode=False, prog_name="prov")
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        click.echo("prov: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        if not isinstance(error, Failed):
            click.echo(f"prov: {error.format_message()}", err=True)
            sys.exit(2 if isinstance(error, click.UsageError) else error.exit_code)
        error.show()
        sys.exit(error.exit_code)
    except ProvError as error:
        failed = failure_for(error)
        failed.show()
        sys.exit(failed.exit_code)
    except sqlalchemy.exc.SQLAlchemyError as error:
        first_line = str(error.orig if hasattr(error, "orig") else error).strip().splitlines()
        click.echo(f"prov: database error: {first_line[0] if first_line else error}", err=True)
        sys.exit(1)
    except (OSError, ValueError) as error:
        click.echo(f"prov: {error}", err=True)
        sys.exit(1)
