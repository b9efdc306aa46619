"""One way to fail: every purposeful exception derives from `ProvError`, with its own stable
kind, and maps to a problem document (`httpapi.problems`) and a CLI line
(`service.cli.common.failure_for`) from one place each."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

from httpapi.errors import Overloaded, Unauthenticated
from httpapi.problems import STATUS_BY_KIND, problem_for
from ingest.client.errors import ClientError, ProblemError, ReceiptInvalid
from ledger.errors import LedgerError, NotFound, ProofError, ProvError
from query.export.manifest import ManifestError
from query.export.verify import ExportFault
from replay.providers.errors import ProviderError, ProviderTimeout, RateLimited, RegistryError
from service.cli.common import Failed, failure_for
from tests.support import prov

PACKAGES = ("ledger", "ingest", "query", "replay", "service", "httpapi")
# Not errors but the CLI's presentation of one (click's exceptions, printed as one line).
PRESENTATION = {Failed}
# Relays the server's problem kind rather than having one of its own.
RELAYS_A_KIND = {ProblemError}


def project_exceptions() -> list[type[BaseException]]:
    """Every exception class the packages define, each module imported once."""
    found: list[type[BaseException]] = []
    for top in PACKAGES:
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(package.__path__, top + "."):
            module = importlib.import_module(info.name)
            found += [
                value
                for value in vars(module).values()
                if inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ]
    return list(dict.fromkeys(found))  # an alias (`LedgerError`) names a class twice


def purposeful_errors() -> list[type[ProvError]]:
    """The root and its subclasses in the packages (private control-flow ones aside)."""
    return [
        cls
        for cls in project_exceptions()
        if issubclass(cls, ProvError) and not cls.__name__.startswith("_")
    ]


def test_every_purposeful_exception_derives_from_the_root() -> None:
    strays = [
        f"{cls.__module__}.{cls.__name__}"
        for cls in project_exceptions()
        if not cls.__name__.startswith("_")  # private control flow never leaves its module
        and not issubclass(cls, ProvError)
        and not any(issubclass(cls, allowed) for allowed in PRESENTATION)
    ]
    assert not strays, f"exceptions outside the ProvError hierarchy: {strays}"
    assert LedgerError is ProvError  # the root's older name still catches everything
    for former_root in (ProviderError, ClientError, ExportFault, ManifestError, RegistryError):
        assert issubclass(former_root, ProvError)


def test_every_error_has_its_own_stable_kind_and_title() -> None:
    errors = purposeful_errors()
    assert len(errors) > 60  # the walk found the whole hierarchy, not a part of it
    owners: dict[str, str] = {}
    for cls in errors:
        name = f"{cls.__module__}.{cls.__name__}"
        if cls in RELAYS_A_KIND:
            assert isinstance(vars(cls).get("kind"), property), name
            continue
        kind, title = vars(cls).get("kind"), vars(cls).get("title")
        assert isinstance(kind, str), f"{name} inherits its kind; give it its own"
        assert isinstance(title, str), f"{name} has no title of its own"
        assert title, name
        assert kind not in owners, f"{name} reuses {owners.get(kind)}'s kind {kind!r}"
        owners[kind] = name
        assert kind == kind.lower(), kind
        assert " " not in kind, kind
    assert set(owners) <= set(STATUS_BY_KIND), set(owners) - set(STATUS_BY_KIND)


def test_http_errors_live_outside_the_core() -> None:
    import ledger.errors as core  # noqa: PLC0415 - the module itself is under test

    for name in ("Unauthenticated", "Forbidden", "Overloaded", "TooManyConnections"):
        assert not hasattr(core, name), name
    assert issubclass(Unauthenticated, ProvError)
    # Pure Python, so the SDK imports it without the server's dependencies.
    tree = ast.parse(Path(core.__file__).read_text())
    imported = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [getattr(n, "module", None) for n in imported] == ["__future__"]


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (
            ProviderTimeout("vllm", "no complete answer within 0.4s"),
            504,
            "provider-timeout: vllm: no complete answer within 0.4s",
        ),
        (
            RateLimited("openai", "slow down\n  please", retry_after=3),
            503,
            "provider-rate-limited: openai: slow down please",
        ),
        (
            ReceiptInvalid("the receipt does not cover the bytes sent"),
            502,
            "receipt-invalid: the receipt does not cover the bytes sent",
        ),
        (
            ExportFault("data/decisions/x.parquet: no manifest lists this file"),
            422,
            "export-invalid: data/decisions/x.parquet: no manifest lists this file",
        ),
        (
            ManifestError("manifest 3 names 2 as previous"),
            422,
            "bad-manifest: manifest 3 names 2 as previous",
        ),
        (NotFound("no record 7", pointer="/id"), 404, "not-found: no record 7 (at /id)"),
        (Overloaded("queue full", retry_after=1), 429, "overloaded: queue full"),
    ],
    ids=["provider", "rate-limited", "client", "export", "manifest", "core", "http"],
)
def test_each_former_root_maps_to_a_problem_and_a_cli_line(
    error: ProvError, status: int, line: str
) -> None:
    problem = problem_for(error)
    assert (problem.status, problem.type) == (status, f"urn:prov:problem:{error.kind}")
    assert problem.title == error.title
    failed = failure_for(error)
    assert (failed.message, failed.exit_code) == (line, 1)


def test_a_bad_registry_is_a_usage_failure() -> None:
    failed = failure_for(RegistryError("models.toml", "providers.p", "must be a table"))
    assert failed.message == "bad-registry: models.toml: providers.p: must be a table"
    assert failed.exit_code == 2
    assert problem_for(RegistryError("m.toml", None, "invalid TOML")).status == 503


def test_a_servers_problem_keeps_its_kind_and_is_named_once() -> None:
    error = ProblemError(
        status=422,
        title="Invalid record payload",
        type="urn:prov:problem:invalid-payload",
        detail="Expected `str`",
    )
    assert error.kind == "invalid-payload"
    assert isinstance(error, ProvError)
    failed = failure_for(error)
    assert failed.message == "422 Invalid record payload: Expected `str` [invalid-payload]"
    assert failed.exit_code == 1


def test_the_cli_prints_an_uncaught_error_as_one_line(db_url: str, key_path: Path) -> None:
    assert prov(["init"], db=db_url, key=key_path).code == 0
    done = prov(["proof", "inclusion", "7"], db=db_url, key=key_path)
    assert (done.code, done.out) == (1, "")
    [line] = done.err.splitlines()
    assert line.startswith(f"prov: {ProofError.kind}: "), line
