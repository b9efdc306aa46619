"""Asking whether a decision may still be relied on (docs/freshness.md), from the SDK.

`freshness_flow` fetches `GET /v1/decisions/{id}/freshness` and accepts the answer only when
its verdict is signed by the ledger's key (`ledger.log.freshness_verdict`); the evidence in a
full answer is for `prov verify-freshness`. `FreshnessCache` keeps verdicts for a short
time, so a service that asks before every reuse of a cached judgment does not ask the ledger
each time: a change is seen at most `ttl` seconds late.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

import msgspec

from ingest.client._flows import Flow, Request, exchange, response_problem
from ingest.client.errors import AnswerInvalid, UnexpectedResponse
from ledger.backoff import Attempts
from ledger.log.freshness_verdict import open_verdict
from ledger.log.note import NoteVerifier


def freshness_flow(
    record_id: str, verifier: NoteVerifier, attempts: Attempts, *, evidence: bool
) -> Flow[dict[str, Any]]:
    """The freshness answer for `record_id`, its verdict checked against the ledger's key."""
    path = f"/v1/decisions/{quote(record_id, safe='')}/freshness?evidence="
    response = yield from exchange(
        Request("GET", path + ("true" if evidence else "false")), attempts
    )
    if response.status != 200:
        raise response_problem(response)
    try:
        answer = msgspec.json.decode(response.body)
    except msgspec.DecodeError as error:
        raise UnexpectedResponse(f"freshness answer does not parse: {error}") from None
    if not isinstance(answer, dict) or open_verdict(answer, verifier) is None:
        raise AnswerInvalid(f"the freshness answer for {record_id!r} is not signed by the ledger")
    if answer.get("id") != record_id:
        raise AnswerInvalid(f"the freshness answer is for {answer.get('id')!r}, not {record_id!r}")
    return answer


class FreshnessCache:
    """Verdict states by decision id for `ttl` seconds, at most `size` of them (the oldest
    go first). Thread-safe; a `ttl` of 0 keeps nothing."""

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        if ttl < 0 or size < 1:
            raise ValueError("a freshness cache needs ttl >= 0 and size >= 1")
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, record_id: str) -> str | None:
        with self._lock:
            found = self._entries.get(record_id)
            if found is None:
                return None
            if found[0] <= time.monotonic():
                del self._entries[record_id]
                return None
            return found[1]

    def put(self, record_id: str, state: str) -> None:
        if self._ttl == 0:
            return
        with self._lock:
            self._entries[record_id] = (time.monotonic() + self._ttl, state)
            self._entries.move_to_end(record_id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def forget(self, record_id: str | None = None) -> None:
        """Drop one id's verdict, or every verdict."""
        with self._lock:
            if record_id is None:
                self._entries.clear()
            else:
                self._entries.pop(record_id, None)


def reusable(state: str, *, unknown_is_fresh: bool) -> bool:
    """Whether a decision in `state` may be relied on: `fresh` yes, `stale` no, and
    `unknown` (it declares no freshness, so nothing can have expired) as the caller says."""
    return state == "fresh" or (state == "unknown" and unknown_is_fresh)
