"""Drop-in instrumentation end to end: the real `openai` and `anthropic` Python clients,
instrumented with `instrument_openai` / `instrument_anthropic`, make their calls inside
``with client.decision(...)`` blocks; a live `prov serve` receives the signed decisions.

No real provider is reachable here: the model clients talk to `tests.model_servers.
ModelServer`, a local server that speaks the OpenAI and Anthropic wire protocols. Its test
model answers as a dated snapshot of the name asked for (``scorer-v1`` answers as
``scorer-v1-2026-05-01``), as providers do, so the recorded version is the response's
model and not an echo of the request. Offered tools, it calls the first one; given the
result, it answers in text that quotes it.

Each stored record is read back with `prov show` and checked against what the model server
actually received (the exact requests), and replayed with `prov replay`: deterministic,
and pinned against the model server through a registry; both must be identical.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from ingest.client import (
    AsyncClient,
    Client,
    MonitorBreached,
    ProblemError,
    instrument_anthropic,
    instrument_openai,
)
from ingest.client.instrument import ERROR_ATTRIBUTE
from ledger.keys.signing import SigningKey
from ledger.log.note import NoteVerifier
from ledger.records.decision import Decision
from ledger.records.replay import decode_replay
from replay.providers import ChatRequest
from service.demo.model_server import Answer
from tests.http_helpers import SQLITE_ONLY
from tests.http_server import TENANT, Server, free_port
from tests.model_servers import (
    API_KEY,
    ModelServer,
    answer,
    conversation_of,
    fingerprint,
    registry_toml,
)
from tests.support import PROV, prov

SERVICE = "underwriter"
SNAPSHOT = "-2026-05-01"
LOOKUP: Any = {
    "type": "function",
    "function": {
        "name": "credit_lookup",
        "description": "The applicant's credit report",
        "parameters": {"type": "object", "properties": {"applicant": {"type": "string"}}},
    },
}
LOOKUP_ANTHROPIC: Any = {
    "name": "credit_lookup",
    "description": "The applicant's credit report",
    "input_schema": {"type": "object", "properties": {"applicant": {"type": "string"}}},
}
REPORT = {"score": 712, "open_accounts": 3}
ROOT = Path(__file__).resolve().parent.parent


def snapshot_model(request: ChatRequest) -> Answer:
    """The test model, answering under the dated snapshot of the alias it was asked for."""
    alias = request.model.removesuffix(SNAPSHOT)
    return dataclasses.replace(answer(alias, conversation_of(request)), model=alias + SNAPSHOT)


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    # The registry names these variables for the API keys; `prov replay` inherits them.
    monkeypatch.setenv("TEST_OPENAI_KEY", API_KEY)
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", API_KEY)
    server = ModelServer(api_key=API_KEY, model=snapshot_model).start()
    yield server
    server.stop()


def _registry(tmp_path: Path, models: ModelServer) -> Path:
    """Routes for the recorded (alias, snapshot) pairs to the model server."""
    path = tmp_path / "registry.toml"
    routes = "".join(
        f"""
