"""One decision as a block of code: the calls made inside it become one signed record.

``with client.decision("loan.approve", inputs=...) as d:`` opens a decision; a context
variable holds it while the block runs, so every call of an instrumented model client
(`instrument_openai`, `instrument_anthropic`) made inside it, in this thread or in tasks
and threads started with its context, is recorded into it. Calls made outside any decision
pass through unrecorded. The block adds what the model calls do not show: the tools the
service ran (`OpenDecision.tool`), retrievals, the context it read, exposures, and the
decision itself when the model's text does not state it (`OpenDecision.output`).

When the block ends, the observed calls are assembled by the replay convention
(`ingest.calls.assemble_decision`), the `Decision` is built, signed with the client's
service key and appended with the client's own `append`, so its receipt is verified; the
result is `d.result`. A block that raises is recorded too, as a failed decision (the error
in ``attributes["prov.error"]``), and the error propagates; `record_errors=False` records
nothing then. Interruptions (`KeyboardInterrupt`, task cancellation: any BaseException that
is not an Exception) record nothing.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, Protocol, TypedDict, TypeVar

import msgspec

from ingest.calls import (
    CalledTool,
    ModelCall,
    RetrievalRun,
    ToolRun,
    assemble_decision,
)
from ingest.client._results import AppendResult
from ingest.client.builder import digest_of, new_decision, new_id, utc_now
from ledger.errors import MonitorBreached
from ledger.records.decision import (
    NOT_REPLAYABLE_ATTRIBUTE,
    ContextSnapshot,
    Decision,
    DecisionType,
    DelegationLink,
    Exposure,
    Freshness,
    Id,
    Label,
    Links,
    Output,
    PolicyEvaluation,
    RetrievedDocument,
)

# The attribute a failed decision's error is recorded under.
ERROR_ATTRIBUTE = "prov.error"

_current: ContextVar[OpenDecision | None] = ContextVar("prov_open_decision", default=None)
# Tool results as replay feeds them back to a model (`replay.engine.requests.tool_turn`).
_compact = msgspec.json.Encoder()


def current_decision() -> OpenDecision | None:
    """The decision open in this context, if any: where instrumented calls are recorded."""
    return _current.get()


class Unfinished(Protocol):
    """A streamed answer still being read; recorded as it stands if the decision ends first."""

    def abandon(self) -> None: ...


class DecisionOptions(TypedDict, total=False):
    """Members of the decision a block may set up front; see `ledger.records.decision`."""

    policy: PolicyEvaluation | None
    delegation: list[DelegationLink]
    freshness: Freshness | None
    links: Links | None
    attributes: dict[str, Any]


class DecisionArguments(DecisionOptions, total=False):
    """The keyword arguments of `Client.decision` and `AsyncClient.decision` after `inputs`.

    `subject` (default None), `id` (default a new one), `template_id` (default the decision
    type) and `record_errors` (default True) are `OpenDecision`'s; `raise_on_flag` (default
    the client's) is the append's; the rest are `DecisionOptions`.
    """

    subject: str | None
    id: str | None
    template_id: str | None
    record_errors: bool
    raise_on_flag: bool | None


def _checked(value: Any, kind: Any, what: str) -> Any:
    try:
        return msgspec.convert(value, type=kind)
    except msgspec.ValidationError as error:
        raise ValueError(f"{what} {value!r}: {error}") from None


def _amount(value: Decimal | int | str) -> Decimal:
    # Money is never a float (the schema's rule): 0.1 + 0.2 would be recorded as it adds up.
    if isinstance(value, float | bool):
        raise TypeError(f"an exposure amount is a Decimal, int or str, not {type(value).__name__}")
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError):
        raise ValueError(f"exposure amount {value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"exposure amount {value!r} is not finite")
    return amount


def _outcome(
    error: BaseException | str | None, started_at: datetime | None, ended_at: datetime | None
) -> dict[str, Any]:
    """How a step the block reports went: its error's type and message, and its times (it
    ended now and started when it ended, unless the block says otherwise)."""
    if error is None:
        error_type, error_message = None, None
    elif isinstance(error, str):
        error_type, error_message = "error", error
    else:
        error_type, error_message = type(error).__name__, str(error)
    ended = ended_at or utc_now()
    return {
        "error_type": error_type,
        "error_message": error_message,
        "started_at": started_at or ended,
        "ended_at": ended,
    }


class _ToolUse(msgspec.Struct, frozen=True, kw_only=True):
    """A tool run as the block reported it; its arguments may come from the model's call."""

    name: str
    call_id: str | None
    arguments: dict[str, Any] | None
    result: Any
    error_type: str | None
    error_message: str | None
    started_at: datetime
    ended_at: datetime


