"""The delivery worker: sends the outbox's notifications as signed webhooks.

One worker runs in each server process, on a thread of its own (`WebhookWorker`). Each
round it claims one due outbox row at a time (`ledger.notify.outbox.claim_due`, a lease, so
several processes share the outbox safely). A `decision.stale` row's decisions go in
chunks: each chunk is one event, signed with the ledger key and POSTed to the
subscription's URL. A `monitor.breach` row is one event: the breach record at the row's
log index, its payload and its stored envelope (`BreachEventBody`). A 2xx
answer acknowledges the chunk and moves the row's cursor past it; the row is delivered when
no decision is left. Any other answer, a timeout or a connection error is a failed attempt:
the row waits out a backoff (full jitter, doubling from the base up to the cap, the rule of
`ledger.backoff`; a receiver's `Retry-After` is a floor, within the cap), and after the last
attempt it is dead. Redirects are not followed: a subscription names its final URL.

Delivery is at least once: a chunk whose answer was lost, or a process killed between the
POST and the acknowledgement, is sent again with the same event id.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace

import httpx
import msgspec
import structlog

from ledger.backoff import RetryPolicy, retry_after_from_headers
from ledger.ledger import Ledger
from ledger.log.entry import rfc3339
from ledger.log.receipt import receipt_keyid
from ledger.log.sequencer import now_micros
from ledger.log.store import read_entry
from ledger.notify import outbox
from ledger.notify.webhook import (
    BREACH_EVENT,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    STALE_EVENT,
    ChangeRef,
    StaleDecisionRef,
    StaleEventBody,
    encode_body,
    sign_body,
)
from ledger.records import dsse
from ledger.records.monitor import BREACH_PAYLOAD_TYPE
from service.settings import Settings
from service.webhooks.metrics import DELIVERIES

log = structlog.get_logger("prov.webhooks")

USER_AGENT = "prov-webhooks/1"
_MAX_ERROR_BODY = 200  # characters of a refusal's body kept as its last error


class BreachEventBody(msgspec.Struct, kw_only=True):
    """A `monitor.breach` event: one breach record, as signed and as it sits in the log.

    `breach` is the record's payload exactly as the ledger signed it (so a receiver reads
    it without decoding the envelope); `envelope` is the stored DSSE envelope, base64, for
    a receiver that checks the record's signature or its inclusion at `index` itself."""

    type: str
    id: str  # `<outbox row>-<log index>`: the same on every retry
    log: str
    tenant: str
    sent_at: str
    breach: msgspec.Raw
    index: int
    envelope: str


