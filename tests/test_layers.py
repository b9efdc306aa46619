"""The layers of docs/architecture.md hold, and a tool that checks them fails when they break.

`service` sits above `ingest`, `query` and `replay`, which never import each other, above
`httpapi`, above `ledger`; `ledger` imports no web framework, template engine or
analytics library. The contracts live in pyproject.toml and `lint-imports` checks them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
PACKAGES = ("ledger", "ingest", "query", "replay", "service", "httpapi", "migrations")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and the contracts, so that a test may break one."""
    copy = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_contracts_hold(tree: Path) -> None:
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    assert result.stdout.count("KEPT") >= 2, result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("ledger/_probe.py", "import litestar"),  # the core reaching for a web framework
        ("ledger/_probe.py", "import query.audit.why"),  # the core importing a layer above
        ("query/_probe.py", "import ingest.commit.groupcommit"),  # read path into write path
        ("replay/_probe.py", "import query.audit.search"),  # replay into the read path
        ("httpapi/_probe.py", "import service.settings"),  # the shared layer reaching up
    ],
)
def test_breaking_a_contract_fails_the_check(tree: Path, module: str, line: str) -> None:
    probe = tree / module
    probe.write_text(f'"""A forbidden import, written by the layering test."""\n\n{line}\n')
    try:
        result = _lint_imports(tree)
    finally:
        probe.unlink()
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert module.replace("/", ".").removesuffix(".py") in result.stdout


def test_migrations_import_nothing_of_the_code_they_migrate() -> None:
    """A migration must keep working after the code it once called changes: what it needs
    is frozen inside the migrations package (`migrations._backfill`)."""
    versions = sorted((ROOT / "migrations" / "versions").glob("*.py"))
    assert versions, "no migrations found"
    for path in [*versions, ROOT / "migrations" / "_backfill.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] not in set(PACKAGES) - {"migrations"}, (path, name)
