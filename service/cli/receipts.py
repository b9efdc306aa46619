"""`prov verify-receipt`: is a saved receipt's record in a served log? And `prov receipt`:
an entry's COSE receipt (RFC 9942), issued from the ledger and checked offline.

The check itself is the SDK's (`ingest.client.inclusion`); this command reads the receipt
and the trust anchor (a verifier key, or an auditor's state file from `prov audit`), and
prints one line: what verified, or why the receipt is refused. `prov receipt cose` signs an
entry's COSE receipt against a stored checkpoint (`query.audit.cose_receipts`) and `prov
receipt verify-cose` checks one (`ledger.log.cose_receipt`), as docs/log-format.md says.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click
import msgspec

from ingest.client.errors import ClientError
from ingest.client.inclusion import verify_receipt_in_log
from ledger.errors import CoseReceiptInvalid, ProvError
from ledger.log.cose_receipt import public_key_pem, verify_cose_receipt
from ledger.log.note import Checkpoint, NoteVerifier, open_checkpoint
from query.audit.auditor import TrustedState
from query.audit.cose_receipts import cose_receipt
from service.cli.common import Failed, emit, ledger_options, open_ledger
from service.settings import Settings


def _trust(
    verifier_key: str | None, state_path: Path | None
) -> tuple[NoteVerifier, Checkpoint | None]:
    """The verifier to trust and, from a state file, the checkpoint trusted before."""
    if (verifier_key is None) == (state_path is None):
        raise click.UsageError("give exactly one of --verifier-key and --state")
    if state_path is None:
        assert verifier_key is not None
        try:
            return NoteVerifier.parse(verifier_key), None
        except ProvError as error:
            raise Failed(f"verifier key: {error}") from None
    try:
        state = msgspec.json.decode(state_path.read_bytes(), type=TrustedState)
        verifier = NoteVerifier.parse(state.verifier_key)
        # The state's checkpoint was verified when it was saved; verify it again, not trust it.
        trusted = open_checkpoint(state.checkpoint, verifier, state.origin)
    except (msgspec.MsgspecError, ProvError) as error:
        raise Failed(f"{state_path}: not a usable audit state file: {error}") from None
    return verifier, trusted


@click.command("verify-receipt")
@click.argument("receipt_file", metavar="RECEIPT", type=click.File("rb"))
@click.option("--url", required=True, help="The ledger service, e.g. http://127.0.0.1:8080")
@click.option("--verifier-key", help="The log's note verifier key")
@click.option(
    "--state",
    "state_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A `prov audit` state file: its pinned key, and a checkpoint the log must extend",
)
@click.option("--api-key", envvar="PROV_API_KEY", help="API key, unless reads are public")
def verify_receipt_command(
    receipt_file: IO[bytes],
    url: str,
    verifier_key: str | None,
    state_path: Path | None,
    api_key: str | None,
) -> None:
    """Check that a saved receipt's record is in the log: the receipt's signature, the
    server's latest checkpoint, and an inclusion proof of the receipt's leaf in it."""
    verifier, trusted = _trust(verifier_key, state_path)
    try:
        found = verify_receipt_in_log(
            url, receipt_file.read(), verifier, api_key=api_key, trusted=trusted
        )
    except ClientError as error:
        raise Failed(f"receipt REFUSED: {error}") from None
    body, checkpoint = found.body, found.checkpoint
    click.echo(
        f"ok: {body.tenant}/{body.id} is entry {body.index} (leaf {body.leaf_hash}) of "
        f"{checkpoint.origin}, in the signed checkpoint of size {checkpoint.size}"
    )


@click.group("receipt")
def receipt_group() -> None:
    """COSE receipts (RFC 9942) of log entries: issue one, check one."""


@receipt_group.command("cose")
@click.argument("index", type=click.IntRange(min=0))
@click.option("--size", type=click.IntRange(min=1), help="A signed checkpoint's size [latest]")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default="-",
    show_default=True,
    help="Where the receipt's bytes go (-: stdout); with a file, a JSON line is printed",
)
@click.option(
    "--log-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the ledger key as PEM here, for COSE verifiers (scitt-cose)",
)
@ledger_options
def cose_command(
    settings: Settings, index: int, size: int | None, out: Path, log_key: Path | None
) -> None:
    """The COSE receipt of entry INDEX in the latest signed checkpoint (or the one of
    --size entries): a COSE_Sign1 by the ledger key over the tree's root, with the entry's
    inclusion proof. Written to --out; with a file, one JSON line on stdout says what it
    proves, with the entry bytes a verifier hashes."""
    ledger = open_ledger(settings)
    issued = cose_receipt(ledger, index, size)
    if log_key is not None:
        log_key.write_bytes(public_key_pem(ledger.verifier))
    if str(out) == "-":
        sys.stdout.buffer.write(issued.receipt)
        return
    out.write_bytes(issued.receipt)
    emit(
        {
            "out": str(out),
            "index": issued.index,
            "tree_size": issued.tree_size,
            "root_hash": issued.root_hash.hex(),
            "entry_bytes": issued.entry_bytes.hex(),
            "kid": ledger.verifier.key_id.hex(),
        }
    )


@receipt_group.command("verify-cose")
@click.argument("receipt_file", metavar="RECEIPT", type=click.File("rb"))
@click.option("--entry-bytes", help="Hex of the entry's bytes (GET /v1/entries/{index})")
@click.option("--leaf-hash", help="Hex of the entry's leaf hash (a receipt's leaf_hash)")
@click.option("--verifier-key", required=True, help="The log's note verifier key")
def verify_cose_command(
    receipt_file: IO[bytes],
    entry_bytes: str | None,
    leaf_hash: str | None,
    verifier_key: str,
) -> None:
    """Check a COSE receipt offline: its profile, the root its inclusion proof rebuilds from
    the entry (or its leaf hash), and the ledger key's signature over that root."""
    if (entry_bytes is None) == (leaf_hash is None):
        raise click.UsageError("give exactly one of --entry-bytes and --leaf-hash")
    try:
        verifier = NoteVerifier.parse(verifier_key)
        leaf = bytes.fromhex(leaf_hash or entry_bytes or "")
    except (ProvError, ValueError) as error:
        raise Failed(f"bad input: {error}") from None
    try:
        claims = verify_cose_receipt(
            receipt_file.read(),
            verifier,
            entry_bytes=None if leaf_hash else leaf,
            leaf_hash=leaf if leaf_hash else None,
        )
    except CoseReceiptInvalid as error:
        raise Failed(f"COSE receipt REFUSED: {error}") from None
    click.echo(
        f"ok: entry {claims.index} of {claims.issuer} ({claims.subject}) is in the tree of "
        f"size {claims.tree_size} with root {claims.root_hash.hex()}, signed by key "
        f"{claims.kid.hex()}"
    )


COMMANDS = (verify_receipt_command, receipt_group)