class OpenDecision:
    """A decision being made: what a ``with client.decision(...) as d:`` block records.

    Safe to use from several threads or tasks that share the block's context.
    """

    def __init__(
        self,
        decision_type: str,
        *,
        inputs: dict[str, Any],
        subject: str | None = None,
        id: str | None = None,
        template_id: str | None = None,
        record_errors: bool = True,
        **options: Any,
    ) -> None:
        if not isinstance(inputs, dict):
            raise TypeError(f"inputs must be a dict, not {type(inputs).__name__}")
        unknown = set(options) - set(DecisionOptions.__annotations__)
        if unknown:
            known = ", ".join(sorted(DecisionOptions.__annotations__))
            raise TypeError(f"unknown decision option {sorted(unknown)[0]!r} (known: {known})")
        self.decision_type: str = _checked(decision_type, DecisionType, "decision type")
        self.id: str = _checked(id, Id, "decision id") if id is not None else new_id()
        self.subject: str | None = (
            _checked(subject, Label, "subject") if subject is not None else None
        )
        self.inputs = inputs
        self.template_id = _checked(template_id or decision_type, Label, "template id")
        self.record_errors = record_errors
        self._options: dict[str, Any] = dict(options)
        self._lock = threading.Lock()
        self._calls: list[ModelCall] = []
        self._tools: list[_ToolUse] = []
        self._retrievals: list[RetrievalRun] = []
        self._documents: list[RetrievedDocument] = []
        self._context: list[ContextSnapshot] = []
        self._exposures: list[Exposure] = []
        self._amendments: list[Callable[[Decision], Decision]] = []
        self._unfinished: set[Unfinished] = set()
        self._output: tuple[dict[str, Any], str | None] | None = None
        self._token: Token[OpenDecision | None] | None = None
        self._parent: OpenDecision | None = None
        self._state = "new"  # new -> open -> closed
        self.started_at: datetime = utc_now()
        self.decision: Decision | None = None  # the record, once the block has ended
        self._result: AppendResult | None = None

    # -- What the block records -------------------------------------------------------

    def tool(
        self,
        name: str,
        *,
        call_id: str | None = None,
        arguments: dict[str, Any] | None = None,
        result: Any = None,
        error: BaseException | str | None = None,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
    ) -> str:
        """Record a tool the service ran; `call_id` links it to the model's request for it
        (whose arguments are then recorded unless `arguments` is given).

        Returns the tool message content to send the model: the compact JSON of `result`
        (or ``{"error": {"type", "message"}}``), exactly what a replay feeds back, so that
        a pinned replay sends the model the conversation it saw.
        """
        _checked(name, Label, "tool name")
        if call_id is not None:
            _checked(call_id, Label, "tool call id")
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"tool arguments must be a dict, not {type(arguments).__name__}")
        use = _ToolUse(
            name=name,
            call_id=call_id,
            arguments=arguments,
            result=result,
            **_outcome(error, started_at, ended_at),
        )
        body = (
            {"error": {"type": use.error_type, "message": use.error_message}}
            if use.error_type is not None
            else result
        )
        content = _compact.encode(body).decode()  # also: the result must be JSON
        self._add(self._tools, use)
        return content

    def retrieval(
        self,
        source: str,
        *,
        query: Any = None,
        documents: Any = None,
        error: BaseException | str | None = None,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
    ) -> None:
        """Record a retrieval (a vector search, say) as a step: what was asked, what came
        back. `document` lists what was retrieved in the decision's `retrieval` member."""
        _checked(source, Label, "retrieval source")
        run = RetrievalRun(
            source=source,
            query=query,
            documents=documents,
            **_outcome(error, started_at, ended_at),
        )
        self._add(self._retrievals, run)

    def document(
        self, source: str, doc_id: str, version: str, score: float, content: str | bytes | Any
    ) -> None:
        """Record a retrieved document by its digest: of `content`'s UTF-8 bytes for text,
        of its bytes, or of its compact JSON for any other value."""
        data = content.encode() if isinstance(content, str) else content
        document = RetrievedDocument(
            source=_checked(source, Label, "document source"),
            doc_id=_checked(doc_id, Label, "document id"),
            version=_checked(version, Label, "document version"),
            score=float(score),
            digest=digest_of(data),
        )
        self._add(self._documents, document)

    def context(
        self,
        name: str,
        version: str,
        value: Any,
        *,
        valid_until: datetime | None = None,
        fetched_at: datetime | None = None,
    ) -> None:
        """Record state the decision saw (inline, with its digest): `name` at `version`."""
        for moment, what in ((valid_until, "valid_until"), (fetched_at, "fetched_at")):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"context {what} must be timezone-aware")
        snapshot = ContextSnapshot(
            name=_checked(name, Label, "context name"),
            version=_checked(version, Label, "context version"),
            digest=digest_of(value),
            fetched_at=fetched_at or utc_now(),
            valid_until=valid_until,
            value=value,
        )
        self._add(self._context, snapshot)

    def exposure(self, group: str, amount: Decimal | int | str, unit: str) -> None:
        """Record what the decision commits, `amount` of `unit` in `group` (monitors add up
        exposures across decisions)."""
        exposure = Exposure(
            group=_checked(group, Label, "exposure group"),
            amount=_amount(amount),
            unit=_checked(unit, Label, "exposure unit"),
        )
        self._add(self._exposures, exposure)

    def output(self, decision: dict[str, Any], text: str | None = None) -> None:
        """The decision as structured data, when the model's last answer does not state it
        as JSON (by default the decision is that JSON). `text` replaces the recorded final
        text (by default the last model answer). A replay compares the decision its final
        text states with this one: keep them consistent."""
        if not isinstance(decision, dict):
            raise TypeError(f"the output decision must be a dict, not {type(decision).__name__}")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"the output text must be a str, not {type(text).__name__}")
        with self._lock:
            self._check_not_closed()
            self._output = (decision, text)

    def amend(self, change: Callable[[Decision], Decision]) -> None:
        """Apply `change` to the built decision before it is signed, e.g. to attach a
        delegation chain: ``d.amend(lambda record: authorize(record, key, chain, args))``."""
        with self._lock:
            self._check_not_closed()
            self._amendments.append(change)

    @property
    def result(self) -> AppendResult:
        """The verified receipt of the appended decision (once the block has ended)."""
        if self._result is None:
            raise RuntimeError(
                f"decision {self.id} has no receipt: it is appended when its block ends"
                + (" (it was not recorded)" if self._state == "closed" else "")
            )
        return self._result

    # -- What instrumented clients record -----------------------------------------------

    def record_call(self, call: ModelCall) -> None:
        """Add a model call; one that ends after the block did cannot be added."""
        with self._lock:
            if self._state == "closed":
                warnings.warn(
                    f"a {call.provider} call ({call.request_model}) ended after decision "
                    f"{self.id} was recorded and is not part of it: read streams inside the "
                    "decision's block",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return
            self._calls.append(call)

    def track(self, stream: Unfinished) -> None:
        with self._lock:
            self._unfinished.add(stream)

    def untrack(self, stream: Unfinished) -> None:
        with self._lock:
            self._unfinished.discard(stream)

    # -- The record -----------------------------------------------------------------------

    def _add(self, members: list[Any], member: Any) -> None:
        with self._lock:
            self._check_not_closed()
            members.append(member)

    def _check_not_closed(self) -> None:
        if self._state == "closed":
            raise RuntimeError(f"decision {self.id} has ended; record inside its block")

    def _open(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"decision {self.id} was opened already; make a new one")
        self._state = "open"
        self._parent = _current.get()
        self._token = _current.set(self)
        self.started_at = utc_now()

    def _close(self) -> None:
        """Leave the block: no more calls are recorded into it; unread streams are
        recorded as they stand."""
        token, self._token = self._token, None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # left in another context than it was entered in
                _current.set(self._parent)
        with self._lock:
            unfinished = list(self._unfinished)
        for stream in unfinished:
            stream.abandon()
        with self._lock:
            self._state = "closed"

    def _tool_runs(self, calls: list[ModelCall]) -> list[ToolRun]:
        asked: dict[str, CalledTool] = {
            called.call_id: called for call in calls for called in call.tool_calls
        }
        runs = []
        for use in self._tools:
            arguments = use.arguments
            if arguments is None:
                # The arguments the model asked with: what a replay compares its calls with.
                called = asked.get(use.call_id) if use.call_id is not None else None
                arguments = dict(called.arguments) if called is not None else {}
            runs.append(
                ToolRun(
                    name=use.name,
                    call_id=use.call_id,
                    arguments=arguments,
                    result=use.result,
                    started_at=use.started_at,
                    ended_at=use.ended_at,
                    error_type=use.error_type,
                    error_message=use.error_message,
                )
            )
        return runs

    def build(self, tenant: str, service: str, error: BaseException | None = None) -> Decision:
        """The decision the block recorded, for `tenant` and `service`, unsigned."""
        ended = utc_now()
        calls = list(self._calls)
        assembled = assemble_decision(
            calls, self._tool_runs(calls), self._retrievals, template_id=self.template_id
        )
        if self._output is not None:
            decision, text = self._output
            output = Output(
                decision=decision,
                text=assembled.text if text is None else text,
                finish_reason=assembled.finish_reason,
            )
        else:
            output = Output(
                decision=assembled.decision,
                text=assembled.text,
                finish_reason=assembled.finish_reason,
            )
        usage = assembled.usage
        if usage is not None:
            # The whole decision's wall time, tools included (a replay compares model time
            # from the steps).
            usage = msgspec.structs.replace(
                usage, latency_ms=max(0, (ended - self.started_at) // timedelta(milliseconds=1))
            )
        options = dict(self._options)
        attributes = dict(options.pop("attributes", None) or {})
        if assembled.not_replayable is not None:
            attributes[NOT_REPLAYABLE_ATTRIBUTE] = assembled.not_replayable
        if error is not None:
            attributes[ERROR_ATTRIBUTE] = {"type": type(error).__name__, "message": str(error)}
        links = options.pop("links", None)
        if links is None and self._parent is not None:
            links = Links(parent_decision=self._parent.id)
        record = new_decision(
            tenant=tenant,
            service=service,
            decision_type=self.decision_type,
            id=self.id,
            occurred_at=self.started_at,
            subject=self.subject,
            inputs=self.inputs,
            context=list(self._context),
            retrieval=list(self._documents),
            prompt=assembled.prompt,
            model=assembled.model,
            steps=assembled.steps,
            output=output,
            usage=usage,
            exposures=list(self._exposures),
            links=links,
            attributes=attributes,
            **options,
        )
        for change in self._amendments:
            record = change(record)
        return record

    def _finish(self, tenant: str, service: str, error: BaseException | None) -> Decision | None:
        """Close the block; the decision to append, or None when nothing is recorded."""
        self._close()
        if error is not None and (not isinstance(error, Exception) or not self.record_errors):
            return None
        return self.build(tenant, service, error)

    def _appended(self, result: AppendResult) -> None:
        self._result = result


class _Appends(Protocol):
    tenant: str
    service: str

    def append(self, decision: Decision, *, raise_on_flag: bool | None = None) -> AppendResult: ...


class _AppendsAsync(Protocol):
    tenant: str
    service: str

    async def append(
        self, decision: Decision, *, raise_on_flag: bool | None = None
    ) -> AppendResult: ...


ClientT = TypeVar("ClientT", _Appends, _AppendsAsync)


class _ClientScope(OpenDecision, Generic[ClientT]):
    """An `OpenDecision` appended, when its block ends, by the client that opened it.

    The block's end is the same with or without ``await`` but for the append:
    `_ending` builds the decision, `_appending` surrounds its append.
    """

    def __init__(
        self,
        client: ClientT,
        decision_type: str,
        *,
        inputs: dict[str, Any],
        raise_on_flag: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(decision_type, inputs=inputs, **kwargs)
        self._client: ClientT = client
        self._raise_on_flag = raise_on_flag

    def _ending(self, error: BaseException | None) -> Decision | None:
        """Close the block; the decision to append, or None: nothing is to be recorded, or
        building it failed while the block's own `error` propagates (noted on it)."""
        with self._noting(error):
            self.decision = self._finish(self._client.tenant, self._client.service, error)
        return self.decision

    @contextmanager
    def _noting(self, error: BaseException | None) -> Iterator[None]:
        # The block's own error is what the caller must see; a failure to record is a note
        # on it. Without one, the failure is the caller's to see.
        try:
            yield
        except Exception as failure:
            if error is None:
                raise
            error.add_note(f"the failed decision {self.id} was not recorded: {failure}")

    @contextmanager
    def _appending(self, error: BaseException | None) -> Iterator[None]:
        """Around the append of the decision `_ending` built."""
        with self._noting(error):
            try:
                yield
            except MonitorBreached as breached:
                if isinstance(breached.result, AppendResult):
                    self._appended(breached.result)  # stored: the breach is about the next one
                raise


class DecisionScope(_ClientScope[_Appends]):
    """`OpenDecision` as a ``with`` block of a `Client` (`Client.decision`)."""

    def __enter__(self) -> DecisionScope:
        self._open()
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        decision = self._ending(error)
        if decision is not None:
            with self._appending(error):
                self._appended(self._client.append(decision, raise_on_flag=self._raise_on_flag))


class AsyncDecisionScope(_ClientScope[_AppendsAsync]):
    """`OpenDecision` as an ``async with`` block of an `AsyncClient` (`AsyncClient.decision`)."""

    async def __aenter__(self) -> AsyncDecisionScope:
        self._open()
        return self

    async def __aexit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        decision = self._ending(error)
        if decision is not None:
            with self._appending(error):
                result = await self._client.append(decision, raise_on_flag=self._raise_on_flag)
                self._appended(result)