[[models]]
name = "{alias}"
version = "{alias}{SNAPSHOT}"
provider = "{provider}"
upstream_model = "{{version}}"
"""
        for alias, provider in (("scorer-v1", "oa"), ("writer-v1", "an"))
    )
    path.write_text(registry_toml(models) + routes)
    return path


def _anthropic_options(models: ModelServer) -> dict[str, Any]:
    # This `anthropic` release sends its key as `Authorization: Bearer`; the local server
    # checks `x-api-key`, as the Messages API documents, so send that header as well.
    return {
        "api_key": API_KEY,
        "base_url": models.anthropic_base_url,
        "default_headers": {"x-api-key": API_KEY},
    }


def _verifier(server: Server) -> NoteVerifier:
    done = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file)
    return NoteVerifier.parse(done.out.strip())


def _ledger_options(server: Server) -> dict[str, Any]:
    key = SigningKey.generate()
    registered = httpx.post(
        f"{server.url}/v1/keys",
        json={"service": SERVICE, "public_key": key.public_key.hex()},
        headers=server.auth(server.admin_key),
    )
    assert registered.status_code == 201, registered.text
    return {
        "base_url": server.url,
        "api_key": server.api_key("ingest"),
        "signing_key": key,
        "tenant": TENANT,
        "service": SERVICE,
        "verifier_key": _verifier(server),
    }


def _stored(server: Server, index: int) -> dict[str, Any]:
    shown = prov(["show", str(index)], db=server.db_url, key=server.key_file)
    assert shown.code == 0, shown.err
    view = shown.json_lines()[0]
    assert view["verification"]["signature"]["status"] == "valid"  # type: ignore[index]
    payload: dict[str, Any] = view["payload"]  # type: ignore[assignment]
    return payload


def _replay(server: Server, decision_id: str, *args: str) -> str:
    done = prov(
        ["replay", decision_id, "--tenant", TENANT, "--json", *args],
        db=server.db_url,
        key=server.key_file,
    )
    assert done.code == 0, done.err
    record = decode_replay(done.out.encode())
    assert record.replay_of == decision_id
    return record.verdict


def _replays_identically(server: Server, decision_id: str, registry: Path) -> None:
    assert _replay(server, decision_id, "--mode", "deterministic") == "identical"
    assert _replay(server, decision_id, "--registry", str(registry)) == "identical"


def _bodies(models: ModelServer, path: str) -> list[Any]:
    return [seen.body for seen in models.requests if seen.path == path]


def _kinds(record: dict[str, Any]) -> list[str]:
    return [step["kind"] for step in record["steps"]]


@pytest.mark.slow
def test_openai_calls_and_a_tool_make_one_signed_decision_that_replays(
    server: Server, models: ModelServer, tmp_path: Path
) -> None:
    llm = instrument_openai(openai.OpenAI(api_key=API_KEY, base_url=models.openai_base_url))
    outside = llm.chat.completions.create(
        model="scorer-v1", messages=[{"role": "user", "content": "not part of any decision"}]
    )
    assert outside.model == "scorer-v1" + SNAPSHOT
    models.reset()
    with (
        Client(**_ledger_options(server)) as ledger,
        ledger.decision("loan.approve", inputs={"application": "LA-7"}, subject="applicant-7") as d,
    ):
        d.context("lending.limits", "2026-05", {"min_score": 640}, fetched_at=None)
        d.exposure("personal-loans", Decimal("12000.00"), "USD")
        messages: list[Any] = [
            {"role": "developer", "content": "You assess loans."},
            {"role": "user", "content": "applicant-7"},
        ]
        first = llm.chat.completions.create(
            model="scorer-v1", messages=messages, tools=[LOOKUP], temperature=0, seed=11
        )
        [call] = first.choices[0].message.tool_calls or []
        assert call.type == "function"
        messages.append(first.choices[0].message)  # a pydantic object, as usually sent back
        content = d.tool(call.function.name, call_id=call.id, result=REPORT)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
        final = llm.chat.completions.create(
            model="scorer-v1", messages=messages, tools=[LOOKUP], temperature=0, seed=11
        )
    assert d.result.status == "created"
    assert d.result.id == d.id

    sent = _bodies(models, "/v1/chat/completions")
    assert len(sent) == 2  # the call outside the decision was made before the reset
    record = _stored(server, d.result.index)
    assert record["id"] == d.id
    assert record["decision_type"] == "loan.approve"
    assert record["subject"] == "applicant-7"
    assert record["inputs"] == {"application": "LA-7"}
    assert _kinds(record) == ["llm_call", "tool_call", "llm_call"]
    # The exact requests, as the model server received them.
    assert record["steps"][0]["inputs"] == sent[0]
    assert record["steps"][2]["inputs"] == sent[1]
    assert record["steps"][0]["outputs"]["response"]["id"] == first.id
    assert record["model"] == {
        "provider": "openai",
        "name": "scorer-v1",
        "version": "scorer-v1" + SNAPSHOT,
        "fingerprint": fingerprint("scorer-v1"),
        "temperature": 0.0,
        "seed": 11,
        "tools": [
            {
                "name": "credit_lookup",
                "description": "The applicant's credit report",
                "parameters": LOOKUP["function"]["parameters"],
            }
        ],
    }
    # The developer message is the system prompt, as replay rebuilds it.
    assert record["prompt"]["messages"] == [
        {"role": "system", "content": "You assess loans."},
        {"role": "user", "content": "applicant-7"},
    ]
    tool = record["steps"][1]
    assert (tool["name"], tool["call_id"], tool["result"]) == ("credit_lookup", call.id, REPORT)
    assert tool["arguments"] == {"applicant": "applicant-7"}  # as the model asked
    usages = [first.usage, final.usage]
    assert record["usage"]["input_tokens"] == sum(u.prompt_tokens for u in usages if u)
    assert record["usage"]["output_tokens"] == sum(u.completion_tokens for u in usages if u)
    assert record["steps"][0]["usage"]["input_tokens"] == first.usage.prompt_tokens  # type: ignore[union-attr]
    assert record["output"]["text"] == final.choices[0].message.content
    assert record["output"]["decision"] == REPORT  # the JSON the final text quotes
    assert record["context"][0]["value"] == {"min_score": 640}
    assert record["exposures"] == [{"group": "personal-loans", "amount": "12000.00", "unit": "USD"}]

    _replays_identically(server, d.id, _registry(tmp_path, models))


@pytest.mark.slow
@SQLITE_ONLY
def test_async_openai_streams_are_recorded_as_the_caller_read_them(
    server: Server, models: ModelServer, tmp_path: Path
) -> None:
    llm = instrument_openai(openai.AsyncOpenAI(api_key=API_KEY, base_url=models.openai_base_url))

    async def decide() -> tuple[str, list[str], Any]:
        async with (
            AsyncClient(**_ledger_options(server)) as ledger,
            ledger.decision("loan.approve", inputs={"application": "LA-8"}) as d,
        ):
            messages: list[Any] = [{"role": "user", "content": "applicant-8"}]
            options: dict[str, Any] = {
                "model": "scorer-v1",
                "tools": [LOOKUP],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            stream = await llm.chat.completions.create(messages=messages, **options)
            calls: dict[int, dict[str, str]] = {}
            async for chunk in stream:
                for piece in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                    made = calls.setdefault(piece.index, {"id": "", "arguments": ""})
                    made["id"] = piece.id or made["id"]
                    made["arguments"] += (piece.function and piece.function.arguments) or ""
            call_id = calls[0]["id"]
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": "credit_lookup",
                                "arguments": calls[0]["arguments"],
                            },
                        }
                    ],
                }
            )
            content = d.tool("credit_lookup", call_id=call_id, result=REPORT)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
            read: list[str] = []
            async with await llm.chat.completions.create(messages=messages, **options) as final:
                async for chunk in final:
                    if chunk.choices and chunk.choices[0].delta.content:
                        read.append(chunk.choices[0].delta.content)
        return d.id, read, d.result

    decision_id, read, result = asyncio.run(decide())
    record = _stored(server, result.index)
    assert _kinds(record) == ["llm_call", "tool_call", "llm_call"]
    sent = _bodies(models, "/v1/chat/completions")
    assert [step["inputs"] for step in record["steps"][::2]] == sent
    assert record["output"]["text"] == "".join(read)
    assert record["output"]["finish_reason"] == "stop"
    first_out = record["steps"][0]["outputs"]
    assert first_out["tool_calls"][0]["arguments"] == {"applicant": "applicant-8"}
    assert first_out["response"]["choices"][0]["finish_reason"] == "tool_calls"
    # Usage came in the stream's last chunk because the request asked for it.
    assert record["steps"][2]["usage"]["input_tokens"] > 0
    assert record["usage"]["output_tokens"] > 0
    assert record["model"]["version"] == "scorer-v1" + SNAPSHOT

    _replays_identically(server, decision_id, _registry(tmp_path, models))


@pytest.mark.slow
@SQLITE_ONLY
def test_anthropic_create_and_stream_helper_sync_and_async(
    server: Server, models: ModelServer, tmp_path: Path
) -> None:
    options = _ledger_options(server)
    sync_llm = instrument_anthropic(anthropic.Anthropic(**_anthropic_options(models)))
    base: dict[str, Any] = {
        "model": "writer-v1",
        "max_tokens": 300,
        "system": "You assess loans.",
        "tools": [LOOKUP_ANTHROPIC],
    }

    with Client(**options) as ledger, ledger.decision("loan.approve", inputs={"n": 1}) as d:
        messages: list[Any] = [{"role": "user", "content": "applicant-9"}]
        first = sync_llm.messages.create(messages=messages, **base)
        [use] = [block for block in first.content if block.type == "tool_use"]
        messages.append({"role": "assistant", "content": first.content})
        content = d.tool(use.name, call_id=use.id, result=REPORT)
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": content}],
            }
        )
        with sync_llm.messages.stream(messages=messages, **base) as stream:
            said = "".join(stream.text_stream)
    sent = _bodies(models, "/v1/messages")
    record = _stored(server, d.result.index)
    assert _kinds(record) == ["llm_call", "tool_call", "llm_call"]
    assert record["steps"][0]["inputs"] == sent[0]
    assert record["steps"][2]["inputs"] == sent[1]  # the helper's request, `stream` included
    assert record["output"]["text"] == said
    assert record["output"]["finish_reason"] == "end_turn"
    assert record["model"]["provider"] == "anthropic"
    assert record["model"]["version"] == "writer-v1" + SNAPSHOT
    assert record["model"]["max_tokens"] == 300
    assert record["prompt"]["messages"][0] == {"role": "system", "content": "You assess loans."}
    assert record["steps"][1]["result"] == REPORT
    assert record["steps"][0]["usage"] == {
        "input_tokens": first.usage.input_tokens,
        "output_tokens": first.usage.output_tokens,
    }
    registry = _registry(tmp_path, models)
    _replays_identically(server, d.id, registry)

    async_llm = instrument_anthropic(anthropic.AsyncAnthropic(**_anthropic_options(models)))

    async def decide() -> tuple[str, str, int]:
        async with (
            AsyncClient(**options) as aledger,
            aledger.decision("loan.approve", inputs={"n": 2}) as scope,
        ):
            events = await async_llm.messages.create(
                model="writer-v1",
                max_tokens=200,
                messages=[{"role": "user", "content": "applicant-10"}],
                stream=True,
            )
            text = ""
            async for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text += event.delta.text
        return scope.id, text, scope.result.index

    decision_id, text, index = asyncio.run(decide())
    record = _stored(server, index)
    assert _kinds(record) == ["llm_call"]
    assert record["output"]["text"] == text
    assert record["steps"][0]["inputs"] == _bodies(models, "/v1/messages")[-1]
    assert record["steps"][0]["usage"]["output_tokens"] > 0  # from the message_delta event
    _replays_identically(server, decision_id, registry)

    async def helper() -> tuple[str, int]:
        async with (
            AsyncClient(**options) as aledger,
            aledger.decision("loan.approve", inputs={"n": 3}) as scope,
            async_llm.messages.stream(
                model="writer-v1", max_tokens=200, messages=[{"role": "user", "content": "z"}]
            ) as stream,
        ):
            said = "".join([piece async for piece in stream.text_stream])
        return said, scope.result.index

    said, index = asyncio.run(helper())
    record = _stored(server, index)
    assert record["output"]["text"] == said
    assert record["steps"][0]["inputs"] == _bodies(models, "/v1/messages")[-1]
    assert record["steps"][0]["outputs"]["response"]["stop_reason"] == "end_turn"


@SQLITE_ONLY
def test_a_failing_block_is_recorded_with_its_error_and_re_raised(
    server: Server, models: ModelServer
) -> None:
    llm = instrument_openai(
        openai.OpenAI(api_key=API_KEY, base_url=models.openai_base_url, max_retries=0)
    )
    options = _ledger_options(server)
    models.script.fail(500)
    with Client(**options) as ledger:
        with (
            pytest.raises(openai.InternalServerError),
            ledger.decision("loan.approve", inputs={"n": 3}) as failed,
        ):
            llm.chat.completions.create(
                model="scorer-v1", messages=[{"role": "user", "content": "x"}]
            )
        record = _stored(server, failed.result.index)
        assert record["attributes"][ERROR_ATTRIBUTE]["type"] == "InternalServerError"
        [step] = record["steps"]
        assert step["error"]["type"] == "InternalServerError"
        assert step["inputs"] == {
            "model": "scorer-v1",
            "messages": [{"role": "user", "content": "x"}],
        }

        # Not recorded when told so; the error still propagates.
        with (
            pytest.raises(KeyError),
            ledger.decision("loan.approve", inputs={"n": 4}, record_errors=False) as skipped,
        ):
            raise KeyError("no such applicant")
        with pytest.raises(RuntimeError, match="not recorded"):
            _ = skipped.result

        # A stream left unread when the block ends is recorded as it stands, incomplete.
        with ledger.decision("loan.approve", inputs={"n": 5}) as partial:
            stream = llm.chat.completions.create(
                model="scorer-v1", messages=[{"role": "user", "content": "y"}], stream=True
            )
            next(iter(stream))
        record = _stored(server, partial.result.index)
        assert record["steps"][0]["error"]["type"] == "stream_incomplete"
        stream.close()


def _not_recorded_note(error: BaseException, decision_id: str) -> str:
    [note] = error.__notes__
    assert note.startswith(f"the failed decision {decision_id} was not recorded: ")
    return note


@pytest.mark.slow
def test_a_block_that_cannot_be_recorded_says_so_sync_and_async(server: Server) -> None:
    """How a block ends when its decision cannot be built or appended, with `Client` and
    `AsyncClient` alike: the failure is the caller's when the block itself succeeded, and a
    note on the block's own error when it raised. A flag monitor's breach is raised with
    the receipt kept: the decision is stored."""
    options = _ledger_options(server)
    unregistered = options | {"signing_key": SigningKey.generate()}
    flag_every = {
        "id": "every",
        "tenant": TENANT,
        "select": {"decision_type": "loan.flagged"},
        "aggregate": "count",
        "window": "1h",
        "limit": "0",
        "action": "flag",
    }
    with Client(**(options | {"api_key": server.admin_key})) as admin:
        admin.apply_monitors([flag_every])

    def broken(record: Decision) -> Decision:
        raise ZeroDivisionError("no amendment")

    with Client(**unregistered) as ledger:
        with (
            pytest.raises(ProblemError) as refused,
            ledger.decision("loan.approve", inputs={"n": 1}) as clean,
        ):
            pass
        assert refused.value.kind == "unknown-key"
        assert clean.decision is not None  # built and sent, not stored
        with pytest.raises(RuntimeError, match="no receipt"):
            _ = clean.result
        with pytest.raises(KeyError) as raised, ledger.decision("loan.approve", inputs={}) as d:
            raise KeyError("no such applicant")
        assert _not_recorded_note(raised.value, d.id).endswith("[unknown-key]")
        with (
            pytest.raises(ZeroDivisionError),
            ledger.decision("loan.approve", inputs={}) as unbuilt,
        ):
            unbuilt.amend(broken)
        assert unbuilt.decision is None
        unbuilt = ledger.decision("loan.approve", inputs={})
        unbuilt.amend(broken)
        with pytest.raises(KeyError) as raised, unbuilt:
            raise KeyError("no such applicant")
        assert _not_recorded_note(raised.value, unbuilt.id).endswith("no amendment")
        assert unbuilt.decision is None
    with Client(**options, raise_on_flag=True) as ledger:
        with (
            pytest.raises(MonitorBreached) as breached,
            ledger.decision("loan.flagged", inputs={"n": 1}) as flagged,
        ):
            pass
        assert flagged.result is breached.value.result  # the stored decision's

    async def the_same_with_async_with() -> None:
        async with AsyncClient(**unregistered) as ledger:
            with pytest.raises(ProblemError, match="unknown-key"):
                async with ledger.decision("loan.approve", inputs={"n": 1}):
                    pass
            with pytest.raises(KeyError) as raised:
                async with ledger.decision("loan.approve", inputs={}) as d:
                    raise KeyError("no such applicant")
            assert _not_recorded_note(raised.value, d.id).endswith("[unknown-key]")
            unbuilt = ledger.decision("loan.approve", inputs={})
            unbuilt.amend(broken)
            with pytest.raises(KeyError) as raised:
                async with unbuilt:
                    raise KeyError("no such applicant")
            assert _not_recorded_note(raised.value, unbuilt.id).endswith("no amendment")
        async with AsyncClient(**options) as ledger:
            with pytest.raises(MonitorBreached) as breached:
                async with ledger.decision(
                    "loan.flagged", inputs={"n": 2}, raise_on_flag=True
                ) as flagged:
                    pass
            assert flagged.result is breached.value.result  # the stored decision's

    asyncio.run(the_same_with_async_with())


def test_bad_input_is_refused_before_anything_is_sent() -> None:
    ledger = Client(
        "http://127.0.0.1:9", "key", SigningKey.generate(), tenant=TENANT, service=SERVICE
    )
    with pytest.raises(ValueError, match="decision type 'Approve'"):
        ledger.decision("Approve", inputs={})
    with pytest.raises(TypeError, match="inputs must be a dict"):
        ledger.decision("loan.approve", inputs=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown decision option 'colour'"):
        ledger.decision("loan.approve", inputs={}, colour="red")  # type: ignore[call-arg]
    scope = ledger.decision("loan.approve", inputs={})
    with pytest.raises(TypeError, match="not float"):
        scope.exposure("loans", 0.1, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a decimal number"):
        scope.exposure("loans", "lots", "USD")
    with pytest.raises(TypeError, match="must be a dict"):
        scope.output("approved")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expected an openai\.OpenAI"):
        instrument_openai(object())
    with pytest.raises(TypeError, match=r"expected an anthropic\.Anthropic"):
        instrument_anthropic(openai.OpenAI(api_key="k"))
    ledger.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"{process.args!r} exited"
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.1)


@pytest.mark.slow
def test_the_example_runs_as_examples_readme_says(tmp_path: Path) -> None:
    """examples/sdk_instrumented.py against `prov serve` and `prov models serve`, then the
    replays it prints, exactly as a newcomer runs them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
    port, model_port = free_port(), free_port()
    started = [
        subprocess.Popen(
            [PROV, *command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in (
            ["serve", "--port", str(port)],
            ["models", "serve", "--port", str(model_port)],
        )
    ]
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", started[0])
        _wait_ready(f"http://127.0.0.1:{model_port}/v1/models", started[1])
        db, key = str(tmp_path / "prov.db"), tmp_path / "prov-ledger.key"

        def api_key(role: str) -> str:
            made = prov(["api-key", "create", "--tenant", TENANT, "--role", role], db=db, key=key)
            assert made.code == 0, made.err
            return str(made.json_lines()[0]["key"])

        example_env = env | {
            "PROV_URL": f"http://127.0.0.1:{port}",
            "PROV_ADMIN_KEY": api_key("admin"),
            "PROV_API_KEY": api_key("ingest"),
            "PROV_VERIFIER_KEY": prov(["checkpoint", "--verifier-key"], db=db, key=key).out.strip(),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
        }
        example = [sys.executable, str(ROOT / "examples" / "sdk_instrumented.py")]
        for command in (["register"], ["run", "--count", "3"]):
            done = subprocess.run(
                [*example, *command],
                cwd=tmp_path,
                env=example_env,
                capture_output=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()
        lines = done.stdout.decode().splitlines()
        ids = [line.split()[1] for line in lines if line.startswith("decision ")]
        assert len(ids) == 3, lines
        registry = tmp_path / "registry.toml"
        registry.write_text(
            (ROOT / "examples" / "replay-registry.toml")
            .read_text()
            .replace("127.0.0.1:8090", f"127.0.0.1:{model_port}")
        )
        for decision_id in ids:
            for mode in (["--mode", "deterministic"], ["--registry", str(registry)]):
                done_replay = prov(
                    ["replay", decision_id, "--tenant", TENANT, "--json", *mode], db=db, key=key
                )
                assert done_replay.code == 0, done_replay.err
                assert decode_replay(done_replay.out.encode()).verdict == "identical"
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)
