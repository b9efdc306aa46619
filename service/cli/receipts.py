"""`prov verify-receipt`: is a saved receipt's record in a served log?

The check itself is the SDK's (`ingest.client.inclusion`); this command reads the receipt
and the trust anchor (a verifier key, or an auditor's state file from `prov audit`), and
prints one line: what verified, or why the receipt is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import click
import msgspec

from ingest.client.errors import ClientError
from ingest.client.inclusion import verify_receipt_in_log
from ledger.errors import ProvError
from ledger.log.note import Checkpoint, NoteVerifier, open_checkpoint
from query.audit.auditor import TrustedState
from service.cli.common import Failed


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


COMMANDS = (verify_receipt_command,)
