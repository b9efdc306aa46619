"""`prov principal`, `prov delegate`, `prov revoke` and `prov tenant`: delegation commands.

- `principal add` enrolls a did:key as a named human or service of a tenant, as a ledger
  record signed by a key registered for the tenant's principal service (``prov-admin``);
  `principal list` shows a tenant's enrollments and `principal did` a key file's did:key.
- `delegate` mints a delegation from a key held in a file, as the root of a new chain or as
  the next hop of a chain file, and writes the extended chain file. It refuses to mint what
  the ledger would refuse: a hop that widens its parent's command or outlives it, or one
  issued by a key the chain does not delegate to.
- `revoke` logs the revocation of one delegation of a chain file, signed by its issuer.
- `tenant set-delegation-mode` sets how strictly ingest checks a tenant's chains.

See docs/delegation.md.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest.client.builder import new_id
from ledger.delegation import ucan
from ledger.delegation.mode import DEFAULT_MODE, DelegationMode, load_modes, set_mode
from ledger.delegation.principals import list_principals
from ledger.delegation.records import (
    PRINCIPAL_SERVICE,
    PrincipalRecord,
    RevocationRecord,
    sign_record,
)
from ledger.delegation.ucan_files import format_chain, parse_chain
from ledger.errors import RecordRejected
from ledger.keys.signing import SigningKey, load_signing_key, public_key_from_pem
from ledger.log.sequencer import now_micros
from ledger.storage.db import side_write_transaction
from service.cli.common import Failed, emit, ledger_options, open_ledger
from service.cli.times import TIME, TIME_HELP
from service.settings import Settings

_KEY_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _signing_key(path: Path) -> SigningKey:
    try:
        return load_signing_key(path)
    except ValueError as error:
        raise Failed(f"{path}: {error}") from None


def _ucan_key(path: Path) -> Ed25519PrivateKey:
    return _signing_key(path).private_key()


def _append(settings: Settings, raw: bytes) -> None:
    [result] = open_ledger(settings).append([raw])
    if isinstance(result, RecordRejected):
        raise result
    emit(result)


def _seconds(moment: datetime | None) -> int | None:
    """An aware time option (service.cli.times) as Unix seconds."""
    return None if moment is None else int(moment.timestamp())


def _json(text: str | None, what: str) -> Any:
    try:
        return None if text is None else msgspec.json.decode(text)
    except msgspec.DecodeError as error:
        raise click.BadParameter(f"{what} is not JSON: {error}") from None


# --- prov principal ------------------------------------------------------------------------


@click.group()
def principal() -> None:
    """Principals: the named humans and services a tenant's delegation chains start from."""


@principal.command("add")
@click.option("--tenant", required=True)
@click.option("--did", help="The principal's did:key")
@click.option("--public-key", type=_KEY_FILE, help="…or a PEM file of its Ed25519 public key")
@click.option("--name", required=True, help="A unique handle, e.g. alice@example.com")
@click.option("--display-name", help="The name to show, e.g. Alice Liddell")
@click.option("--kind", type=click.Choice(["human", "service"]), default="human", show_default=True)
@click.option(
    "--signing-key",
    type=_KEY_FILE,
    required=True,
    help=f"PEM private key registered for the tenant's {PRINCIPAL_SERVICE!r} service",
)
@click.option("--keyid", help="Its DSSE keyid, if registered under its own")
@click.option("--id", "record_id", help="The record id (default: a new UUIDv7)")
@ledger_options
def principal_add(
    *,
    settings: Settings,
    tenant: str,
    did: str | None,
    public_key: Path | None,
    name: str,
    display_name: str | None,
    kind: str,
    signing_key: Path,
    keyid: str | None,
    record_id: str | None,
) -> None:
    """Enroll a did:key as a named principal of TENANT, as a ledger record."""
    if (did is None) == (public_key is None):
        raise click.UsageError("give either --did or --public-key")
    if public_key is not None:
        did = ucan.did_key(public_key_from_pem(public_key.read_bytes()))
    assert did is not None
    record = msgspec.convert(
        {
            "id": record_id or new_id(),
            "tenant": tenant,
            "service": PRINCIPAL_SERVICE,
            "occurred_at": datetime.now(UTC).isoformat(),
            "did": did,
            "name": name,
            "display_name": display_name,
            "kind": kind,
        },
        PrincipalRecord,
    )
    _append(settings, sign_record(record, _signing_key(signing_key), keyid))


@principal.command("list")
@click.option("--tenant", required=True)
@ledger_options
def principal_list(settings: Settings, tenant: str) -> None:
    """Every enrollment of TENANT, oldest first, with the log index that records it."""
    with open_ledger(settings).engine.connect() as connection:
        for index, enrolled in list_principals(connection, tenant):
            emit({"index": index} | dataclasses.asdict(enrolled))


@principal.command("did")
@click.argument("key_file", type=_KEY_FILE)
def principal_did(key_file: Path) -> None:
    """Print the did:key of a PEM Ed25519 key file (private or public)."""
    data = key_file.read_bytes()
    try:
        public_key = public_key_from_pem(data)
    except ValueError:
        public_key = _signing_key(key_file).public_key
    click.echo(ucan.did_key(public_key))


# --- prov delegate -------------------------------------------------------------------------


