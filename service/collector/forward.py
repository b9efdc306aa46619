"""Signing the decisions a collector assembles with the service's key, and sending them with
the SDK (`ingest.client.AsyncClient`: batching, retries, receipts verified against the
ledger's key); the `sign` and `append` a `TraceAssembler` is given.

What the ledger answers decides each trace's fate, and no answer is taken as a refusal:

- a verified receipt: the decision is in the log;
- a record refused on its merits (its schema, a conflicting id, a delegation chain): the
  decision is `RecordRejected` and its trace is marked failed with the reason;
- the ledger unreachable, overloaded or failing (no answer, 429, 5xx): the same records
  are sent again after a backoff, for as long as it takes, while new spans keep arriving
  and are stored; the same bytes each time, so a retry the ledger already holds is
  answered with the stored receipt, never a second record;
- a refusal of the collector itself (its API key, or the service key not registered,
  revoked or for another service), or a receipt that does not verify: `LedgerNotAccepting`
  is raised, the trace stays claimed, and it is tried again when the claim lapses, until
  the operator has fixed what the log line names.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from ingest.client import (
    AsyncClient,
    ClientError,
    ConnectionFailed,
    InvalidDecision,
    ProblemError,
    SignedRecord,
)
from ledger.backoff import RetryPolicy, retryable_status
from ledger.errors import ProvError, RecordRejected
from ledger.keys.signing import SigningKey, sign_decision
from ledger.log.receipt import Receipt
from ledger.records.decision import Decision

_log = logging.getLogger(__name__)

# Refusals that are about the collector's key, not about one decision: every decision
# would be refused alike until an operator registers or replaces the key.
KEY_KINDS = frozenset({"unknown-key", "key-revoked", "key-not-authorized"})
# Between rounds of the SDK's own retries while the ledger stays down.
OUTAGE_BACKOFF = RetryPolicy(
    max_retries=1 << 30, base_s=0.5, cap_s=10.0, max_retry_after_s=float("inf")
)
MAX_RETRY_AFTER_S = 60.0


class LedgerNotAccepting(ProvError):
    """The ledger refuses what the collector sends for a reason no retry soon will fix."""

    kind = "ledger-not-accepting"
    title = "Ledger does not accept the collector's records"


@dataclass(slots=True)
class ForwardCounts:
    """What this collector sent since it started (shown by its readiness route)."""

    appended: int = 0
    rejected: int = 0
    outages: int = 0  # rounds that found the ledger unreachable or failing
    last_error: str | None = None


@dataclass(slots=True)
class Forwarder:
    """The assembler's `sign` and `append` for one tenant and service."""

    client: AsyncClient
    key: SigningKey
    tenant: str
    keyid: str | None = None
    counts: ForwardCounts = field(default_factory=ForwardCounts)
    _rng: random.Random = field(default_factory=random.SystemRandom)

    def sign(self, decisions: list[Decision]) -> list[bytes]:
        """Each decision's envelope, signed with the service key. Not checked against the
        schema here: a decision that breaks it is refused on its own in `append`."""
        return [sign_decision(decision, self.key, self.keyid) for decision in decisions]

    async def append(
        self, raws: Sequence[bytes], tenant: str
    ) -> list[Receipt | RecordRejected | None]:
        """One verified receipt or refusal per envelope, in order (see the module)."""
        if tenant != self.tenant:  # the span store holds this collector's tenant only
            raise LedgerNotAccepting(f"spans of tenant {tenant!r} in a {self.tenant!r} store")
        results: list[Receipt | RecordRejected | None] = [None] * len(raws)
        pending: dict[int, SignedRecord] = {}
        for position, raw in enumerate(raws):
            try:
                pending[position] = SignedRecord.from_envelope(raw)
            except InvalidDecision as error:
                results[position] = RecordRejected(f"the spans make an invalid decision: {error}")
        round_ = 0
        while pending:
            answers = await self._send(list(pending.values()), round_)
            round_ += 1
            if answers is None:
                continue
            retry: dict[int, SignedRecord] = {}
            why: ClientError | None = None
            for (position, record), answer in zip(pending.items(), answers, strict=True):
                if isinstance(answer, Receipt):
                    results[position] = answer
                elif _transient(answer):
                    retry[position] = record
                    why = why or answer
                else:
                    results[position] = self._refused(record, answer)
            if why is not None:
                await self._outage(round_, f"{len(retry)} records", why)
            pending = retry
        self.counts.appended += sum(isinstance(result, Receipt) for result in results)
        self.counts.rejected += sum(isinstance(result, RecordRejected) for result in results)
        return results

    async def _send(
        self, records: list[SignedRecord], round_: int
    ) -> list[Receipt | ClientError] | None:
        """The batch's answers; None after an outage of the whole batch (waited out)."""
        try:
            answers = await self.client.append_batch(records)
        except ClientError as error:
            if not _transient(error):
                self.counts.last_error = str(error)
                raise LedgerNotAccepting(f"the ledger refused the collector: {error}") from error
            await self._outage(round_, f"{len(records)} records", error)
            return None
        self.counts.last_error = None
        return list(answers)

    def _refused(self, record: SignedRecord, answer: ClientError) -> RecordRejected:
        if isinstance(answer, ProblemError) and answer.kind not in KEY_KINDS:
            return RecordRejected(str(answer))
        # The service key is not accepted, or the receipt did not verify: not this
        # decision's fault, and not to be given up on.
        self.counts.last_error = f"record {record.id}: {answer}"
        raise LedgerNotAccepting(f"record {record.id}: {answer}")

    async def _outage(self, round_: int, what: str, error: ClientError) -> None:
        """Wait before sending again: the server's Retry-After (at most a minute) or a
        backoff with full jitter, growing to `OUTAGE_BACKOFF.cap_s`."""
        retry_after = error.retry_after if isinstance(error, ProblemError) else None
        if retry_after is not None:
            retry_after = min(retry_after, MAX_RETRY_AFTER_S)
        delay = OUTAGE_BACKOFF.delay(round_, retry_after, self._rng) or 0.0
        self.counts.outages += 1
        self.counts.last_error = str(error)
        _log.warning("ledger unavailable (%s); sending %s again in %.1f s", error, what, delay)
        await asyncio.sleep(delay)


def _transient(error: object) -> bool:
    """No answer, or one that says to come back later (429, 5xx)."""
    if isinstance(error, ConnectionFailed):
        return True
    return isinstance(error, ProblemError) and retryable_status(error.status)
