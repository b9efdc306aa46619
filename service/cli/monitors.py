"""`prov monitor`: apply monitor definitions, and see where they stand.

- `prov monitor apply FILE`: FILE is TOML with one `[[monitor]]` table per monitor
  (docs/monitors.md). Each definition that differs from the monitor's latest version is
  appended as its next version, a monitor record signed by the ledger's record key; one
  that does not is reported unchanged. A definition that does not parse, names an unknown
  member or asks for what the ledger will not evaluate is refused with the member at fault,
  and nothing of the file is applied.
- `prov monitor status`: each monitor's latest value per group (`service.cli.monitor_status`).
- `prov monitor breach RECORD_ID --tenant T`: the breach with the entries and proofs that
  back it, as JSON (`ledger.monitors.breach_bundle`); `prov verify-breach FILE` recomputes
  it offline (`ledger.monitors.breach_check`).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import click

from ledger.errors import RecordRejected
from ledger.monitors.apply import parse_toml
from ledger.monitors.breach_bundle import breach_bundle
from ledger.monitors.breach_check import verify_breach
from service.cli.audit import load_trust, read_json, trust_options
from service.cli.common import Failed, emit, ledger_options, open_ledger
from service.cli.monitor_status import status
from service.settings import Settings


@click.group("monitor")
def monitor() -> None:
    """Monitors: limits on what decisions add up to, evaluated as they are sequenced."""


@monitor.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--applied-by", default="cli", show_default=True, help="Recorded in each version")
@ledger_options
def apply(settings: Settings, file: Path, applied_by: str) -> None:
    """Apply the monitors FILE defines; prints one JSON line per monitor."""
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise Failed(f"{file}: {error}") from None
    definitions = parse_toml(text)
    ledger = open_ledger(settings)
    refused = None
    for planned, result in ledger.apply_monitors(definitions, applied_by=applied_by):
        line: dict[str, object] = {
            "monitor": planned.definition.id,
            "tenant": planned.definition.tenant,
            "version": planned.version,
            "digest": planned.digest,
        }
        if result is None:
            line["status"] = "unchanged"
        elif isinstance(result, RecordRejected):
            line["status"] = "refused"
            line["error"] = str(result)
            refused = refused or result
        else:
            line["status"] = "applied"
            line["index"] = result.index
        emit(line)
    if refused is not None:
        raise refused


@monitor.command("breach")
@click.argument("record_id")
@click.option("--tenant", required=True)
@ledger_options
def breach(settings: Settings, record_id: str, tenant: str) -> None:
    """Print the breach RECORD_ID (or the one at that log index) with what an offline
    check needs, as JSON."""
    with open_ledger(settings).engine.connect() as connection:
        emit(breach_bundle(connection, tenant, record_id))


@click.command("verify-breach")
@click.argument("bundle_file", type=click.File("rb"))
@trust_options
def verify_breach_command(
    bundle_file: IO[bytes], verifier_key: str | None, state_path: Path | None
) -> None:
    """Recompute a saved breach (`prov monitor breach`) from the log's entries, offline:
    the checkpoint, the inclusion of the breach and the monitor, the chain of entries of
    its window, and the aggregate. No server is contacted."""
    verifier, _trusted = load_trust(verifier_key, state_path)
    bundle = read_json(bundle_file)
    if not isinstance(bundle, dict):
        raise Failed(f"{bundle_file.name}: not a breach bundle")
    result = verify_breach(bundle, verifier)
    for step in result.steps:
        click.echo(f"✔ {step}")
    if not result:
        raise Failed("breach FAILED: " + "; ".join(result.failures or ["no breach in the bundle"]))
    assert result.breach is not None
    click.echo(
        f"ok: breach {result.breach.id} ({result.breach.state}) recomputes from the log offline"
    )


monitor.add_command(status)

COMMANDS = (monitor, verify_breach_command)
