"""The explanation page under `/ui`: one decision explained in plain language for the person
it is about (`/ui/decisions/{id}/explanation`, printable), and the same text as a download
(`/ui/decisions/{id}/explanation.txt`) to send them.

Signed in to and scoped like the other pages (`query.ui.pages`): the session's key names the
tenant, and another tenant's decision is a 404 page. What the page says is
`query.subjects.explain`'s, so it is word for word what `prov subject explain` prints and
what a subject bundle carries.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.response import Template

from ledger.keys.apikeys import ApiKey
from ledger.ledger import Ledger
from query.services import read_services
from query.subjects.bundle import decision_explanation
from query.subjects.explain import Explanation, explanation_text


def _explanation(
    request: Request[Any, Any, State], ledger: Ledger, tenant: str, record_id: str
) -> Explanation:
    contest = read_services(request.app.state).contest_contact
    with ledger.engine.connect() as connection:
        return decision_explanation(connection, tenant, record_id, contest)


@get("/decisions/{record_id:str}/explanation", sync_to_thread=True)
def explanation_page(
    record_id: str, request: Request[Any, Any, State], caller: ApiKey, ledger: Ledger
) -> Template:
    explanation = _explanation(request, ledger, caller.tenant, record_id)
    # The same context `query.ui.pages.page` gives every page (it imports this module).
    return Template(
        "explanation.html",
        context={
            "caller": caller,
            "section": "search",
            "record_id": record_id,
            "explanation": explanation,
        },
    )


@get("/decisions/{record_id:str}/explanation.txt", sync_to_thread=True)
def explanation_file(
    record_id: str, request: Request[Any, Any, State], caller: ApiKey, ledger: Ledger
) -> Response[str]:
    """The explanation as plain text, to send to the person it is about."""
    explanation = _explanation(request, ledger, caller.tenant, record_id)
    return Response(
        explanation_text(explanation),
        media_type=MediaType.TEXT,
        headers={"Content-Disposition": 'attachment; filename="explanation.txt"'},
    )


PAGES = (explanation_page, explanation_file)
