"""The one door the replay engine calls models through.

`ProviderPool.complete` resolves the request's model and version in the registry, takes
the provider's `Resilience` guard (one per provider, so the breaker and the concurrency
limit cover every model routed there), makes the call, and stamps the response with what
the engine records: the logical model and version asked for, the provider's name, the
number of attempts and the cost from the registry's price table.

Providers and guards are built on first use: a registry may name providers whose keys
are not set on this machine, and that is an error only for a call that needs one. The
pool owns the httpx client it creates (and closes it); one passed in stays the caller's.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Protocol

import httpx
import msgspec

from replay.providers.anthropic_messages import AnthropicProvider
from replay.providers.breaker import CircuitBreaker
from replay.providers.entrypoint import EntryPointProvider
from replay.providers.errors import MissingApiKey
from replay.providers.openai_compat import OpenAICompatProvider
from replay.providers.registry import ProviderConfig, Registry
from replay.providers.resilience import Resilience
from replay.providers.transport import ShardedTransport
from replay.providers.types import ChatRequest, ChatResponse


class Provider(Protocol):
    """What every provider offers: one attempt at one request, with no retries."""

    name: str
    kind: str

    async def send(
        self, request: ChatRequest, *, model: str, stream: bool = False
    ) -> ChatResponse: ...


class ProviderPool:
    def __init__(
        self,
        registry: Registry,
        *,
        env: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.registry = registry
        self._env = env if env is not None else os.environ
        self._owns_http = http is None
        if http is None:
            # The semaphores bound concurrency per provider; the connection pool must
            # not be a tighter, hidden limit across all of them. It is sharded, because
            # one httpcore pool costs CPU in proportion to the calls in flight.
            slots = sum(p.max_concurrency for p in registry.providers.values())
            http = httpx.AsyncClient(transport=ShardedTransport(max_connections=max(100, slots)))
        self._http = http
        self._rng = rng
        self._clock = clock
        self._sleep = sleep
        self._providers: dict[str, Provider] = {}
        self._guards: dict[str, Resilience] = {}

    async def __aenter__(self) -> ProviderPool:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def guard(self, provider: str) -> Resilience:
        """The provider's resilience guard (its breaker, limit and retry policy)."""
        guard = self._guards.get(provider)
        if guard is None:
            config = self.registry.providers[provider]
            guard = Resilience(
                provider,
                timeout_s=config.timeout_s,
                retry=config.retry,
                breaker=CircuitBreaker(
                    provider,
                    failure_threshold=config.failure_threshold,
                    cooldown_s=config.cooldown_s,
                    clock=self._clock,
                ),
                max_concurrency=config.max_concurrency,
                rng=self._rng,
                sleep=self._sleep,
            )
            self._guards[provider] = guard
        return guard

    def breaker(self, provider: str) -> CircuitBreaker:
        return self.guard(provider).breaker

    def provider(self, name: str) -> Provider:
        built = self._providers.get(name)
        if built is None:
            built = self._build(self.registry.providers[name])
            self._providers[name] = built
        return built

    async def complete(self, request: ChatRequest, *, stream: bool = False) -> ChatResponse:
        """Ask the model the registry routes `request.model`/`request.version` to.

        Raises a `ProviderError` subclass: `UnknownModel`, `MissingApiKey`,
        `CircuitOpen`, or the last failure once retries are spent.
        """
        route = self.registry.resolve(request.model, request.version)
        target = route.target_for(request.version)
        provider = self.provider(route.provider.name)
        guard = self.guard(route.provider.name)
        response, attempts = await guard.call(
            lambda: provider.send(request, model=target, stream=stream)
        )
        priced = self.registry.prices.cost(
            request.model, request.version, response.input_tokens, response.output_tokens
        )
        return msgspec.structs.replace(
            response,
            model=request.model,
            version=request.version,
            provider=route.provider.name,
            attempts=attempts,
            cost=priced[0] if priced else None,
            currency=priced[1] if priced else None,
        )

    def _build(self, config: ProviderConfig) -> Provider:
        if config.kind == "python":
            return EntryPointProvider(config.name)
        api_key = self._api_key(config)
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        assert config.base_url is not None  # the registry requires it for HTTP kinds
        if config.kind == "anthropic":
            return AnthropicProvider(
                config.name,
                config.base_url,
                http=self._http,
                api_key=api_key,
                anthropic_version=config.anthropic_version,
                default_max_tokens=config.default_max_tokens,
                timeout=timeout,
            )
        return OpenAICompatProvider(
            config.name, config.base_url, http=self._http, api_key=api_key, timeout=timeout
        )

    def _api_key(self, config: ProviderConfig) -> str | None:
        if config.api_key_env is None:
            return None  # local servers (Ollama, llama.cpp) usually want none
        key = self._env.get(config.api_key_env, "").strip()
        if not key:
            raise MissingApiKey(
                config.name, f"environment variable {config.api_key_env} is not set or empty"
            )
        return key
