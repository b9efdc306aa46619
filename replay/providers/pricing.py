"""What a model call costs, from a configurable price table.

Prices are per million tokens, input and output apart, as providers publish them, and are
`Decimal` end to end: a shadow evaluation adds up thousands of small costs and compares
them, and binary floats would make equal totals differ. A model's price may be given for
one version or, with version None, for every version that has no price of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import msgspec

_PER = Decimal(1_000_000)


class Price(msgspec.Struct, frozen=True, kw_only=True):
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    currency: str = "USD"

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok"):
            value: Decimal = getattr(self, name)
            if not value.is_finite() or value < 0:
                raise ValueError(f"{name} must be a finite amount >= 0, got {value}")

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """Exact: a product of integers and decimals divided by 10**6 never rounds at the
        default 28-digit context for any realistic token count."""
        total = Decimal(input_tokens) * self.input_per_mtok
        total += Decimal(output_tokens) * self.output_per_mtok
        return total / _PER


class PriceTable:
    """Prices keyed by (model name, version); version None is the any-version fallback."""

    def __init__(self, prices: Mapping[tuple[str, str | None], Price] | None = None) -> None:
        self._prices: dict[tuple[str, str | None], Price] = dict(prices or {})

    def __len__(self) -> int:
        return len(self._prices)

    def set(self, model: str, version: str | None, price: Price) -> None:
        self._prices[(model, version)] = price

    def lookup(self, model: str, version: str | None) -> Price | None:
        exact = self._prices.get((model, version))
        return exact if exact is not None else self._prices.get((model, None))

    def cost(
        self, model: str, version: str | None, input_tokens: int, output_tokens: int
    ) -> tuple[Decimal, str] | None:
        """(amount, currency), or None when the model has no price."""
        price = self.lookup(model, version)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens), price.currency
