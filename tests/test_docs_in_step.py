"""The docs that describe the code stay in step with it: the README's command table with the
`prov` command tree, docs/configuration.md with the settings and the `PROV_*` variables the
code reads, and the packaging metadata (LICENSE, py.typed) with pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import msgspec
import pytest

from service.cli.main import cli
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
PACKAGES = ["ledger", "ingest", "query", "replay", "service", "httpapi"]


def commands(
    group: click.Group = cli, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every visible command and group below `group`, with its path of names."""
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None or command.hidden:
            continue
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def runnable() -> dict[str, click.Command]:
    """What a user can run: every command, and every group that runs without a subcommand
    (`prov export`), by its name after `prov`."""
    return {
        " ".join(path): command
        for path, command in commands()
        if not isinstance(command, click.Group) or command.invoke_without_command
    }


def opens_ledger(command: click.Command) -> bool:
    return any(param.name == "db_url" for param in command.params)


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def readme_commands() -> set[str]:
    """The commands the README's table names: `prov keys add/list/revoke …` names three."""
    named: set[str] = set()
    for line in section(README.read_text(), "## The `prov` command").splitlines():
        if not line.startswith("| `prov "):
            continue
        first_cell = line.split(" | ")[0]
        for span in re.findall(r"`(prov [^`]*)`", first_cell):
            words: list[str] = []
            for word in span.split()[1:]:
                # Arguments, options and placeholders end the command's name.
                if not re.fullmatch(r"[a-z][a-z0-9/-]*", word):
                    break
                words.append(word)
            *parents, last = words
            named.update(" ".join([*parents, choice]) for choice in last.split("/"))
    return named


def test_every_command_has_help_text() -> None:
    missing = [
        " ".join(path)
        for path, command in commands()
        if not (command.help or command.short_help or "").strip()
    ]
    assert missing == [], f"commands without help text: {missing}"


def test_the_readme_table_names_every_command_and_only_those() -> None:
    documented, actual = readme_commands(), set(runnable())
    assert actual - documented == set(), "commands missing from the README's table"
    assert documented - actual == set(), "the README's table names commands that do not exist"


def test_the_readme_names_the_commands_that_take_no_ledger_options() -> None:
    text = section(README.read_text(), "## The `prov` command")
    sentence = re.search(r"do not take them after the name: (.*?)\.\s", text, re.DOTALL)
    assert sentence is not None, "the README no longer says which commands ignore --db"
    named = set(re.findall(r"`prov ([^`]+)`", sentence[1]))
    without = {name for name, command in runnable().items() if not opens_ledger(command)}
    assert named == without


def test_ledger_options_are_accepted_before_every_subcommand() -> None:
    names = {param.name for param in cli.params}
    assert {"db_url", "key_file"} <= names


# --- docs/configuration.md ------------------------------------------------------------------


def documented_variables(text: str, *, test_only: bool) -> dict[str, str]:
    """`PROV_*` name -> its default cell, from the tables before (or, with `test_only`,
    after) the "Test-only:" line."""
    before, _, after = text.partition("\nTest-only:")
    rows = re.findall(
        r"^\| `(PROV_[A-Z0-9_]+)` \| ([^|]*) \|", after if test_only else before, re.M
    )
    return {name: default.strip() for name, default in rows}


def variables_read(directories: list[Path]) -> set[str]:
    """Every `PROV_*` variable a module reads by name from the environment."""
    pattern = re.compile(
        r"""(?:environ\.get\(|environ\[|getenv\(|envvar=|_ENV\s*=\s*)\s*["'](PROV_[A-Z0-9_]+)["']"""
    )
    found: set[str] = set()
    for directory in directories:
        for path in directory.rglob("*.py"):
            found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def cli_variables() -> dict[str, set[str]]:
    """`PROV_*` variable -> the commands with an option that reads it."""
    found: dict[str, set[str]] = {}
    for name, command in runnable().items():
        for param in command.params:
            envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
            for envvar in envvars:
                if isinstance(envvar, str) and envvar.startswith("PROV_"):
                    found.setdefault(envvar, set()).add(name)
    return found


