"""The provider registry file: what a good one yields, and one clear line for a bad one."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from replay.providers import (
    Price,
    PriceTable,
    RegistryError,
    UnknownModel,
    load_registry,
    parse_registry,
)
from replay.providers import registry as registry_module

GOOD = """
[providers.local-vllm]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1/"
api_key_env = "VLLM_API_KEY"
timeout_s = 30
connect_timeout_s = 2.5
max_concurrency = 4

[providers.local-vllm.retry]
max_retries = 3
base_s = 0.2
cap_s = 5
max_retry_after_s = 30

[providers.local-vllm.breaker]
failure_threshold = 7
cooldown_s = 12

[providers.hosted]
kind = "anthropic"
base_url = "https://api.anthropic.com"
api_key_env = "ANTHROPIC_API_KEY"
anthropic_version = "2023-06-01"
default_max_tokens = 2048

[providers.rules]
kind = "python"

[[models]]
name = "loan-scorer"
provider = "local-vllm"
upstream_model = "loan-scorer-{version}"
price = { input_per_mtok = "0.50", output_per_mtok = 1.5 }

[[models]]
name = "loan-scorer"
version = "2024-06"
provider = "local-vllm"
upstream_model = "scorer-june"
price = { input_per_mtok = "0.40", output_per_mtok = "1.20", currency = "EUR" }

[[models]]
name = "writer-large"
version = "*"
provider = "hosted"

[[models]]
name = "loan-rules"
provider = "rules"
entry_point = "service.demo.loan_rules:approve_loan_{version}"
"""


def test_a_good_registry_resolves_routes_and_settings() -> None:
    registry = parse_registry(GOOD, source="providers.toml")
    vllm = registry.providers["local-vllm"]
    assert vllm.kind == "openai"
    assert vllm.base_url == "http://127.0.0.1:8000/v1"  # the trailing slash is dropped
    assert (vllm.timeout_s, vllm.connect_timeout_s, vllm.max_concurrency) == (30.0, 2.5, 4)
    assert (vllm.retry.max_retries, vllm.retry.base_s, vllm.retry.cap_s) == (3, 0.2, 5.0)
    assert vllm.retry.max_retry_after_s == 30.0
    assert (vllm.failure_threshold, vllm.cooldown_s) == (7, 12.0)
    writer = registry.providers["hosted"]
    assert writer.default_max_tokens == 2048
    assert writer.max_concurrency == 8  # the default
    assert writer.retry.max_retries == 2

    june = registry.resolve("loan-scorer", "2024-06")
    assert june.version == "2024-06"
    assert june.target_for("2024-06") == "scorer-june"
    other = registry.resolve("loan-scorer", "2025-01")  # the any-version fallback
    assert other.version is None
    assert other.target_for("2025-01") == "loan-scorer-2025-01"
    large = registry.resolve("writer-large", None)
    assert large.target_for(None) == "writer-large"  # "*" is any version; name by default
    rules = registry.resolve("loan-rules", "v2")
    assert rules.target_for("v2") == "service.demo.loan_rules:approve_loan_v2"


def test_prices_come_from_the_registry_exactly() -> None:
    registry = parse_registry(GOOD)
    june = registry.prices.lookup("loan-scorer", "2024-06")
    assert june == Price(
        input_per_mtok=Decimal("0.40"), output_per_mtok=Decimal("1.20"), currency="EUR"
    )
    fallback = registry.prices.lookup("loan-scorer", "2023-01")
    assert fallback is not None
    assert fallback.output_per_mtok == Decimal("1.5")  # a TOML float, read without drift
    assert registry.prices.cost("loan-scorer", "2024-06", 1_000_000, 500_000) == (
        Decimal("1.00"),
        "EUR",
    )
    assert registry.prices.cost("loan-rules", "v1", 10, 10) is None


def test_price_arithmetic_is_exact_decimal() -> None:
    table = PriceTable(
        {("m", None): Price(input_per_mtok=Decimal("2.50"), output_per_mtok=Decimal("10"))}
    )
    amount, currency = table.cost("m", "any", 1234, 567) or (None, None)
    assert amount == Decimal("0.008755")
    assert currency == "USD"
    # Ten thousand small calls add up to exactly ten thousand times one.
    one = table.cost("m", None, 3, 1)
    assert one is not None
    assert sum((one[0] for _ in range(10_000)), Decimal(0)) == one[0] * 10_000
    with pytest.raises(ValueError, match="input_per_mtok"):
        Price(input_per_mtok=Decimal(-1), output_per_mtok=Decimal(1))


def test_unknown_model_lists_known_versions() -> None:
    registry = parse_registry(
        """
