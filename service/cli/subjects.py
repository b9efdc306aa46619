"""`prov subject export`, `prov subject explain` and `prov verify-subject`: what a person may
ask for about the decisions made about them (docs/erasure.md).

- `prov subject export S --tenant T [--out FILE]`: every decision of the tenant about S as
  one JSON bundle (`query.subjects.bundle`): a signed checkpoint and, per decision, its
  signed payload, envelope, entry, inclusion proof, signing key, its blobs' bytes (or when
  they were erased) and its plain-language explanation.
- `prov subject explain ID --tenant T`: that explanation, as text.
- `prov verify-subject FILE`: the bundle checked offline (`query.subjects.check`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click
import msgspec

from ledger.log.sequencer import now_micros
from query.subjects.bundle import decision_explanation, subject_bundle
from query.subjects.check import verify_subject_bundle
from query.subjects.explain import explanation_text
from service.cli.audit import load_trust, print_check, read_json, trust_options
from service.cli.common import Failed, ledger_options, open_ledger
from service.settings import Settings


@click.group("subject")
def subject() -> None:
    """What a person may ask for: every decision about them, and each one explained."""


@subject.command("export")
@click.argument("subject_ref", metavar="SUBJECT")
@click.option("--tenant", required=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bundle to this file (default: stdout)",
)
@ledger_options
def export(settings: Settings, subject_ref: str, tenant: str, out: Path | None) -> None:
    """Every decision of the tenant about SUBJECT as one JSON bundle that verifies offline
    (`prov verify-subject`): the signed records, their proofs into one signed checkpoint,
    the blobs' bytes or when they were erased, and each decision explained in plain
    language."""
    bundle = subject_bundle(
        open_ledger(settings),
        tenant,
        subject_ref,
        contest=settings.contest_contact,
        now_us=now_micros(),
    )
    data = msgspec.json.encode(bundle) + b"\n"
    if out is None:
        sys.stdout.buffer.write(data)
        return
    try:
        out.write_bytes(data)
    except OSError as error:
        raise Failed(f"{out}: {error}") from None
    click.echo(f"wrote {len(bundle['decisions'])} decisions about {subject_ref!r} to {out}")


@subject.command("explain")
@click.argument("record_id", metavar="DECISION_ID")
@click.option("--tenant", required=True)
@ledger_options
def explain(settings: Settings, record_id: str, tenant: str) -> None:
    """Explain decision DECISION_ID in plain language, for the person it is about: what was
    decided and when, what it was based on, whether a person reviewed it, what of its
    content was erased, and how to contest it (PROV_CONTEST_CONTACT)."""
    ledger = open_ledger(settings)
    with ledger.engine.connect() as connection:
        explanation = decision_explanation(connection, tenant, record_id, settings.contest_contact)
    click.echo(explanation_text(explanation), nl=False)


@click.command("verify-subject")
@click.argument("bundle_file", type=click.File("rb"))
@trust_options
def verify_subject(
    bundle_file: IO[bytes], verifier_key: str | None, state_path: Path | None
) -> None:
    """Check a saved subject bundle (`prov subject export`) offline: the checkpoint's
    signature, every inclusion proof, every envelope against its entry, every signature,
    every decision's subject, every blob against its digest and every explanation. No
    server is contacted."""
    verifier, _trusted = load_trust(verifier_key, state_path)
    bundle = read_json(bundle_file)
    result = verify_subject_bundle(bundle, verifier)
    # Read only when every step passed: the bundle is then well formed.
    success = (
        f"{len(bundle['decisions'])} decisions about {bundle['subject']!r} verify offline"
        if result
        else ""
    )
    print_check(result, "subject bundle", success)


COMMANDS = (subject, verify_subject)
