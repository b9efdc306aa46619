"""`prov erase`, `prov erasures`, `prov expire`, `prov retention` and `prov hold`: erasure as a
record, under the tenant's retention floor and legal holds (docs/erasure.md).

Each prints JSON lines; a refusal (the floor, a hold, an unknown subject) is one line on
stderr and a non-zero exit. The clock is the system's, unless `PROV_NOW` sets it (an RFC
3339 time, read here and nowhere else): how tests and drills move past a floor without
waiting for it. The HTTP API never takes a clock from the caller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import click
from sqlalchemy import Connection

from ledger.erasure.blob_check import BlobsReport
from ledger.erasure.rules import parse_filter
from ledger.indexes.blob_refs import rebuild_refs
from ledger.indexes.erasures import ErasuresRebuilt, rebuild_erasures
from ledger.log.entry import rfc3339, to_micros
from ledger.log.sequencer import now_micros
from service.cli.common import (
    BadSettings,
    Failed,
    emit,
    ledger_options,
    open_ledger,
    report_differing,
)
from service.cli.times import parse_time
from service.settings import Settings

#: Who the records name as asking, for requests made here.
CLI = "cli"
_tenant_option = click.option("--tenant", default="acme", show_default=True)


def now_us() -> int:
    """The clock erasure runs by: `PROV_NOW` when set, else the system's."""
    text = os.environ.get("PROV_NOW")
    if not text:
        return now_micros()
    try:
        return to_micros(parse_time(text))
    except ValueError as error:
        raise BadSettings(f"PROV_NOW: {error}") from None


@click.command("erase")
@click.option("--subject", required=True, help="The subject whose content is erased")
@click.option("--reason", required=True, help="Why, as the erasure record states it")
@_tenant_option
@click.option("--request-id", help="Run again with the same id to complete an interrupted erasure")
@click.option(
    "--queue",
    is_flag=True,
    help="Inside the retention floor or under a hold: queue it (`prov expire` runs it once "
    "allowed) instead of refusing",
)
@ledger_options
def erase(
    settings: Settings,
    subject: str,
    reason: str,
    tenant: str,
    request_id: str | None,
    queue: bool,
) -> None:
    """Erase every blob of a subject: an erasure record in the log, the blobs marked erased
    in the same commit, then their objects deleted and the subject's data key destroyed.
    Prints the request as one JSON line (state done, or queued)."""
    view = open_ledger(settings).erasures.erase_subject(
        tenant,
        subject,
        reason=reason,
        requested_by=CLI,
        now_us=now_us(),
        request_id=request_id,
        queue=queue,
    )
    emit(view)


@click.command("erasures")
@click.argument("request_id", required=False)
@_tenant_option
@ledger_options
def erasures(settings: Settings, request_id: str | None, tenant: str) -> None:
    """The tenant's erasure requests, newest first, one JSON line each; with REQUEST_ID,
    that one with the digests it erased."""
    ledger = open_ledger(settings)
    if request_id is not None:
        emit(ledger.erasures.get(tenant, request_id))
        return
    for view in ledger.erasures.of_tenant(tenant):
        emit(view)


@click.command("expire")
@ledger_options
def expire(settings: Settings) -> None:
    """Run the erasure job once, as `prov serve` does every PROV_EXPIRY_INTERVAL_SECONDS:
    complete interrupted erasures, run queued ones the rules now allow, and erase content
    past each tenant's expiry. One JSON line per erasure completed."""
    for view in open_ledger(settings).erasures.run_due(now_us()):
        emit(view)


@click.group("retention")
def retention() -> None:
    """A tenant's retention rule: the floor before which content may not be erased, and
    the expiry after which it is."""


@retention.command("set")
@_tenant_option
@click.option("--floor-days", type=click.IntRange(0, 36_500), required=True)
@click.option("--expire-after-days", type=click.IntRange(0, 36_500), help="Default: no expiry")
@click.option("--reason", help="Recorded with the rule")
@ledger_options
def retention_set(
    settings: Settings,
    tenant: str,
    floor_days: int,
    expire_after_days: int | None,
    reason: str | None,
) -> None:
    """Record the tenant's next retention version (a ledger-signed record); prints it."""
    emit(
        open_ledger(settings).rules.set_retention(
            tenant,
            floor_days=floor_days,
            expire_after_days=expire_after_days,
            set_by=CLI,
            now_us=now_us(),
            reason=reason,
        )
    )


@retention.command("show")
@_tenant_option
@ledger_options
def retention_show(settings: Settings, tenant: str) -> None:
    """The rule in force (the default floor of 183 days when none was recorded)."""
    emit(open_ledger(settings).rules.retention(tenant))