_breach_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How the worker sends and retries, from settings."""

    timeout_s: float
    max_attempts: int
    backoff: RetryPolicy  # its window only: the attempts are counted here
    poll_s: float
    lease_s: float

    @classmethod
    def of(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            timeout_s=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            backoff=RetryPolicy(
                max_retries=settings.webhook_max_attempts - 1,
                base_s=settings.webhook_backoff_base_seconds,
                cap_s=settings.webhook_backoff_cap_seconds,
            ),
            poll_s=settings.webhook_poll_seconds,
            lease_s=settings.webhook_lease_seconds,
        )

    @property
    def lease_us(self) -> int:
        return int(self.lease_s * 1_000_000)

    def next_attempt_us(
        self, failed_attempts: int, retry_after: float | None, now_us: int, rng: random.Random
    ) -> int | None:
        """When to try again after the `failed_attempts`-th failure; None: dead-letter."""
        if failed_attempts >= self.max_attempts:
            return None
        delay = rng.uniform(0.0, self.backoff.window(failed_attempts - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff.cap_s))
        return now_us + int(delay * 1_000_000)


class Deliverer:
    """Sends due outbox rows; `run_once` is one round, for the worker's loop and tests."""

    def __init__(
        self,
        ledger: Ledger,
        policy: DeliveryPolicy,
        http: httpx.Client,
        stopping: threading.Event | None = None,
        rng: random.Random | None = None,
        chunk: int = outbox.CHUNK,
    ) -> None:
        self._ledger = ledger
        self._policy = policy
        self._http = http
        self._stopping = stopping or threading.Event()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._keyid = receipt_keyid(ledger.verifier)
        self._chunk = chunk

    def run_once(self) -> int:
        """Deliver every row due now, one claim at a time; returns how many were claimed."""
        claimed = 0
        while not self._stopping.is_set():
            rows = outbox.claim_due(
                self._ledger.engine, now_micros(), self._policy.lease_us, limit=1
            )
            if not rows:
                break
            claimed += 1
            self._deliver(rows[0])
        return claimed

    def _deliver(self, row: outbox.OutboxRow) -> None:
        if row.event_type == BREACH_EVENT:
            self._deliver_breach(row)
        else:
            self._deliver_stale(row)

    def _deliver_breach(self, row: outbox.OutboxRow) -> None:
        """One event, the breach record at the row's subject index, then the row is done."""
        engine = self._ledger.engine
        with engine.connect() as connection:
            entry = read_entry(connection, row.subject_idx)
        if entry is None or entry.payload_type != BREACH_PAYLOAD_TYPE:
            self._fail(row, None, f"no breach record at log index {row.subject_idx}", None)
            return
        payload = dsse.payload_bytes(dsse.decode_envelope(entry.envelope))
        event_id = f"{row.id}-{entry.index}"
        body = _breach_encoder.encode(
            BreachEventBody(
                type=BREACH_EVENT,
                id=event_id,
                log=self._ledger.origin,
                tenant=row.tenant,
                sent_at=rfc3339(now_micros()),
                breach=msgspec.Raw(payload),
                index=entry.index,
                envelope=dsse.b64encode(entry.envelope),
            )
        )
        status = self._send(row, body, event_id, BREACH_EVENT)
        if status is not None:
            outbox.acknowledge(
                engine,
                row,
                row.last_idx,
                status=status,
                done=True,
                now_us=now_micros(),
                lease_us=self._policy.lease_us,
            )

    def _deliver_stale(self, row: outbox.OutboxRow) -> None:
        engine = self._ledger.engine
        change = outbox.load_change(engine, row.subject_idx)
        if change is None:  # the index row goes only with the ledger; never expected
            self._fail(row, None, f"no context change at log index {row.subject_idx}", None)
            return
        while True:
            chunk = outbox.stale_chunk(engine, row, self._chunk)
            if not chunk.decisions:
                outbox.acknowledge(
                    engine,
                    row,
                    row.last_idx,
                    status=None,
                    done=True,
                    now_us=now_micros(),
                    lease_us=self._policy.lease_us,
                )
                return
            status = self._post(row, change, chunk)
            if status is None:
                return
            cursor = chunk.decisions[-1].index
            outbox.acknowledge(
                engine,
                row,
                cursor,
                status=status,
                done=not chunk.more,
                now_us=now_micros(),
                lease_us=self._policy.lease_us,
            )
            if not chunk.more:
                return
            if self._stopping.is_set():
                outbox.release(engine, row)  # the next worker goes on from the cursor
                return
            row = replace(row, cursor_idx=cursor, attempts=0)

    def _post(
        self, row: outbox.OutboxRow, change: outbox.Change, chunk: outbox.StaleChunk
    ) -> int | None:
        """POST one chunk; its 2xx status, or None after recording the failure."""
        event_id = f"{row.id}-{chunk.decisions[0].index}"
        body = encode_body(
            StaleEventBody(
                type=STALE_EVENT,
                id=event_id,
                log=self._ledger.origin,
                tenant=row.tenant,
                sent_at=rfc3339(now_micros()),
                change=ChangeRef(
                    index=change.index,
                    id=change.id,
                    key=change.key,
                    version=change.version,
                    changed_at=change.changed_at,
                ),
                decisions=[
                    StaleDecisionRef(
                        index=item.index, id=item.id, key=item.key, version=item.version
                    )
                    for item in chunk.decisions
                ],
                more=chunk.more,
            )
        )
        return self._send(row, body, event_id, STALE_EVENT)

    def _send(self, row: outbox.OutboxRow, body: bytes, event_id: str, event: str) -> int | None:
        """POST one signed event; its 2xx status, or None after recording the failure."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign_body(body, self._ledger.signer.key, self._keyid),
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event,
        }
        try:
            answer = self._http.post(row.url, content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            self._fail(row, None, f"{type(error).__name__}: {error}", None)
            return None
        if 200 <= answer.status_code < 300:
            DELIVERIES.labels("delivered").inc()
            return answer.status_code
        text = " ".join(answer.text[:_MAX_ERROR_BODY].split())
        self._fail(
            row,
            answer.status_code,
            f"HTTP {answer.status_code}" + (f": {text}" if text else ""),
            retry_after_from_headers(answer.headers),
        )
        return None

    def _fail(
        self, row: outbox.OutboxRow, status: int | None, error: str, retry_after: float | None
    ) -> None:
        now = now_micros()
        attempts = row.attempts + 1
        next_attempt = self._policy.next_attempt_us(attempts, retry_after, now, self._rng)
        outbox.record_failure(
            self._ledger.engine, row, status=status, error=error, next_attempt_us=next_attempt
        )
        outcome = "dead" if next_attempt is None else "failed"
        DELIVERIES.labels(outcome).inc()
        log.warning(
            "webhook delivery failed",
            delivery=row.id,
            subscription=row.subscription_id,
            attempts=attempts,
            outcome=outcome,
            error=error,
        )


class WebhookWorker:
    """The delivery loop on a daemon thread: a round, then a wait of the poll interval
    (cut short by `stop`). A round that fails (the database is down) is logged and tried
    again after the interval."""

    def __init__(self, ledger: Ledger, policy: DeliveryPolicy) -> None:
        self._policy = policy
        self._stopping = threading.Event()
        self._http = httpx.Client(timeout=policy.timeout_s, follow_redirects=False)
        self._deliverer = Deliverer(ledger, policy, self._http, self._stopping)
        self._thread = threading.Thread(target=self._loop, name="prov-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the POST under way (at most the timeout), then stop."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(self._policy.timeout_s + 5 if timeout is None else timeout)
        self._http.close()

    def _loop(self) -> None:
        failing = False
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._deliverer.run_once()
            except Exception as error:  # a database outage: keep the loop, try again later
                if not failing:  # once per outage, not once per poll
                    log.exception("webhook delivery stopped", error=type(error).__name__)
                failing = True
            else:
                if failing:
                    log.info("webhook delivery resumed")
                failing = False
            waited = time.monotonic() - started
            self._stopping.wait(max(0.0, self._policy.poll_s - waited))
