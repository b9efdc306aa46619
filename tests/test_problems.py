"""Every error kind has an HTTP status and a line in docs/problems.md."""

from __future__ import annotations

from pathlib import Path

import ledger.errors
from httpapi.errors import Overloaded
from httpapi.problems import STATUS_BY_KIND, problem_for
from ledger.errors import InvalidPayload, ProvError
from replay.providers.errors import ProviderTimeout
from service.web.ops import NotReady
from tests.test_errors import purposeful_errors

DOC = Path(__file__).parents[1] / "docs" / "problems.md"


def _kinds() -> set[str]:
    """The kind of every subclass of the root in the packages (every module imported)."""
    own = (vars(cls).get("kind") for cls in purposeful_errors())
    return {kind for kind in own if isinstance(kind, str)}


def test_every_error_kind_has_a_status_and_is_documented() -> None:
    kinds = _kinds()
    assert ProvError.kind in kinds
    assert NotReady.kind in kinds  # errors defined outside ledger.errors are found too
    assert ProviderTimeout.kind in kinds  # and those of the former roots
    assert kinds <= set(STATUS_BY_KIND), kinds - set(STATUS_BY_KIND)
    documented = DOC.read_text()
    missing = [
        kind
        for kind in STATUS_BY_KIND
        if f"| `{kind}` | {STATUS_BY_KIND[kind]} |" not in documented
    ]
    assert not missing, f"docs/problems.md lacks {missing}"


def test_payload_pointers_are_relative_to_the_envelope() -> None:
    problem = problem_for(InvalidPayload("Expected `str`", pointer="/model/name"))
    assert (problem.status, problem.errors[0].pointer) == (422, "/payload/model/name")
    assert problem.type == "urn:prov:problem:invalid-payload"
    assert problem_for(Overloaded("full", retry_after=1)).status == 429
    assert ledger.errors.TenantMismatch.kind in STATUS_BY_KIND