[providers.p]
kind = "openai"
base_url = "http://127.0.0.1:1"
[[models]]
name = "m"
version = "v1"
provider = "p"
[[models]]
name = "m"
version = "v2"
provider = "p"
""",
        source="r.toml",
    )
    with pytest.raises(UnknownModel) as caught:
        registry.resolve("m", "v3")
    assert str(caught.value) == (
        "r.toml: no route for model 'm' version 'v3' in the registry; known versions: v1, v2"
    )


def test_the_documented_example_parses() -> None:
    doc = registry_module.__doc__
    assert doc is not None
    example = doc.split("::\n", 1)[1].split("\nA request", 1)[0]
    text = "\n".join(line[4:] for line in example.splitlines())
    registry = parse_registry(text)
    assert set(registry.providers) == {"local-vllm", "hosted", "rules"}
    assert registry.resolve("loan-rules", "v1").provider.kind == "python"


PROVIDER = """
[providers.p]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
"""

BAD = [
    pytest.param("[providers.p\nkind = 1", None, "invalid TOML", id="syntax"),
    pytest.param("", "providers", "is required", id="no-providers"),
    pytest.param("[providers]\n", "providers", "at least one provider", id="empty-providers"),
    pytest.param('[providers.p]\nkind = "grpc"\n', "providers.p.kind", "must be one of", id="kind"),
    pytest.param(
        '[providers.p]\nkind = "openai"\n', "providers.p.base_url", "is required", id="no-base-url"
    ),
    pytest.param(
        '[providers.p]\nkind = "openai"\nbase_url = "127.0.0.1:80"\n',
        "providers.p.base_url",
        "must start with http://",
        id="base-url-scheme",
    ),
    pytest.param(PROVIDER + "timout_s = 3\n", "providers.p.timout_s", "unknown key", id="typo"),
    pytest.param(
        PROVIDER + "timeout_s = -1\n", "providers.p.timeout_s", "must be > 0", id="negative-timeout"
    ),
    pytest.param(
        PROVIDER + 'timeout_s = "3"\n',
        "providers.p.timeout_s",
        "must be a number",
        id="string-timeout",
    ),
    pytest.param(
        PROVIDER + "timeout_s = inf\n",
        "providers.p.timeout_s",
        "must be > 0",
        id="infinite-timeout",
    ),
    pytest.param(
        PROVIDER + "max_concurrency = true\n",
        "providers.p.max_concurrency",
        "must be an integer",
        id="bool-limit",
    ),
    pytest.param(
        PROVIDER + "max_concurrency = 0\n",
        "providers.p.max_concurrency",
        "must be >= 1",
        id="zero-limit",
    ),
    pytest.param(
        PROVIDER + "retry = { base_s = 2, cap_s = 1 }\n",
        "providers.p.retry.cap_s",
        "must be >= base_s",
        id="cap-below-base",
    ),
    pytest.param(
        PROVIDER + "retry = { tries = 2 }\n",
        "providers.p.retry.tries",
        "unknown key",
        id="retry-typo",
    ),
    pytest.param(
        PROVIDER + "breaker = 5\n", "providers.p.breaker", "must be a table", id="breaker-not-table"
    ),
    pytest.param(
        PROVIDER + '[[models]]\nprovider = "p"\n',
        "models[0].name",
        "is required",
        id="model-without-name",
    ),
    pytest.param(
        PROVIDER + '[[models]]\nname = "m"\nprovider = "q"\n',
        "models[0].provider",
        "unknown provider 'q' (known: p)",
        id="unknown-provider",
    ),
    pytest.param(
        PROVIDER + '[[models]]\nname = "m"\nprovider = "p"\n[[models]]\nname = "m"\n'
        'version = "*"\nprovider = "p"\n',
        "models[1]",
        "duplicate route for 'm' (any version)",
        id="duplicate-route",
    ),
    pytest.param(
        PROVIDER + '[[models]]\nname = "m"\nprovider = "p"\n'
        'price = { input_per_mtok = "cheap", output_per_mtok = "1" }\n',
        "models[0].price.input_per_mtok",
        "must be a decimal amount, got 'cheap'",
        id="bad-price",
    ),
    pytest.param(
        PROVIDER + '[[models]]\nname = "m"\nprovider = "p"\nprice = { input_per_mtok = "1" }\n',
        "models[0].price.output_per_mtok",
        "is required",
        id="half-a-price",
    ),
    pytest.param(
        PROVIDER + '[[models]]\nname = "m"\nprovider = "p"\n'
        'price = { input_per_mtok = "1", output_per_mtok = "-2" }\n',
        "models[0].price.output_per_mtok",
        "must be a finite amount >= 0",
        id="negative-price",
    ),
    pytest.param(
        PROVIDER + '[[models]]\nname = "m"\nprovider = "p"\nentry_point = "a:b"\n',
        "models[0].entry_point",
        "only for python providers",
        id="entry-point-on-http",
    ),
    pytest.param(
        '[providers.r]\nkind = "python"\n[[models]]\nname = "m"\nprovider = "r"\n',
        "models[0].entry_point",
        "is required for a python provider",
        id="python-without-entry-point",
    ),
    pytest.param(
        '[providers.r]\nkind = "python"\n[[models]]\nname = "m"\nprovider = "r"\n'
        'entry_point = "just_a_module"\n',
        "models[0].entry_point",
        "must look like 'package.module:function'",
        id="entry-point-shape",
    ),
    pytest.param(
        PROVIDER + '[[models]]\nname = ""\nprovider = "p"\n',
        "models[0].name",
        "must not be empty",
        id="empty-name",
    ),
    pytest.param(
        PROVIDER + "models = 3\n", "providers.p.models", "unknown key", id="models-inside-provider"
    ),
    pytest.param(
        "models = 3\n" + PROVIDER, "models", "must be an array of tables", id="models-not-array"
    ),
]


@pytest.mark.parametrize(("text", "key", "problem"), BAD)
def test_a_bad_registry_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, key: str | None, problem: str
) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(text)
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    error = caught.value
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert error.key == key
    if key is not None:
        assert message.startswith(f"{path}: {key}: ")
    assert problem in message


def test_a_toml_syntax_error_gives_the_line() -> None:
    with pytest.raises(RegistryError, match=r"^r\.toml: invalid TOML: .*line 3"):
        parse_registry('[providers.p]\nkind = "openai"\nbase_url = \n', source="r.toml")


def test_an_unreadable_file_is_a_registry_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(RegistryError, match=r"nope\.toml: cannot read: No such file"):
        load_registry(missing)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RegistryError, match="not UTF-8"):
        load_registry(binary)


def test_a_quoted_provider_name_is_quoted_in_the_key() -> None:
    text = '[providers."eu.west"]\nkind = "openai"\nbase_url = "ftp://x"\n'
    with pytest.raises(RegistryError) as caught:
        parse_registry(text, source="r.toml")
    assert caught.value.key == 'providers."eu.west".base_url'