@click.group("hold")
def hold() -> None:
    """Legal holds: a subject, or decisions by service and type, kept from every erasure."""


@hold.command("add")
@_tenant_option
@click.option("--subject", help="Hold this subject's decisions and blobs")
@click.option(
    "--filter",
    "selected",
    metavar="EXPR",
    help="Hold the decisions matching `service=P,decision_type=P` (exact, or a glob with *)",
)
@click.option("--reason", required=True)
@click.option("--hold-id", help="Default: generated")
@ledger_options
def hold_add(
    settings: Settings,
    tenant: str,
    subject: str | None,
    selected: str | None,
    reason: str,
    hold_id: str | None,
) -> None:
    """Place a hold (a ledger-signed record); prints it."""
    if (subject is None) == (selected is None):
        raise click.UsageError("give one of --subject and --filter")
    emit(
        open_ledger(settings).rules.add_hold(
            tenant,
            reason=reason,
            placed_by=CLI,
            now_us=now_us(),
            subject=subject,
            selected=None if selected is None else parse_filter(selected),
            hold_id=hold_id,
        )
    )


@hold.command("list")
@_tenant_option
@click.option("--all", "everything", is_flag=True, help="Released holds too")
@ledger_options
def hold_list(settings: Settings, tenant: str, everything: bool) -> None:
    """The tenant's live holds, one JSON line each."""
    for view in open_ledger(settings).rules.holds(tenant, released=everything):
        emit(view)


@hold.command("release")
@click.argument("hold_id")
@_tenant_option
@click.option("--reason", help="Recorded with the release")
@ledger_options
def hold_release(settings: Settings, hold_id: str, tenant: str, reason: str | None) -> None:
    """Release hold HOLD_ID (a ledger-signed record); prints it."""
    emit(
        open_ledger(settings).rules.release_hold(
            tenant, hold_id, released_by=CLI, now_us=now_us(), reason=reason
        )
    )


def print_blobs(report: BlobsReport) -> None:
    """`prov verify --blobs`: the counts, then each erased and unreadable blob on its line;
    exit 1 when a blob is unreadable or an erasure is not in the log."""
    by_record = sum(1 for item in report.erased if item[2] is not None)
    click.echo(
        f"blobs: {report.present} present, {len(report.erased)} erased "
        f"({by_record} by erasure records), {len(report.unreadable)} unreadable"
    )
    for tenant, digest, index, erased_us in report.erased:
        by = "before erasure records" if index is None else f"by entry {index}"
        click.echo(f"erased: {tenant} {digest} at {rfc3339(erased_us)} {by}")
    for tenant, digest, why in report.unreadable:
        click.echo(f"unreadable: {tenant} {digest}: {why}")
    for note in report.notes:
        click.echo(f"note: {note}")
    for fault in report.faults:
        click.echo(f"fault: {fault}", err=True)
    if not report:
        raise Failed(
            f"blobs: {len(report.unreadable)} unreadable, {len(report.faults)} erasures not in "
            "the log"
        )


@dataclass(frozen=True, slots=True)
class ErasureIndexes:
    """What `prov reindex` found rebuilding the blob references and the erasure indexes."""

    refs_changed: int
    refs: int
    erasures: ErasuresRebuilt

    @property
    def consistent(self) -> bool:
        return self.refs_changed == 0 and self.erasures.consistent


def rebuild_erasure_indexes(connection: Connection) -> ErasureIndexes:
    """Rebuild them inside `prov reindex`'s write transaction."""
    changed, held = rebuild_refs(connection)
    return ErasureIndexes(changed, held, rebuild_erasures(connection))


def report_erasure_indexes(found: ErasureIndexes, check: bool) -> None:
    rebuilt = found.erasures
    click.echo(
        f"{'checked' if check else 'rebuilt'} the erasure indexes: {found.refs} blob "
        f"references, {rebuilt.erasures} erasures, {rebuilt.retention} retention versions, "
        f"{rebuilt.holds} holds"
    )
    if found.refs_changed:
        click.echo(f"blob references that differed from the log: {found.refs_changed}", err=True)
    report_differing(rebuilt.missing, rebuilt.unexpected)
    for tenant, digest in rebuilt.unmarked[:20]:
        click.echo(
            f"blob listed by an erasure record but not marked erased: {tenant} {digest}", err=True
        )
    if not found.consistent and not check:
        click.echo("the erasure indexes differed from the log and were rebuilt")


COMMANDS = (erase, erasures, expire, retention, hold)
