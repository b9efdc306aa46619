"""Policy checks: a decision's recorded policy inputs evaluated again, and the record of it.

**The recorded policy inputs** of a decision are its `inputs`, overlaid with the `inputs` of
its last `policy_check` step when it has one (a service that derives features for its
policy, a debt-to-income ratio say, records them there). The principal of the request is
the deciding service (``tenant/service``), its resource the decision's id.

**Which version.** `pinned` evaluates the version that judged the decision: the registered
policy its `policy.digest` names (preferring the registration under its own policy id and
version). It must reproduce the recorded result and reasons (`reproduced`); anything else
is a finding in itself (`mismatch`). `against` evaluates another registered version of the
same policy id and says whether the outcome is the `same` or `changed`. Reasons compare as
a set: an engine may list them in another order. An evaluation that fails (the policy
raised or erred on the inputs) is verdict `error`; a version that cannot be loaded at all
(`PolicyEvaluationFailed` from the loader) refuses the check.

Inputs that do not match the policy's schema refuse a single check (`PolicyInputsInvalid`,
nothing stored); in a batch they are that decision's `error`, and the batch goes on. A
decision with no policy, or whose policy names no registered version, is refused alone
(`BadRequest`, `NotFound`); a batch counts it as skipped or unresolved and goes on.

Every check that ran is a `PolicyCheckRecord`, signed with the ledger's replay key and
appended (`Ledger.append_policy_checks`), linked to the decision by id and leaf hash.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from ledger.errors import BadRequest, NotFound, ProvError, RecordRejected
from ledger.indexes.policies import PolicyEntry, policy_version, resolve_digest
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records.decision import Decision, PolicyCheck, StepError
from ledger.records.policy import (
    MODE_VERDICTS,
    Mode,
    PolicyCheckRecord,
    PolicyOutcome,
    Verdict,
)
from ledger.records.replay import REPLAY_SERVICE, leaf_reference
from replay.batch.batch import Recorded, load_recorded
from replay.policy.errors import PolicyEvaluationFailed
from replay.policy.registry import PolicyLoader, RegisteredPolicy
from replay.policy.report import PolicyReport, ReportBuilder

# Checks appended per transaction in a batch.
APPEND_CHUNK = 500


def recorded_inputs(decision: Decision) -> dict[str, Any]:
    """The decision's inputs, overlaid with its last policy-check step's inputs."""
    inputs = dict(decision.inputs)
    steps = [step for step in decision.steps if isinstance(step, PolicyCheck)]
    if steps and isinstance(steps[-1].inputs, dict):
        inputs |= steps[-1].inputs
    return inputs


def principal_of(decision: Decision) -> str:
    return f"{decision.tenant}/{decision.service}"


def verdict_of(mode: Mode, recorded: PolicyOutcome, outcome: PolicyOutcome) -> Verdict:
    same = recorded.result == outcome.result and sorted(recorded.reasons) == sorted(outcome.reasons)
    return MODE_VERDICTS[mode][0 if same else 1]


def new_check_id() -> str:
    """A check's or a batch's id: ``pc-`` and 24 random hex digits."""
    return f"pc-{secrets.token_hex(12)}"


def policy_entry(connection: Connection, decision: Decision, against: str | None) -> PolicyEntry:
    """The registered version a check of `decision` evaluates: the one its digest names
    (pinned), or version `against` of its policy id."""
    policy = decision.policy
    if policy is None:
        raise BadRequest(f"decision {decision.id!r} records no policy", pointer="/decision_id")
    if against is None:
        entry = resolve_digest(
            connection, decision.tenant, policy.digest, policy.policy_id, policy.version
        )
        if entry is None:
            raise NotFound(
                f"decision {decision.id!r} was judged by {policy.policy_id} {policy.version} "
                f"({policy.digest}), which names no registered policy"
            )
        return entry
    entry = policy_version(connection, decision.tenant, policy.policy_id, against)
    if entry is None:
        raise NotFound(
            f"policy {policy.policy_id!r} has no registered version {against!r}",
            pointer="/against",
        )
    return entry


def evaluate(
    decision: Decision,
    leaf: bytes,
    policy: RegisteredPolicy,
    mode: Mode,
    *,
    record_id: str,
) -> PolicyCheckRecord:
    """Evaluate the decision's recorded policy inputs under `policy`; the check's record.
    Inputs the policy's schema refuses raise `PolicyInputsInvalid`."""
    try:
        outcome: PolicyOutcome | PolicyEvaluationFailed = policy.evaluator.evaluate(
            recorded_inputs(decision), principal_of(decision), decision.id
        )
    except PolicyEvaluationFailed as failure:
        outcome = failure
    return check_record(decision, leaf, policy, mode, outcome, record_id=record_id)


def check_record(
    decision: Decision,
    leaf: bytes,
    policy: RegisteredPolicy,
    mode: Mode,
    outcome: PolicyOutcome | ProvError,
    *,
    record_id: str,
    batch: str | None = None,
) -> PolicyCheckRecord:
    """The record of a check of `decision` under `policy` that gave `outcome` (or failed)."""
    assert decision.policy is not None  # `policy_entry` refused a decision without one
    recorded = PolicyOutcome(result=decision.policy.result, reasons=list(decision.policy.reasons))
    failed = outcome if isinstance(outcome, ProvError) else None
    evaluated = None if isinstance(outcome, ProvError) else outcome
    return PolicyCheckRecord(
        id=record_id,
        tenant=decision.tenant,
        service=REPLAY_SERVICE,
        occurred_at=datetime.now(UTC),
        decision_id=decision.id,
        decision_leaf=leaf_reference(leaf),
        batch=batch,
        mode=mode,
        policy=policy.ref,
        recorded=recorded,
        outcome=evaluated,
        verdict="error" if evaluated is None else verdict_of(mode, recorded, evaluated),
        error=None if failed is None else StepError(type=failed.kind, message=str(failed)),
    )


