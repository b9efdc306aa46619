"""The errors of the HTTP service itself: authentication, overload and request limits.

They are not about records or the log, so they do not live in the core (`ledger.errors`),
which knows nothing of HTTP; they derive from the same root, `ProvError`, and are mapped
to problem documents by `httpapi.problems` like every other error.
"""

from __future__ import annotations

from ledger.errors import BadRequest, ProvError


class AccessError(ProvError):
    """The caller may not do what it asked; raised by the service edges, never the core."""

    kind = "access-denied"
    title = "Access denied"


class Unauthenticated(AccessError):
    kind = "unauthenticated"
    title = "Missing or unknown API key"


class Forbidden(AccessError):
    kind = "forbidden"
    title = "The API key's role does not allow this"


class Overloaded(ProvError):
    """More records wait for a commit than the queue may hold; retry after a pause."""

    kind = "overloaded"
    title = "Too many records waiting"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ShuttingDown(ProvError):
    kind = "shutting-down"
    title = "The service is shutting down"


class UnsupportedMediaType(BadRequest):
    kind = "unsupported-media-type"
    title = "Unsupported Content-Type"


class BatchTooLarge(BadRequest):
    kind = "batch-too-large"
    title = "Too many records in one batch"


class RequestTimeout(ProvError):
    """The client did not send its request's headers or body within the server's timeout;
    the connection is closed after this answer."""

    kind = "request-timeout"
    title = "Request not received in time"


class HeadersTooLarge(BadRequest):
    kind = "headers-too-large"
    title = "Request headers too large"


class BodyMemoryBusy(Overloaded):
    """The request bodies a worker already holds in memory use its whole budget; nothing of
    this request was read or stored, so a retry after a pause is safe."""

    kind = "body-memory-busy"
    title = "Too many large requests at once"


class TooManyConnections(Overloaded):
    """The worker holds as many connections as it may; this one is answered and closed."""

    kind = "too-many-connections"
    title = "Too many open connections"