def setting_variables() -> set[str]:
    return {f"PROV_{name.upper()}" for name in Settings.__struct_fields__}


def test_configuration_documents_every_setting_and_variable() -> None:
    documented = set(documented_variables(CONFIGURATION.read_text(), test_only=False))
    read = variables_read([ROOT / package for package in PACKAGES]) | set(cli_variables())
    expected = setting_variables() | read
    assert expected - documented == set(), "settings or variables missing from the docs"
    assert documented - expected == set(), "the docs name settings that do not exist"


def test_configuration_documents_every_test_variable() -> None:
    documented = set(documented_variables(CONFIGURATION.read_text(), test_only=True))
    assert variables_read([ROOT / "tests"]) <= documented


def test_configuration_defaults_are_the_code_defaults() -> None:
    documented = documented_variables(CONFIGURATION.read_text(), test_only=False)
    defaults = msgspec.structs.asdict(Settings())
    for field, default in defaults.items():
        cell = documented[f"PROV_{field.upper()}"]
        if default is None:
            # Unset, or what unset means (e.g. a file next to another one).
            assert cell == "unset" or "next to" in cell, (field, cell)
            continue
        shown = re.match(r"`([^`]*)`", cell)
        assert shown is not None, (field, cell)
        expected = str(default).lower() if isinstance(default, bool) else str(default)
        assert shown[1] == expected, f"PROV_{field.upper()}: docs say {shown[1]}, code {default}"


def test_configuration_names_the_commands_that_read_cli_variables() -> None:
    """A row for a variable only options read names each command with such an option."""
    text = CONFIGURATION.read_text()
    for variable, readers in cli_variables().items():
        if variable in setting_variables():
            continue
        row = re.search(rf"^\| `{variable}` \|.*$", text, re.M)
        assert row is not None, variable
        for command in readers:
            assert f"`prov {command}" in row[0], f"{variable}: `prov {command}` is not named"


# --- packaging ------------------------------------------------------------------------------

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# What an SPDX id's license text says of itself, near its top.
LICENSE_TITLES = {
    "Apache-2.0": ("Apache License", "Version 2.0, January 2004"),
    "MIT": ("MIT License",),
}


def declared_license() -> str:
    license_ = PYPROJECT["project"]["license"]
    return license_ if isinstance(license_, str) else license_["text"]


def license_files() -> list[str]:
    project, setuptools = PYPROJECT["project"], PYPROJECT["tool"]["setuptools"]
    files = project.get("license-files") or setuptools.get("license-files") or []
    assert isinstance(files, list)
    return files


def test_license_file_matches_the_declared_license() -> None:
    assert "LICENSE" in license_files(), "pyproject.toml does not name LICENSE"
    head = " ".join((ROOT / "LICENSE").read_text().split()[:40])
    declared = declared_license()
    assert declared in LICENSE_TITLES, f"no known text for {declared}"
    for phrase in LICENSE_TITLES[declared]:
        assert phrase in head, f"LICENSE is not the {declared} text"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_marked_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data.get(package, []) or "py.typed" in package_data.get("*", [])


def test_configuration_names_exactly_what_public_reads_opens() -> None:
    # test_http_auth checks these operations against a running server.
    from tests.test_http_auth import PUBLIC_READS  # noqa: PLC0415 - only this test needs it

    row = re.search(r"^\| `PROV_PUBLIC_READS` \|.*$", CONFIGURATION.read_text(), re.M)
    assert row is not None
    documented = set(re.findall(r"`GET (/[^`]*)`", row[0]))
    opened = {op.path.replace("{path}", "…") for op in PUBLIC_READS if op.method == "GET"}
    assert documented == opened