@dataclass(frozen=True, slots=True)
class Checked:
    """A check that was appended: its record and its receipt."""

    record: PolicyCheckRecord
    receipt: Receipt


class PolicyChecker:
    """Runs policy checks against one ledger and appends them."""

    def __init__(self, ledger: Ledger, loader: PolicyLoader | None = None) -> None:
        self.ledger = ledger
        self.loader = loader or PolicyLoader()

    def check_one(self, index: int, against: str | None = None) -> Checked:
        """Check the decision at log `index`; its refusal is raised, nothing stored."""
        [recorded] = load_recorded(self.ledger, [index])
        decision = recorded.decision
        with self.ledger.engine.connect() as connection:
            policy = self.loader.load(
                connection, policy_entry(connection, decision, against), self.ledger.blobs
            )
        record = evaluate(
            decision,
            recorded.leaf_hash,
            policy,
            "pinned" if against is None else "against",
            record_id=new_check_id(),
        )
        [result] = self.ledger.append_policy_checks([record])
        if isinstance(result, RecordRejected):
            raise result
        return Checked(record, result)

    def check_batch(
        self, tenant: str, indexes: Sequence[int], against: str | None = None
    ) -> PolicyReport:
        """Check every decision at `indexes`; the report. A decision the batch cannot check
        is a line of the report, never the batch's end.

        Decisions are evaluated a chunk at a time, each chunk's requests to one version in
        one call into its engine, and a chunk's checks are signed and appended on another
        thread while the next chunk is evaluated."""
        mode: Mode = "pinned" if against is None else "against"
        batch = new_check_id()
        report = ReportBuilder(batch=batch, tenant=tenant, mode=mode, against=against)
        # The version each (policy id, version, digest) of the batch resolves to, read once.
        versions: dict[tuple[str, str, str], RegisteredPolicy | ProvError] = {}
        decisions = iter(enumerate(load_recorded(self.ledger, indexes)))
        with ThreadPoolExecutor(1, thread_name_prefix="prov-policy-append") as appender:
            appending: Future[list[_Appended]] | None = None
            while chunk := list(itertools.islice(decisions, APPEND_CHUNK)):
                checks = self._check_chunk(chunk, mode, against, batch, versions, report)
                if appending is not None:
                    report.extend(appending.result())
                appending = appender.submit(self._append, checks)
            if appending is not None:
                report.extend(appending.result())
        return report.report(datetime.now(UTC))

    def _check_chunk(
        self,
        chunk: Sequence[tuple[int, Recorded]],
        mode: Mode,
        against: str | None,
        batch: str,
        versions: dict[tuple[str, str, str], RegisteredPolicy | ProvError],
        report: ReportBuilder,
    ) -> list[tuple[int, PolicyCheckRecord]]:
        """The checks of a chunk of the batch, evaluated per version in one call each."""
        by_version: dict[int, tuple[RegisteredPolicy, list[tuple[int, Recorded]]]] = {}
        for position, recorded in chunk:
            policy = self._version(recorded.decision, against, versions)
            if isinstance(policy, ProvError):
                report.refused(position, recorded.decision, policy)
            else:
                by_version.setdefault(id(policy), (policy, []))[1].append((position, recorded))
        checks = []
        for policy, items in by_version.values():
            outcomes = policy.evaluator.evaluate_each(
                [
                    (recorded_inputs(r.decision), principal_of(r.decision), r.decision.id)
                    for _, r in items
                ]
            )
            checks += [
                (
                    position,
                    check_record(
                        recorded.decision,
                        recorded.leaf_hash,
                        policy,
                        mode,
                        outcome,
                        record_id=f"{batch}.{position}",
                        batch=batch,
                    ),
                )
                for (position, recorded), outcome in zip(items, outcomes, strict=True)
            ]
        return sorted(checks, key=lambda check: check[0])

    def _version(
        self,
        decision: Decision,
        against: str | None,
        versions: dict[tuple[str, str, str], RegisteredPolicy | ProvError],
    ) -> RegisteredPolicy | ProvError:
        if decision.policy is None:
            return BadRequest(f"decision {decision.id!r} records no policy")
        named = decision.policy
        key = (named.policy_id, named.version, named.digest)
        policy = versions.get(key)
        if policy is None:
            try:
                with self.ledger.engine.connect() as connection:
                    entry = policy_entry(connection, decision, against)
                    policy = self.loader.load(connection, entry, self.ledger.blobs)
            except (NotFound, PolicyEvaluationFailed) as error:
                policy = error
            versions[key] = policy
        return policy

    def _append(self, checks: Sequence[tuple[int, PolicyCheckRecord]]) -> list[_Appended]:
        """Sign and append a chunk's checks: each with its log index, or why it is not
        stored."""
        if not checks:
            return []
        results = self.ledger.append_policy_checks([record for _, record in checks])
        return [
            (position, record, None, str(result))
            if isinstance(result, RecordRejected)
            else (position, record, result.index, None)
            for (position, record), result in zip(checks, results, strict=True)
        ]


# A check as the appender left it: its position, record, log index or why not stored.
_Appended = tuple[int, PolicyCheckRecord, int | None, str | None]
