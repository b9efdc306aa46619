"""The errors a provider call can end in, and the registry's configuration error.

Each class says two things the resilience layer needs without inspecting messages:
`retryable` (may another attempt succeed?) and `trips_breaker` (does this failure count
against the provider's health?). A 429 is retryable but does not trip the breaker: the
server is healthy and has said when to come back, and opening the circuit would turn one
key's quota into an outage for every caller. A 4xx other than 429 means the request is
wrong, so it is neither retried nor held against the provider.

Every message is one line, ``provider: what happened``, so that logs and the CLI can
print it as is; server bodies are collapsed and cut short.
"""

from __future__ import annotations

from pathlib import Path

_DETAIL_LIMIT = 300


def one_line(text: str, limit: int = _DETAIL_LIMIT) -> str:
    """Collapse whitespace runs (newlines included) to one space and cut to `limit`."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ProviderError(Exception):
    """Base class of every failure of a provider call."""

    retryable = False
    trips_breaker = False

    def __init__(self, provider: str, detail: str) -> None:
        self.provider = provider
        self.detail = one_line(detail)
        self.attempts = 1
        super().__init__(self.detail)

    def __str__(self) -> str:
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.provider}: {self.detail}{tries}"


class ProviderTimeout(ProviderError):
    """No complete answer within the call's timeout."""

    retryable = True
    trips_breaker = True


class ProviderUnreachable(ProviderError):
    """The connection could not be made or broke before an answer came."""

    retryable = True
    trips_breaker = True


class RateLimited(ProviderError):
    """HTTP 429; `retry_after` is the server's requested wait in seconds, if it gave one."""

    retryable = True

    def __init__(self, provider: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(provider, detail)
        self.retry_after = retry_after


class ServerError(ProviderError):
    """HTTP 5xx. 501 and 505 say the server will never do this, so they are not retried."""

    trips_breaker = True

    def __init__(self, provider: str, detail: str, status: int) -> None:
        super().__init__(provider, detail)
        self.status = status
        self.retryable = status not in (501, 505)


class RequestRejected(ProviderError):
    """HTTP 4xx other than 429: the request itself is wrong (bad key, unknown model...)."""

    def __init__(self, provider: str, detail: str, status: int) -> None:
        super().__init__(provider, detail)
        self.status = status


class BadResponse(ProviderError):
    """A 2xx answer that does not parse as the provider's wire format.

    Not retried (the same server gives the same garbage) but held against the provider,
    since a server that keeps answering garbage is as broken as one that does not answer.
    """

    trips_breaker = True


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open: the call failed fast, nothing was sent."""


class MissingApiKey(ProviderError):
    """The environment variable that should hold the provider's API key is unset or empty."""


class EntryPointError(ProviderError):
    """A `module:function` decision function could not be loaded, raised, or returned a
    non-dict."""


class UnknownModel(ProviderError, LookupError):
    """The registry has no route for the requested model name and version."""


class RegistryError(ValueError):
    """A bad provider registry file; names the file and, where one is at fault, the key."""

    def __init__(self, source: str | Path, key: str | None, problem: str) -> None:
        self.source = str(source)
        self.key = key
        self.problem = one_line(problem)
        where = f"{self.source}: {key}: " if key else f"{self.source}: "
        super().__init__(where + self.problem)
