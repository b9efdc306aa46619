"""The witness's HTTP app: C2SP tlog-witness's submission and monitoring paths, one prefix.

- `POST /add-checkpoint`: the body is `old <size>`, the consistency proof, a blank line
  and the signed checkpoint (at most `MAX_REQUEST_BYTES`). 200 answers the cosignature
  line(s) as text/plain; 409 answers the witness's size for the log and a newline as
  `text/x.tlog.size`, as the spec requires; every other refusal is an RFC 9457 problem
  document with the spec's status (400, 403, 404, 422; 413 for a body over the cap).
- `GET /<lowercase hex SHA-256 of the origin>/checkpoint`: the latest checkpoint the witness
  cosigned for that log, with the log's signatures it verified and its own; 404 if none.
- `GET /healthz`: 200 while the process serves requests.

No request needs a key: the checkpoint's signature is the only authentication the protocol
has, and the witness checks it. The work is `ledger.witness.witness.Witness`; a blocking
call (Ed25519, an fsynced SQLite commit) runs on a worker thread.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import anyio.to_thread
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException

from httpapi.problems import PROBLEM_MEDIA_TYPE, TYPE_PREFIX, Problem, problem_for
from ledger.errors import ProvError, WitnessInconsistent, WitnessSizeConflict
from ledger.witness.protocol import ADD_CHECKPOINT_PATH, MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE
from ledger.witness.witness import Witness

_log = logging.getLogger("prov.witness")
_STATE = "witness"
_ORIGIN_HASH = re.compile(r"[0-9a-f]{64}")
# The framework would add `; charset=utf-8` to a text/* media type; the spec names the 409's
# Content-Type exactly, so the header is set as is.
_SIZE_HEADERS = {"content-type": SIZE_CONTENT_TYPE}
_TEXT = "text/plain"


def _witness(request: Request[Any, Any, Any]) -> Witness:
    witness: Witness = request.app.state[_STATE]
    return witness


def _problem(request: Request[Any, Any, Any], problem: Problem) -> Response[Problem]:
    problem.instance = request.url.path
    return Response(problem, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE)


@post(ADD_CHECKPOINT_PATH, status_code=200)
async def add_checkpoint(request: Request[Any, Any, Any]) -> Response[Any]:
    """Cosign the checkpoint if it extends the latest one cosigned for its log."""
    body = await request.body()
    witness = _witness(request)
    try:
        lines = await anyio.to_thread.run_sync(witness.add_checkpoint, body, int(time.time()))
    except WitnessSizeConflict as conflict:
        return Response(f"{conflict.size}\n", status_code=409, headers=_SIZE_HEADERS)
    except ProvError as refusal:
        if isinstance(refusal, WitnessInconsistent) or refusal.detail.startswith("rollback"):
            # Possibly a log that forked or went back: the operator should hear of it.
            _log.warning("refused and kept as evidence: %s", refusal.detail)
        raise
    return Response(lines, media_type=_TEXT)


@get("/{origin_hash:str}/checkpoint")
async def checkpoint(request: Request[Any, Any, Any], origin_hash: str) -> Response[Any]:
    """The latest checkpoint cosigned for the origin with this SHA-256, cosignature included."""
    witness = _witness(request)
    note = None
    if _ORIGIN_HASH.fullmatch(origin_hash):
        note = await anyio.to_thread.run_sync(witness.checkpoint, origin_hash)
    if note is None:
        return _problem(
            request,
            Problem(
                type=TYPE_PREFIX + "not-found",
                title="Not found",
                status=404,
                detail="this witness has cosigned no checkpoint of a log with that origin hash",
            ),
        )
    return Response(note, media_type=_TEXT)


@get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves requests."""
    return {"status": "ok"}


def _prov_error(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    assert isinstance(error, ProvError)
    return _problem(request, problem_for(error))


_KIND_BY_STATUS = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}


def _http_error(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    assert isinstance(error, HTTPException)
    kind = _KIND_BY_STATUS.get(error.status_code, "bad-request")
    detail = error.detail
    if error.status_code == 413:
        detail = f"an add-checkpoint request is at most {MAX_REQUEST_BYTES} bytes"
    problem = Problem(
        type=TYPE_PREFIX + kind,
        title=kind.replace("-", " ").capitalize(),
        status=error.status_code,
        detail=detail,
    )
    return _problem(request, problem)


def _internal_error(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    _log.error("unhandled error on %s", request.url.path, exc_info=error)
    problem = Problem(
        type=TYPE_PREFIX + "internal-error",
        title="Internal error",
        status=500,
        detail="the witness failed to answer; retrying is safe",
    )
    return _problem(request, problem)


def witness_app(witness: Witness) -> Litestar:
    """The app serving `witness`."""
    return Litestar(
        route_handlers=[add_checkpoint, checkpoint, healthz],
        state=State({_STATE: witness}),
        exception_handlers={
            ProvError: _prov_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        request_max_body_size=MAX_REQUEST_BYTES,
        openapi_config=None,
        logging_config=None,  # the command configures logging (`service.cli.witness`)
    )
