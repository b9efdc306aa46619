"""The provider registry: which provider answers for which model and version, and how.

It is read from a TOML file (stdlib `tomllib`). Providers are named tables, because the
circuit breaker and the concurrency limit belong to a provider, shared by all its models;
models are an array of tables that route a model name, and optionally one version of it,
to a provider::

    [providers.local-vllm]
    kind = "openai"                      # openai | anthropic | python
    base_url = "http://127.0.0.1:8000/v1"
    api_key_env = "VLLM_API_KEY"         # optional: the variable holding the key
    timeout_s = 30                       # whole answer, per attempt
    connect_timeout_s = 5
    max_concurrency = 4                  # requests in flight to this provider
    retry = { max_retries = 3, base_s = 0.2, cap_s = 5, max_retry_after_s = 30 }
    breaker = { failure_threshold = 5, cooldown_s = 30 }

    [providers.hosted]
    kind = "anthropic"
    base_url = "https://api.anthropic.com"
    api_key_env = "ANTHROPIC_API_KEY"
    anthropic_version = "2023-06-01"     # anthropic only
    default_max_tokens = 1024            # anthropic only: the API requires max_tokens

    [providers.rules]
    kind = "python"

    [[models]]
    name = "loan-scorer"
    version = "2024-06"                  # omit, or "*", to match any version
    provider = "local-vllm"
    upstream_model = "loan-scorer-{version}"   # the wire name; default "{name}"
    price = { input_per_mtok = "0.50", output_per_mtok = "1.50", currency = "USD" }

    [[models]]
    name = "loan-rules"
    provider = "rules"
    entry_point = "service.demo.loan_rules:approve_loan_{version}"

A request for (name, version) takes the route for exactly that version, else the route
for the name with no version. ``{name}`` and ``{version}`` in `upstream_model` and
`entry_point` are replaced by the requested ones, so one any-version route can serve
every dated snapshot. Prices are decimal strings (or integers) so that no binary float
rounding creeps in. Unknown keys are errors: a misspelt ``timout_s`` silently falling
back to the default is how a replay ends up waiting a minute per call.

Every problem is a `RegistryError` naming the file and the key, on one line.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from ledger.backoff import RetryPolicy
from replay.providers.errors import RegistryError, UnknownModel
from replay.providers.pricing import Price, PriceTable

ProviderKind = Literal["openai", "anthropic", "python"]
KINDS: tuple[ProviderKind, ...] = ("openai", "anthropic", "python")
ANY_VERSION = "*"

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ENTRY_POINT = re.compile(r"^[A-Za-z_{][\w.{}]*:[A-Za-z_{][\w{}]*$")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: ProviderKind
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_concurrency: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = 1024


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """One model (and optionally one version of it) routed to a provider.

    `target` is the wire model name for HTTP providers and the ``module:function`` for the
    python provider, still holding its ``{name}``/``{version}`` placeholders.
    """

    name: str
    version: str | None
    provider: ProviderConfig
    target: str
    price: Price | None = None

    def target_for(self, version: str | None) -> str:
        if "{version}" in self.target and version is None:
            raise UnknownModel(
                self.provider.name,
                f"model {self.name!r} needs a version: its route target {self.target!r} "
                "uses {version}",
            )
        return self.target.replace("{name}", self.name).replace("{version}", version or "")


class Registry:
    def __init__(
        self,
        providers: Mapping[str, ProviderConfig],
        routes: Iterable[ModelRoute],
        *,
        source: str = "<registry>",
    ) -> None:
        self.source = source
        self.providers: dict[str, ProviderConfig] = dict(providers)
        self.routes: dict[tuple[str, str | None], ModelRoute] = {}
        self.prices = PriceTable()
        for route in routes:
            self.routes[(route.name, route.version)] = route
            if route.price is not None:
                self.prices.set(route.name, route.version, route.price)

    def resolve(self, model: str, version: str | None) -> ModelRoute:
        """The route for exactly (model, version), else the model's any-version route."""
        route = self.routes.get((model, version)) or self.routes.get((model, None))
        if route is not None:
            return route
        known = sorted(v for (name, v) in self.routes if name == model and v is not None)
        asked = f"{model!r} version {version!r}" if version is not None else f"{model!r}"
        hint = f"; known versions: {', '.join(known)}" if known else ""
        raise UnknownModel(self.source, f"no route for model {asked} in the registry{hint}")


