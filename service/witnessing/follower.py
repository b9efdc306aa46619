"""The checkpoint follower: after each new checkpoint, ask every witness to cosign it, and
publish the checkpoint `/checkpoint` serves to the append-only target.

Each witness has its own loop, so one that hangs or refuses delays no other, and none of
them is on the append path: ingest never waits for a witness. A witness that fails is
retried with backoff and counted in /metrics. Several server processes may follow the same
log; a witness answers the loser of a race 409 with its size, which is where the next
request starts, and cosignatures are stored once per (size, witness).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

import httpx
import structlog
from sqlalchemy import Engine

from ledger.backoff import RetryPolicy
from ledger.log.proofs import consistency_proof
from ledger.log.sequencer import now_micros
from ledger.log.store import StoredCheckpoint, latest_checkpoint
from ledger.publication import CheckpointPublisher
from ledger.storage.db import side_write_transaction
from ledger.witness.cosigned import (
    newest_cosigned,
    newest_of_others,
    store_cosignatures,
    witness_progress,
)
from service.witnessing.config import WitnessEndpoint
from service.witnessing.exchange import (
    Conflict,
    Cosigned,
    Outcome,
    Refused,
    Unreachable,
    request_cosignature,
)
from service.witnessing.metrics import PUBLICATIONS, WITNESS_REQUESTS

log = structlog.get_logger("prov.witness")

# A 409 moves the request to the witness's size; a few in a row mean another process is
# racing this one, which the next round settles.
_CONFLICT_RETRIES = 3
# Jitter only spreads retries; it needs no unpredictability.
_JITTER = random.Random()  # noqa: S311


@dataclass
class WitnessLoop:
    """One witness: what this process believes it holds, and how long to wait next."""

    endpoint: WitnessEndpoint
    known_size: int | None = None
    failures: int = 0
    last_error: str | None = None

    def next_wait(self, interval_s: float, cap_s: float) -> float:
        return self.wait_after(self.failures, interval_s, cap_s)

    @staticmethod
    def wait_after(failures: int, interval_s: float, cap_s: float) -> float:
        """The wait before the next attempt after `failures` failures in a row."""
        if failures == 0:
            return interval_s
        # The project's one backoff rule (full jitter), never below the interval.
        window = RetryPolicy(base_s=interval_s, cap_s=max(cap_s, interval_s)).window(failures)
        return max(interval_s, _JITTER.uniform(0.0, window))


@dataclass
class CheckpointFollower:
    engine: Engine
    witnesses: list[WitnessEndpoint]
    quorum: int
    publisher: CheckpointPublisher | None = None
    interval_s: float = 1.0
    timeout_s: float = 5.0
    backoff_cap_s: float = 60.0
    _loops: list[WitnessLoop] = field(default_factory=list)
    _published_size: int = -1

    def __post_init__(self) -> None:
        self._loops = [WitnessLoop(endpoint) for endpoint in self.witnesses]

    def run(self, stop: threading.Event) -> list[threading.Thread]:
        """Start one thread per witness and one for publication; they end when `stop` is set."""
        threads = [
            threading.Thread(
                target=self._follow_witness, args=(loop, stop), name=f"witness-{loop.endpoint.name}"
            )
            for loop in self._loops
        ]
        if self.publisher is not None:
            threads.append(
                threading.Thread(target=self._publish_loop, args=(stop,), name="publish")
            )
        for thread in threads:
            thread.daemon = True
            thread.start()
        return threads

    def _follow_witness(self, loop: WitnessLoop, stop: threading.Event) -> None:
        with httpx.Client(timeout=self.timeout_s) as http:
            while not stop.is_set():
                try:
                    self.witness_once(http, loop)
                except Exception as error:  # the loop outlives any failure; it retries
                    loop.failures += 1
                    loop.last_error = f"{type(error).__name__}: {error}"
                    log.exception("witness round failed", witness=loop.endpoint.name)
                stop.wait(loop.next_wait(self.interval_s, self.backoff_cap_s))

    def witness_once(self, http: httpx.Client, loop: WitnessLoop) -> Outcome | None:
        """Ask `loop`'s witness to cosign the checkpoint it should see next, if any; the
        outcome of the last request, or None when there was nothing to ask."""
        target = self._target(loop)
        if target is None:
            return None
        outcome: Outcome | None = None
        for _ in range(_CONFLICT_RETRIES):
            outcome = self._submit(http, loop, target)
            if not isinstance(outcome, Conflict) or outcome.size > target.tree_size:
                break
            # Start from the witness's size. At the target's own size the request is sent
            # again with no proof: the witness cosigns its current checkpoint once more, so
            # a cosignature lost before it was stored here is obtained again.
            loop.known_size = outcome.size
        self._account(loop, outcome, target)
        return outcome

    def _target(self, loop: WitnessLoop) -> StoredCheckpoint | None:
        """The checkpoint to send: the newest another witness cosigned that this one has
        not (so that the witnesses converge on the same sizes and the quorum forms while
        the log grows), else the latest, if newer than what this witness holds."""
        names = [endpoint.name for endpoint in self.witnesses]
        with self.engine.connect() as connection:
            if loop.known_size is None:
                held = {p.witness: p.tree_size for p in witness_progress(connection)}
                loop.known_size = held.get(loop.endpoint.name, 0)
            followed = newest_of_others(connection, loop.endpoint.name, names, loop.known_size)
            if followed is not None:
                return followed
            latest = latest_checkpoint(connection)
        if latest is None or latest.tree_size == 0 or latest.tree_size <= loop.known_size:
            return None
        return latest

    def _submit(self, http: httpx.Client, loop: WitnessLoop, target: StoredCheckpoint) -> Outcome:
        old = loop.known_size or 0
        proof: list[bytes] = []
        if 0 < old < target.tree_size:
            with self.engine.connect() as connection:
                proof = consistency_proof(connection, old, target.tree_size).proof
        return request_cosignature(http, loop.endpoint, old, proof, target.note)

    def _account(
        self, loop: WitnessLoop, outcome: Outcome | None, target: StoredCheckpoint
    ) -> None:
        name = loop.endpoint.name
        if isinstance(outcome, Cosigned):
            with side_write_transaction(self.engine) as connection:
                store_cosignatures(connection, target.tree_size, outcome.cosignatures, now_micros())
            loop.known_size = target.tree_size
            loop.failures, loop.last_error = 0, None
            WITNESS_REQUESTS.labels(name, "cosigned").inc()
            return
        if isinstance(outcome, Conflict):
            WITNESS_REQUESTS.labels(name, "conflict").inc()
            # The witness moved on past this target (another process asked it): go on from
            # there, unless it holds more than this log does.
            loop.known_size = max(loop.known_size or 0, outcome.size)
            with self.engine.connect() as connection:
                newest = latest_checkpoint(connection)
            log_size = 0 if newest is None else newest.tree_size
            if outcome.size > log_size:
                loop.failures += 1
                loop.last_error = (
                    f"the witness holds size {outcome.size}, larger than this log's {log_size}"
                )
                log.error("witness is ahead of the log", witness=name, size=outcome.size)
            return
        if isinstance(outcome, Refused):
            WITNESS_REQUESTS.labels(name, "refused").inc()
            loop.failures += 1
            loop.last_error = f"{outcome.status}: {outcome.detail}"
            log.warning(
                "witness refused", witness=name, status=outcome.status, detail=outcome.detail
            )
        elif isinstance(outcome, Unreachable):
            WITNESS_REQUESTS.labels(name, "unreachable").inc()
            loop.failures += 1
            loop.last_error = outcome.detail
            log.warning("witness unreachable", witness=name, error=outcome.detail)

    def _publish_loop(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.publish_once()
                failures = 0
            except Exception:
                failures += 1
                PUBLICATIONS.labels("failed").inc()
                log.exception("publishing the checkpoint failed")
            stop.wait(WitnessLoop.wait_after(failures, self.interval_s, self.backoff_cap_s))

    def publish_once(self) -> bool:
        """Publish the newest checkpoint `/checkpoint` may serve, if newer than the last:
        with witnesses, only one the quorum cosigned (a published checkpoint stays)."""
        assert self.publisher is not None
        with self.engine.connect() as connection:
            if self.quorum > 0:
                names = [endpoint.name for endpoint in self.witnesses]
                served = newest_cosigned(connection, self.quorum, witnesses=names)
            else:
                served = latest_checkpoint(connection)
        if served is None or served.tree_size <= self._published_size:
            return False
        written = self.publisher.publish(served.tree_size, served.note)
        self._published_size = served.tree_size
        if written:
            PUBLICATIONS.labels("published").inc()
        return written
