"""The background queue's state and its batching rule, shared by both clients.

This holds no lock and never waits: the sync client guards it with a `threading.Condition`
and the async client with an `asyncio.Condition`, and each asks `wait_time` how long to
sleep. A batch is cut when it is full (by count or bytes), when its oldest record has
waited `flush_interval`, or at once while a flush or a close is pending.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from ingest.client._records import SignedRecord

F = TypeVar("F")  # the future type: concurrent.futures.Future or asyncio.Future


@dataclass(frozen=True, slots=True)
class Pending(Generic[F]):
    record: SignedRecord
    future: F
    enqueued_at: float


class BatchBuffer(Generic[F]):
    def __init__(
        self, *, bound: int, batch_size: int, max_batch_bytes: int, flush_interval: float
    ) -> None:
        self.bound = bound
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.flush_interval = flush_interval
        self._items: deque[Pending[F]] = deque()
        self._bytes = 0
        # Counters, not sets: batches are sent one at a time in queue order, so record n
        # is settled exactly when `settled` passes n.
        self.enqueued = 0
        self.taken = 0
        self.settled = 0
        self._flush_until = 0
        self.closing = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.bound

    def put(self, record: SignedRecord, future: F, now: float) -> None:
        self._items.append(Pending(record, future, now))
        self._bytes += len(record.envelope) + 1
        self.enqueued += 1

    def wait_time(self, now: float) -> float | None:
        """0 when a batch should go now; else how long to wait (None: until notified)."""
        if not self._items:
            return None
        urgent = self.closing or self._flush_until > self.taken
        if urgent or len(self._items) >= self.batch_size or self._bytes + 1 >= self.max_batch_bytes:
            return 0.0
        return max(0.0, self._items[0].enqueued_at + self.flush_interval - now)

    def take(self) -> list[Pending[F]]:
        """The next batch, oldest first, within the count and byte limits (at least one)."""
        batch = [self._items.popleft()]
        size = 2 + len(batch[0].record.envelope)
        while self._items and len(batch) < self.batch_size:
            size += 1 + len(self._items[0].record.envelope)
            if size > self.max_batch_bytes:
                break
            batch.append(self._items.popleft())
        self._bytes -= sum(len(p.record.envelope) + 1 for p in batch)
        self.taken += len(batch)
        return batch

    def settle(self, count: int) -> None:
        self.settled += count

    def request_flush(self) -> int:
        """Ask for everything queued so far to be sent now; the count to wait for."""
        self._flush_until = max(self._flush_until, self.enqueued)
        return self.enqueued

    @property
    def finished(self) -> bool:
        """Closing and nothing left to send: the worker may stop."""
        return self.closing and not self._items
