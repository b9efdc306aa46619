"""A thread pool that spreads per-record work over the cores in a few large chunks.

The per-record work that matters (Ed25519 in libsodium, SHA-256) releases the GIL, so
threads do run it in parallel; but a future per record costs more than a hash, and
`ThreadPoolExecutor.map` ignores `chunksize`, so a batch is cut into one chunk per worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_MIN_CHUNK = 64


class WorkerPool:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._executor = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`[function(item) for item in items]`, in order, computed chunk-wise in parallel."""
        if self._executor is None or len(items) < 2 * _MIN_CHUNK:
            return [function(item) for item in items]
        size = max(_MIN_CHUNK, -(-len(items) // self.workers))
        futures = [
            self._executor.submit(_apply, function, items[start : start + size])
            for start in range(0, len(items), size)
        ]
        return [result for future in futures for result in future.result()]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()


def _apply(function: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [function(item) for item in chunk]
