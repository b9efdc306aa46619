"""Model providers for replay: one request/response shape over OpenAI-compatible chat
completions, the Anthropic Messages API and in-process ``module:function`` decision
functions, with timeouts, retries, a circuit breaker and a concurrency limit around
every call, routed and priced by a TOML registry.

The replay engine needs only `load_registry`, `ProviderPool`, `ChatRequest` and
`ChatResponse`, and catches `ProviderError`.
"""

from __future__ import annotations

from ledger.backoff import RetryPolicy, retry_after_from_headers
from replay.providers.anthropic_messages import AnthropicProvider
from replay.providers.breaker import BreakerState, CircuitBreaker, Outcome
from replay.providers.entrypoint import EntryPointProvider
from replay.providers.errors import (
    BadResponse,
    CircuitOpen,
    EntryPointError,
    MissingApiKey,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    RegistryError,
    RequestRejected,
    ServerError,
    UnknownModel,
)
from replay.providers.openai_compat import OpenAICompatProvider
from replay.providers.pool import Provider, ProviderPool
from replay.providers.pricing import Price, PriceTable
from replay.providers.registry import (
    ModelRoute,
    ProviderConfig,
    Registry,
    load_registry,
    parse_registry,
)
from replay.providers.resilience import Resilience
from replay.providers.types import ChatMessage, ChatRequest, ChatResponse, ToolCall, ToolDefinition

__all__ = [
    "AnthropicProvider",
    "BadResponse",
    "BreakerState",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "CircuitBreaker",
    "CircuitOpen",
    "EntryPointError",
    "EntryPointProvider",
    "MissingApiKey",
    "ModelRoute",
    "OpenAICompatProvider",
    "Outcome",
    "Price",
    "PriceTable",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderPool",
    "ProviderTimeout",
    "ProviderUnreachable",
    "RateLimited",
    "Registry",
    "RegistryError",
    "RequestRejected",
    "Resilience",
    "RetryPolicy",
    "ServerError",
    "ToolCall",
    "ToolDefinition",
    "UnknownModel",
    "load_registry",
    "parse_registry",
    "retry_after_from_headers",
]