@click.command()
@click.option("--issuer-key", type=_KEY_FILE, required=True, help="PEM private key of the issuer")
@click.option("--audience", required=True, help="The did:key the authority goes to")
@click.option("--command", "command", required=True, help="e.g. /loan or /loan/approve")
@click.option("--policy", default="[]", show_default=True, help="UCAN policy, as JSON")
@click.option("--expires", type=TIME, help=TIME_HELP)
@click.option(
    "--never-expires", is_flag=True, help="exp null (refused under a parent that expires)"
)
@click.option("--not-before", type=TIME, help=TIME_HELP)
@click.option("--meta", help="Metadata, as a JSON object")
@click.option(
    "--chain",
    "chain_file",
    type=click.File("r"),
    help="The chain this hop extends (its last audience must be the issuer); none for a root",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def delegate(
    *,
    issuer_key: Path,
    audience: str,
    command: str,
    policy: str,
    expires: datetime | None,
    never_expires: bool,
    not_before: datetime | None,
    meta: str | None,
    chain_file: IO[str] | None,
    out: Path,
) -> None:
    """Mint a delegation to AUDIENCE and write the chain it ends to OUT."""
    issuer = _ucan_key(issuer_key)
    parents = [] if chain_file is None else parse_chain(chain_file.read())
    parent = ucan.decode_delegation(parents[-1]) if parents else None
    if never_expires and expires is not None:
        raise click.UsageError("give --expires or --never-expires, not both")
    expiration = _seconds(expires)
    if expiration is None and not never_expires:
        if parent is None:
            raise click.UsageError("a root delegation needs --expires or --never-expires")
        expiration = parent.exp
    subject = ucan.did_of(issuer)
    if parent is not None:
        subject = _check_extends(parent, subject, command, expiration)
    try:
        token = ucan.delegate(
            issuer,
            audience,
            subject,
            command,
            _json(policy, "--policy"),
            expiration,
            not_before=_seconds(not_before),
            meta=_json(meta, "--meta"),
        )
    except ValueError as error:
        raise Failed(str(error)) from None
    out.write_text(format_chain([*parents, token]))
    made = ucan.decode_delegation(token)
    emit(
        {
            "cid": ucan.cid_text(made.cid),
            "iss": made.iss,
            "aud": made.aud,
            "sub": made.sub,
            "cmd": made.cmd,
            "exp": made.exp,
            "hops": len(parents) + 1,
            "chain": str(out),
        }
    )


def _check_extends(
    parent: ucan.Delegation, issuer: str, command: str, expiration: int | None
) -> str:
    """The subject of a hop after `parent`; `Failed` for a hop the ledger would refuse
    (rules 4, 5, 6 and 8)."""
    if parent.sub is None:
        raise Failed("the chain's last delegation has no subject")
    if parent.aud != issuer:
        raise Failed(f"the chain delegates to {parent.aud}, not to this key ({issuer})")
    if not ucan.covers(parent.cmd, command):
        raise Failed(f"{command} widens the parent's command {parent.cmd}")
    if parent.exp is not None and (expiration is None or expiration > parent.exp):
        raise Failed("a delegation cannot outlive its parent; give an earlier --expires")
    return parent.sub


# --- prov revoke ---------------------------------------------------------------------------


@click.command()
@click.option("--tenant", required=True)
@click.option("--chain", "chain_file", type=click.File("r"), required=True)
@click.option("--hop", type=int, default=-1, show_default=True, help="Which delegation (0 = root)")
@click.option("--revoker-key", type=_KEY_FILE, required=True, help="The delegation issuer's key")
@click.option("--reason")
@click.option("--service", required=True, help="The registered service submitting the record")
@click.option("--signing-key", type=_KEY_FILE, required=True, help="That service's PEM key")
@click.option("--keyid", help="Its DSSE keyid, if registered under its own")
@click.option("--id", "record_id", help="The record id (default: a new UUIDv7)")
@ledger_options
def revoke(
    *,
    settings: Settings,
    tenant: str,
    chain_file: IO[str],
    hop: int,
    revoker_key: Path,
    reason: str | None,
    service: str,
    signing_key: Path,
    keyid: str | None,
    record_id: str | None,
) -> None:
    """Log the revocation of one delegation of a chain file, signed by its issuer."""
    tokens = parse_chain(chain_file.read())
    try:
        revoked = tokens[hop]
    except IndexError:
        raise click.BadParameter(f"the chain has {len(tokens)} delegations") from None
    revoker = _ucan_key(revoker_key)
    issuer = ucan.decode_delegation(revoked).iss
    if ucan.did_of(revoker) != issuer:
        raise Failed(f"only the delegation's issuer, {issuer}, may revoke it")
    now = datetime.now(UTC)
    record = RevocationRecord(
        id=record_id or new_id(),
        tenant=tenant,
        service=service,
        occurred_at=now,
        revocation=ucan.revoke(revoker, revoked, issued_at=int(now.timestamp())),
        delegation=revoked,
        reason=reason,
    )
    _append(settings, sign_record(record, _signing_key(signing_key), keyid))


# --- prov tenant ---------------------------------------------------------------------------


@click.group()
def tenant() -> None:
    """Per-tenant settings that live in the ledger's database."""


@tenant.command("set-delegation-mode")
@click.argument("name")
@click.argument("mode", type=click.Choice([mode.value for mode in DelegationMode]))
@ledger_options
def tenant_set_delegation_mode(settings: Settings, name: str, mode: str) -> None:
    """Set how ingest checks NAME's delegation chains: required, optional or off."""
    with side_write_transaction(open_ledger(settings).engine) as connection:
        set_mode(connection, name, DelegationMode(mode), now_us=now_micros())
    emit({"tenant": name, "delegation_mode": mode})


@tenant.command("delegation-mode")
@click.argument("name")
@ledger_options
def tenant_delegation_mode(settings: Settings, name: str) -> None:
    """Print NAME's delegation mode."""
    with open_ledger(settings).engine.connect() as connection:
        mode = load_modes(connection).get(name, DEFAULT_MODE)
    emit({"tenant": name, "delegation_mode": mode.value})


COMMANDS = (principal, delegate, revoke, tenant)
