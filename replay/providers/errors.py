"""The errors a provider call can end in, and the registry's configuration error.

Each class says two things the resilience layer needs without inspecting messages:
`retryable` (may another attempt succeed?) and `trips_breaker` (does this failure count
against the provider's health?). A 429 is retryable but does not trip the breaker: the
server is healthy and has said when to come back, and opening the circuit would turn one
key's quota into an outage for every caller. A 4xx other than 429 means the request is
wrong, so it is neither retried nor held against the provider.

Every message is one line, ``provider: what happened``, so that logs and the CLI can
print it as is; server bodies are collapsed and cut short. Each class derives from the
project's root, `ProvError`, with a stable `kind` (`provider-timeout`, ...).
"""

from __future__ import annotations

from pathlib import Path

from ledger.backoff import PERMANENT_5XX
from ledger.errors import ProvError

_DETAIL_LIMIT = 300


def one_line(text: str, limit: int = _DETAIL_LIMIT) -> str:
    """Collapse whitespace runs (newlines included) to one space and cut to `limit`."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ProviderError(ProvError):
    """Base class of every failure of a provider call."""

    kind = "provider-error"
    title = "Model provider call failed"
    retryable = False
    trips_breaker = False

    def __init__(self, provider: str, detail: str) -> None:
        self.provider = provider
        self.attempts = 1
        super().__init__(one_line(detail))

    def __str__(self) -> str:
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.provider}: {self.detail}{tries}"


class ProviderTimeout(ProviderError):
    """No complete answer within the call's timeout."""

    kind = "provider-timeout"
    title = "Model provider did not answer in time"

    retryable = True
    trips_breaker = True


class ProviderUnreachable(ProviderError):
    """The connection could not be made or broke before an answer came."""

    kind = "provider-unreachable"
    title = "Model provider unreachable"

    retryable = True
    trips_breaker = True


class RateLimited(ProviderError):
    """HTTP 429; `retry_after` is the server's requested wait in seconds, if it gave one."""

    kind = "provider-rate-limited"
    title = "Model provider rate limit"

    retryable = True

    def __init__(self, provider: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(provider, detail)
        self.retry_after = retry_after


class ServerError(ProviderError):
    """HTTP 5xx. 501 and 505 say the server will never do this, so they are not retried."""

    kind = "provider-server-error"
    title = "Model provider server error"

    trips_breaker = True

    def __init__(self, provider: str, detail: str, status: int) -> None:
        super().__init__(provider, detail)
        self.status = status
        self.retryable = status not in PERMANENT_5XX


class RequestRejected(ProviderError):
    """HTTP 4xx other than 429: the request itself is wrong (bad key, unknown model...)."""

    kind = "provider-rejected"
    title = "Model provider refused the request"

    def __init__(self, provider: str, detail: str, status: int) -> None:
        super().__init__(provider, detail)
        self.status = status


class BadResponse(ProviderError):
    """A 2xx answer that does not parse as the provider's wire format.

    Not retried (the same server gives the same garbage) but held against the provider,
    since a server that keeps answering garbage is as broken as one that does not answer.
    """

    kind = "provider-bad-response"
    title = "Model provider answer unreadable"

    trips_breaker = True


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open: the call failed fast, nothing was sent."""

    kind = "provider-circuit-open"
    title = "Model provider circuit open"


class MissingApiKey(ProviderError):
    """The environment variable that should hold the provider's API key is unset or empty."""

    kind = "provider-missing-api-key"
    title = "Model provider API key missing"


class EntryPointError(ProviderError):
    """A `module:function` decision function could not be loaded, raised, or returned a
    non-dict."""

    kind = "entry-point-error"
    title = "Decision function failed"


class UnknownModel(ProviderError, LookupError):
    """The registry has no route for the requested model name and version."""

    kind = "unknown-model"
    title = "Unknown model"


class RegistryError(ProvError, ValueError):
    """A bad provider registry file; names the file and, where one is at fault, the key."""

    kind = "bad-registry"
    title = "Model registry invalid"

    def __init__(self, source: str | Path, key: str | None, problem: str) -> None:
        self.source = str(source)
        self.key = key
        self.problem = one_line(problem)
        where = f"{self.source}: {key}: " if key else f"{self.source}: "
        super().__init__(where + self.problem)