def load_registry(path: str | Path) -> Registry:
    """Read and check a registry file; every problem is a one-line `RegistryError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RegistryError(path, None, f"cannot read: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise RegistryError(path, None, f"not UTF-8 text: {error.reason}") from error
    return parse_registry(text, source=str(path))


def parse_registry(text: str, *, source: str = "<registry>") -> Registry:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RegistryError(source, None, f"invalid TOML: {error}") from error
    root = _Table(source, "", data, {"providers", "models"})
    providers_table = root.table("providers", required=True)
    providers: dict[str, ProviderConfig] = {}
    for name in providers_table.names():
        providers[name] = _provider(name, providers_table.table(name, required=True))
    if not providers:
        raise RegistryError(source, "providers", "at least one provider is required")
    routes: list[ModelRoute] = []
    seen: set[tuple[str, str | None]] = set()
    for index, item in enumerate(root.array("models")):
        route = _route(_Table(source, f"models[{index}]", item, _MODEL_KEYS), providers)
        if (route.name, route.version) in seen:
            which = route.version if route.version is not None else "any version"
            raise RegistryError(
                source, f"models[{index}]", f"duplicate route for {route.name!r} ({which})"
            )
        seen.add((route.name, route.version))
        routes.append(route)
    return Registry(providers, routes, source=source)


_PROVIDER_KEYS = {
    "kind",
    "base_url",
    "api_key_env",
    "timeout_s",
    "connect_timeout_s",
    "max_concurrency",
    "retry",
    "breaker",
    "anthropic_version",
    "default_max_tokens",
}
_MODEL_KEYS = {"name", "version", "provider", "upstream_model", "entry_point", "price"}


def _provider(name: str, table: _Table) -> ProviderConfig:
    table.restrict(_PROVIDER_KEYS)
    kind = table.string("kind", required=True)
    if kind not in KINDS:
        raise table.error("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    base_url = table.string("base_url")
    if kind != "python":
        if base_url is None:
            raise table.error("base_url", f"is required for kind {kind!r}")
        if not base_url.startswith(("http://", "https://")):
            raise table.error("base_url", f"must start with http:// or https://, got {base_url!r}")
    elif base_url is not None:
        raise table.error("base_url", "is not used by kind 'python'")
    retry_table = table.table("retry")
    retry_table.restrict({"max_retries", "base_s", "cap_s", "max_retry_after_s"})
    defaults = RetryPolicy()
    base_s = retry_table.number("base_s", defaults.base_s)
    cap_s = retry_table.number("cap_s", max(defaults.cap_s, base_s))
    if cap_s < base_s:
        raise retry_table.error("cap_s", f"must be >= base_s ({base_s:g}), got {cap_s:g}")
    retry = RetryPolicy(
        max_retries=retry_table.integer("max_retries", defaults.max_retries, minimum=0),
        base_s=base_s,
        cap_s=cap_s,
        max_retry_after_s=retry_table.number(
            "max_retry_after_s", defaults.max_retry_after_s, allow_zero=True
        ),
    )
    breaker = table.table("breaker")
    breaker.restrict({"failure_threshold", "cooldown_s"})
    fallback = ProviderConfig(name=name, kind="python")
    return ProviderConfig(
        name=name,
        kind=kind,
        base_url=base_url.rstrip("/") if base_url else None,
        api_key_env=table.string("api_key_env"),
        timeout_s=table.number("timeout_s", fallback.timeout_s),
        connect_timeout_s=table.number("connect_timeout_s", fallback.connect_timeout_s),
        max_concurrency=table.integer("max_concurrency", fallback.max_concurrency, minimum=1),
        retry=retry,
        failure_threshold=breaker.integer(
            "failure_threshold", fallback.failure_threshold, minimum=1
        ),
        cooldown_s=breaker.number("cooldown_s", fallback.cooldown_s, allow_zero=True),
        anthropic_version=table.string("anthropic_version") or fallback.anthropic_version,
        default_max_tokens=table.integer(
            "default_max_tokens", fallback.default_max_tokens, minimum=1
        ),
    )


def _route(table: _Table, providers: Mapping[str, ProviderConfig]) -> ModelRoute:
    name = table.string("name", required=True)
    assert name is not None
    version = table.string("version")
    if version == ANY_VERSION:
        version = None
    provider_name = table.string("provider", required=True)
    assert provider_name is not None
    provider = providers.get(provider_name)
    if provider is None:
        known = ", ".join(sorted(providers))
        raise table.error("provider", f"unknown provider {provider_name!r} (known: {known})")
    upstream = table.string("upstream_model")
    entry_point = table.string("entry_point")
    if provider.kind == "python":
        if upstream is not None:
            raise table.error("upstream_model", "is not used by a python provider")
        if entry_point is None:
            raise table.error("entry_point", "is required for a python provider")
        if not _ENTRY_POINT.match(entry_point):
            raise table.error(
                "entry_point", f"must look like 'package.module:function', got {entry_point!r}"
            )
        target = entry_point
    else:
        if entry_point is not None:
            raise table.error("entry_point", f"is only for python providers, not {provider.kind}")
        target = upstream or "{name}"
    return ModelRoute(
        name=name, version=version, provider=provider, target=target, price=_price(table)
    )


def _price(table: _Table) -> Price | None:
    if not table.has("price"):
        return None
    price = table.table("price")
    price.restrict({"input_per_mtok", "output_per_mtok", "currency"})
    currency = price.string("currency") or "USD"
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise price.error("currency", f"must be an ISO 4217 code like 'USD', got {currency!r}")
    return Price(
        input_per_mtok=price.decimal("input_per_mtok"),
        output_per_mtok=price.decimal("output_per_mtok"),
        currency=currency,
    )


def _key_part(name: str) -> str:
    return name if _BARE_KEY.match(name) else '"' + name.replace('"', '\\"') + '"'


class _Table:
    """A TOML table being checked, that knows its own dotted key for error messages."""

    def __init__(self, source: str, path: str, data: Any, allowed: set[str] | None = None) -> None:
        if not isinstance(data, dict):
            raise RegistryError(source, path or None, f"must be a table, got {_toml_type(data)}")
        self.source = source
        self.path = path
        self.data: dict[str, Any] = data
        if allowed is not None:
            self.restrict(allowed)

    def key(self, name: str) -> str:
        part = _key_part(name)
        if not self.path:
            return part
        return f"{self.path}.{part}"

    def error(self, name: str, problem: str) -> RegistryError:
        return RegistryError(self.source, self.key(name), problem)

    def restrict(self, allowed: set[str]) -> None:
        for name in self.data:
            if name not in allowed:
                raise self.error(
                    name, f"unknown key (expected one of: {', '.join(sorted(allowed))})"
                )

    def names(self) -> list[str]:
        return list(self.data)

    def has(self, name: str) -> bool:
        return name in self.data

    def table(self, name: str, *, required: bool = False) -> _Table:
        if name not in self.data:
            if required:
                raise self.error(name, "is required")
            return _Table(self.source, self.key(name), {})
        return _Table(self.source, self.key(name), self.data[name])

    def array(self, name: str) -> list[Any]:
        value = self.data.get(name, [])
        if not isinstance(value, list):
            raise self.error(name, f"must be an array of tables, got {_toml_type(value)}")
        return value

    def string(self, name: str, *, required: bool = False) -> str | None:
        if name not in self.data:
            if required:
                raise self.error(name, "is required")
            return None
        value = self.data[name]
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {_toml_type(value)}")
        if not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def number(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        if name not in self.data:
            return default
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, got {_toml_type(value)}")
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise self.error(name, f"must be {bound}, got {value}")
        return float(value)

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        if name not in self.data:
            return default
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, got {_toml_type(value)}")
        if value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value}")
        return value

    def decimal(self, name: str) -> Decimal:
        if name not in self.data:
            raise self.error(name, "is required")
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(name, f"must be a decimal string, got {_toml_type(value)}")
        try:
            # str() of a float is its shortest round-trip form, so 0.1 becomes 0.1 exactly.
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.error(name, f"must be a decimal amount, got {value!r}") from None
        if not amount.is_finite() or amount < 0:
            raise self.error(name, f"must be a finite amount >= 0, got {value!r}")
        return amount


def _toml_type(value: Any) -> str:
    names: dict[type, str] = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    for kind, label in names.items():
        if isinstance(value, kind):
            return f"{label} ({value!r})" if kind in (bool, int, float) else label
    return type(value).__name__
