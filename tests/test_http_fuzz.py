"""Generated requests against the live service, from its own OpenAPI document: valid and
invalid inputs for every operation, with an admin and an ingest key. No request may cause a
server error, and every client error is an RFC 9457 problem document."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from httpapi.problems import PROBLEM_MEDIA_TYPE
from tests.http_helpers import app_openapi_document, check_problem_document, operations
from tests.http_server import Server

EXAMPLES_PER_OPERATION = 25

pytestmark = [
    pytest.mark.slow,
]


def fault(response: Any) -> str | None:
    """What is wrong with one answer, or None."""
    status = response.status_code
    if status >= 500:
        return "server error"
    if status < 400:
        return None
    media = response.headers.get("content-type", [""])
    media = media[0] if isinstance(media, list) else media
    if not media.startswith(PROBLEM_MEDIA_TYPE):
        return f"client error as {media!r}, not problem+json"
    if response.request.method == "HEAD":  # a GET's headers without its body (RFC 9110)
        return None
    try:
        check_problem_document(response.json(), status)
    except (AssertionError, ValueError) as error:
        return f"not a problem document: {error}"
    return None


def test_generated_requests_get_no_server_error_and_problem_documents(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for page in ("/schema", "/schema/openapi.json", "/schema/openapi.yaml"):
            answer = client.get(page)
            assert answer.status_code == 200, (page, answer.text[:300])
        served = client.get("/schema/openapi.json").json()
    assert operations(served) == operations(app_openapi_document())

    schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
    keys = {"admin": server.admin_key, "ingest": server.api_key("ingest")}
    faults: dict[tuple[str, str, int, str], str] = {}
    exercised = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in GenerationMode))

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases, role=st.sampled_from(sorted(keys)))
        def exercise(case: schemathesis.Case, role: str) -> None:
            nonlocal exercised
            response = case.call(
                base_url=server.url, headers={"Authorization": f"Bearer {keys[role]}"}
            )
            exercised += 1
            problem = fault(response)
            if problem is not None:
                key = (case.method.upper(), case.path, response.status_code, problem)
                faults.setdefault(
                    key, f"{role} key: {case.as_curl_command()}\n -> {response.text[:300]}"
                )

        exercise()

    assert exercised >= EXAMPLES_PER_OPERATION * len(operations(served)) // 2
    assert not faults, "\n\n".join(f"{key}:\n{example}" for key, example in faults.items())
