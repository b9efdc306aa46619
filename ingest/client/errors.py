"""The SDK's exceptions: one hierarchy under `ClientError`.

`ProblemError` is the server saying no (an RFC 9457 problem document); the others are the
SDK's own findings: a receipt that does not verify, a response outside the HTTP contract,
a network that stayed down through every retry, a record that fails the schema before it
is sent, and the local queue's limits. `ClientError` derives from the project's root,
`ProvError` (pure Python, so the SDK still imports without the server's dependencies).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from ledger.errors import PROBLEM_TYPE_PREFIX, ProvError

PROBLEM_PREFIX = PROBLEM_TYPE_PREFIX
_MAX_DETAIL_CHARS = 300  # of a non-problem error body, e.g. a proxy's HTML page


class ClientError(ProvError):
    """Base class of every error the SDK raises or reports for a record."""

    kind = "client-error"
    title = "Client error"


@dataclass(frozen=True, slots=True)
class ProblemDetail:
    """One entry of a problem's `errors`: what is wrong and where (an RFC 6901 pointer)."""

    detail: str
    pointer: str | None = None


class ProblemError(ClientError):
    """The server refused a request or a record with an RFC 9457 problem document.

    Its `kind` is the server's (the problem type's last part), not one of its own.
    """

    # RFC 9457 makes every member optional: a problem may come without a detail.
    detail: str | None  # type: ignore[assignment]

    def __init__(
        self,
        *,
        status: int,
        title: str,
        type: str = "about:blank",
        detail: str | None = None,
        errors: tuple[ProblemDetail, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.type = type
        self.detail = detail
        self.errors = errors
        # Seconds the server asked to wait (429/503), when the SDK stopped retrying anyway.
        self.retry_after = retry_after
        self.pointer = None
        Exception.__init__(self, str(self))

    @property
    def kind(self) -> str:  # type: ignore[override]
        """The stable problem kind (``invalid-payload``), or the type URI if not ours."""
        return self.type.removeprefix(PROBLEM_PREFIX)

    def __str__(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail:
            text += f": {self.detail}"
        for error in self.errors:
            where = f" (at {error.pointer})" if error.pointer else ""
            # The server repeats a lone error's detail at the top; say it once.
            text += where if error.detail == self.detail else f"; {error.detail}{where}"
        return f"{text} [{self.kind}]"

    def __repr__(self) -> str:
        return f"ProblemError(status={self.status}, type={self.type!r}, detail={self.detail!r})"


class _ErrorDoc(msgspec.Struct):
    detail: str = ""
    pointer: str | None = None


class _ProblemDoc(msgspec.Struct):
    # Every member is optional (RFC 9457 §3.1) and extensions are ignored.
    type: str = "about:blank"
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    errors: list[_ErrorDoc] = []


_problem_decoder = msgspec.json.Decoder(_ProblemDoc)


def problem_from_document(
    doc: _ProblemDoc, status: int, reason: str, retry_after: float | None = None
) -> ProblemError:
    return ProblemError(
        status=status,
        title=doc.title or reason,
        type=doc.type,
        detail=doc.detail,
        errors=tuple(ProblemDetail(e.detail, e.pointer) for e in doc.errors),
        retry_after=retry_after,
    )


def parse_problem(
    status: int, reason: str, body: bytes, retry_after: float | None = None
) -> ProblemError:
    """The error an HTTP error response stands for.

    A response that is not a problem document (a load balancer's 502 page, say) still
    becomes a `ProblemError` of type ``about:blank`` with the start of its body as detail,
    so callers handle one exception type for every refusal. The HTTP status wins over the
    document's `status`, which RFC 9457 makes advisory.
    """
    try:
        doc = _problem_decoder.decode(body)
    except msgspec.MsgspecError:
        text = body[:_MAX_DETAIL_CHARS].decode("utf-8", "replace").strip()
        return ProblemError(
            status=status,
            title=reason or "HTTP error",
            detail=text or None,
            retry_after=retry_after,
        )
    return problem_from_document(doc, status, reason, retry_after)


class ReceiptInvalid(ClientError):
    """A receipt failed verification: its ledger signature does not verify, it does not cover
    exactly the envelope bytes that were sent, or its clear fields contradict its signed body.

    The record may or may not be in the log; only a valid receipt or an inclusion proof
    says it is. Treat this as an incident: the server or something in between misbehaves.
    """

    kind = "receipt-invalid"
    title = "Receipt does not verify"


class AnswerInvalid(ClientError):
    """A signed answer other than a receipt (a freshness verdict) does not verify under the
    ledger's key, or its clear fields differ from what the ledger signed. Treat it as an
    incident, as `ReceiptInvalid`."""

    kind = "answer-invalid"
    title = "Signed answer does not verify"


class UnexpectedResponse(ClientError):
    """A response does not follow the HTTP contract (wrong shape, wrong number of results)."""

    kind = "unexpected-response"
    title = "Response outside the HTTP contract"


class ConnectionFailed(ClientError):
    """The server could not be reached, or did not answer in time, through every retry.

    The record may have been appended; sending it again is safe, because a record id is
    idempotent: the same envelope bytes are answered with the same receipt.
    """

    kind = "connection-failed"
    title = "Server unreachable"


class InvalidDecision(ClientError):
    """A decision does not satisfy the record schema; nothing was sent."""

    kind = "invalid-decision"
    title = "Decision does not satisfy the schema"


class QueueFull(ClientError):
    """`submit` did not find room in the background queue in time (or was told not to wait)."""

    kind = "queue-full"
    title = "Background queue full"


class ClientClosed(ClientError):
    """The client was closed; it accepts no more records."""

    kind = "client-closed"
    title = "Client closed"
