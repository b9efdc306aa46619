"""A replay in the terminal: the recorded and the replayed run side by side, drawn with rich.

Read top to bottom the way an engineer paged at night asks: what was replayed against
what; the two runs step by step (kind, tool and arguments, text, tokens, latency), with a
red row where the replay left the record saying what was expected and what happened; the
decision fields that changed; how tokens, cost and latency moved; and the verdict, in
colour, with the replay's record id and log index. Steps the replay keeps from the record
(retrievals, policy checks, approvals) are shown once, marked as kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ledger.records.decision import Decision, HumanApproval, LlmCall, Retrieval, Step, ToolCall
from ledger.records.replay import (
    Divergence,
    IntDelta,
    ModelRef,
    MoneyDelta,
    ReplayedLlmCall,
    ReplayedStep,
    ReplayRecord,
)
from replay.batch.shadow_report import ShadowReport

VERDICT_STYLES = {
    "identical": "bold green",
    "equivalent": "bold green",
    "changed": "bold yellow",
    "diverged": "bold red",
    "failed": "bold white on red",
}
_TEXT = 60  # characters of model text per cell
_ARGUMENTS = 48  # characters of tool arguments per cell
_json = msgspec.json.Encoder()

# One row of the side-by-side table: (recorded index, step), (replayed index, step).
_Row = tuple[tuple[int, Step] | None, tuple[int, ReplayedStep] | None]


def _cut(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _call(name: str, arguments: Any) -> str:
    return f"{name} {_cut(_json.encode(arguments).decode(), _ARGUMENTS)}"


def _model(model: ModelRef) -> str:
    version = f" ({model.version})" if model.version else ""
    parameters = ", ".join(f"{k}={v}" for k, v in model.parameters.items())
    return f"{model.provider} {model.name}{version}" + (f" · {parameters}" if parameters else "")


def _recorded_text(decision: Decision, index: int, step: LlmCall) -> str:
    """The replay convention: the step's `outputs.text`, else for the last model call the
    decision's text."""
    text = step.outputs.get("text") if isinstance(step.outputs, dict) else None
    if isinstance(text, str):
        return text
    last_llm = max(i for i, s in enumerate(decision.steps) if isinstance(s, LlmCall))
    return (decision.output.text or "") if index == last_llm else ""


def _recorded_cell(decision: Decision, index: int, step: Step) -> Text:
    if isinstance(step, LlmCall):
        cell = Text("llm  ", style="cyan")
        text = _recorded_text(decision, index, step)
        if text:
            return cell.append(_cut(text, _TEXT))
        return cell.append("asks " + ", ".join(_tools_asked(decision.steps, index)))
    if isinstance(step, ToolCall):
        cell = Text("tool ", style="magenta").append(_call(step.name, step.arguments))
        if step.error is not None:
            cell.append(f" ✘ {step.error.type}", style="red")
        return cell
    if isinstance(step, Retrieval):
        return Text(f"retrieval {step.source}", style="dim")
    if isinstance(step, HumanApproval):
        return Text(f"approval {step.approver}", style="dim")
    return Text("policy check", style="dim")


def _tools_asked(steps: Sequence[Step], index: int) -> list[str]:
    """The tools the LLM call at `index` asked for: the tool calls after it, up to the
    next LLM call."""
    names = []
    for step in steps[index + 1 :]:
        if isinstance(step, LlmCall):
            break
        if isinstance(step, ToolCall):
            names.append(step.name)
    return names


def _replayed_cell(step: ReplayedStep) -> Text:
    if isinstance(step, ReplayedLlmCall):
        cell = Text("llm  ", style="cyan")
        if step.tool_calls and not step.text:
            return cell.append("asks " + ", ".join(call.name for call in step.tool_calls))
        return cell.append(_cut(step.text, _TEXT))
    cell = Text("tool ", style="magenta").append(_call(step.name, step.arguments))
    if step.source == "live":
        cell.append(" [live]", style="bold")
    if step.error is not None:
        cell.append(f" ✘ {step.error.type}", style="red")
    return cell


def _recorded_figures(step: Step) -> tuple[str | None, int]:
    usage = step.usage
    tokens = f"{usage.input_tokens}/{usage.output_tokens}" if usage is not None else None
    return tokens, int((step.ended_at - step.started_at).total_seconds() * 1000)


def _pair(before: str | None, after: str | None) -> str:
    """`before → after`, or one value when both sides agree or only one has it."""
    if before is None or after is None or before == after:
        return before or after or ""
    return f"{before} → {after}"


def _figures(recorded: Step | None, replayed: ReplayedStep | None) -> tuple[str, str]:
    """The tokens (in/out) and latency cells of a row: record → replay."""
    tokens_before, ms_before = _recorded_figures(recorded) if recorded else (None, None)
    tokens_after = ms_after = None
    if isinstance(replayed, ReplayedLlmCall):
        tokens_after = f"{replayed.input_tokens}/{replayed.output_tokens}"
        ms_after = replayed.latency_ms
    return (
        _pair(tokens_before, tokens_after),
        _pair(
            None if ms_before is None else f"{ms_before:,}",
            None if ms_after is None else f"{ms_after:,}",
        ),
    )


def align(steps: Sequence[Step], replayed: Sequence[ReplayedStep]) -> list[_Row]:
    """Pair each recorded step with the replayed step that replays it; replayed steps
    with no recorded counterpart follow the last paired one."""
    paired: dict[int, tuple[int, ReplayedStep]] = {}
    extra: dict[int, list[tuple[int, ReplayedStep]]] = {}
    last = -1
    for position, step in enumerate(replayed):
        index = step.recorded_step
        if index is not None and index < len(steps) and index not in paired:
            paired[index] = (position, step)
            last = index
        else:
            extra.setdefault(last, []).append((position, step))
    rows: list[_Row] = [(None, early) for early in extra.get(-1, [])]
    for index, recorded in enumerate(steps):
        rows.append(((index, recorded), paired.get(index)))
        rows += [(None, later) for later in extra.get(index, [])]
    return rows


def _divergence_row(rows: list[_Row], divergence: Divergence) -> int:
    """Where the marker goes: right after the replayed model call that departed (or ended),
    else before the recorded step that was expected, else at the end."""
    for position, (_, replayed) in enumerate(rows):
        if replayed is not None and replayed[0] == divergence.replayed_step:
            return position + 1
    for position, (recorded, _) in enumerate(rows):
        if recorded is not None and recorded[0] == divergence.recorded_step:
            return position
    return len(rows)


def _shown(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        return _call(str(value["name"]), value.get("arguments", {}))
    return "nothing more" if value is None else _cut(_json.encode(value).decode(), _ARGUMENTS)


def _marker(divergence: Divergence) -> tuple[Text, Text]:
    """The two cells of the divergence row: what the record had, what the replay did."""
    expected = Text(f"DIVERGED · {divergence.kind}\n", style="bold red").append(
        f"expected {_shown(divergence.expected)}", style="red"
    )
    actual = Text(f"got {_shown(divergence.actual)}\n", style="bold red").append(
        divergence.detail, style="red"
    )
    return expected, actual


def steps_table(decision: Decision, record: ReplayRecord) -> Table:
    table = Table(title="Recorded and replayed run, step by step", expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("recorded", ratio=1)
    table.add_column("replayed", ratio=1)
    table.add_column("tokens in/out", no_wrap=True)
    table.add_column("ms", no_wrap=True)
    rows = align(decision.steps, record.steps)
    divergence = record.divergence
    marker = _divergence_row(rows, divergence) if divergence is not None else None
    for position, (recorded, replayed) in enumerate([*rows, (None, None)]):
        if position == marker and divergence is not None:
            table.add_row(Text("✘", style="bold red"), *_marker(divergence))
        if recorded is None and replayed is None:
            break  # the end, where a run that ended late is marked
        number = str(recorded[0]) if recorded else f"+{replayed[0]}" if replayed else ""
        left = _recorded_cell(decision, *recorded) if recorded else Text("—", style="dim")
        if replayed is not None:
            right = _replayed_cell(replayed[1])
        elif recorded is not None and not isinstance(recorded[1], LlmCall | ToolCall):
            right = Text("· kept from the record", style="dim")
        else:
            right = Text("— not reached", style="dim")
        tokens, milliseconds = _figures(
            recorded[1] if recorded else None, replayed[1] if replayed else None
        )
        table.add_row(number, left, right, tokens, milliseconds)
    return table


def diff_table(record: ReplayRecord) -> Table | None:
    """The decision fields that changed, or the text when only the text did."""
    diff = record.diff
    if diff.decision:
        table = Table(title="Decision: what changed", expand=True)
        table.add_column("field", no_wrap=True)
        table.add_column("recorded", ratio=1, style="red")
        table.add_column("", no_wrap=True)
        table.add_column("replayed", ratio=1, style="green")
        for change in diff.decision:
            table.add_row(
                change.path or "(whole decision)",
                _value(change.before, change.change == "added"),
                "→",
                _value(change.after, change.change == "removed"),
            )
        return table
    if diff.text_changed:
        title = (
            "No decision in the replayed text: the texts differ"
            if diff.text_only
            else "Same decision, other text"
        )
        table = Table(title=title, expand=True)
        table.add_column("recorded text", ratio=1, style="red")
        table.add_column("replayed text", ratio=1, style="green")
        table.add_row(_cut(diff.text_before or "", 400), _cut(diff.text_after or "", 400))
        return table
    return None


def _value(value: Any, absent: bool) -> str:
    return "(absent)" if absent else _cut(_json.encode(value).decode(), 120)


def _delta(name: str, delta: IntDelta | MoneyDelta, unit: str = "") -> Text:
    before, after = delta.before, delta.after
    text = Text(f"{name} ", style="bold")
    if before is None and after is None:
        return text.append("—", style="dim")
    shown = f"{_number(before)} → {_number(after)}{unit}"
    text.append(shown)
    if before is not None and after is not None and after != before:
        change = after - before
        text.append(
            f" ({'+' if change > 0 else ''}{_number(change)})",
            style="red" if change > 0 else "green",
        )
    return text


def _number(value: int | Decimal | None) -> str:
    if value is None:
        return "?"
    # Fixed-point for money: a Decimal's own format writes a small delta as -2E-7.
    return f"{value:,f}" if isinstance(value, Decimal) else f"{value:,}"


def usage_line(record: ReplayRecord) -> Text:
    diff = record.diff
    currency = f" {diff.cost.currency}" if diff.cost.currency else ""
    return Text("  ·  ").join(
        [
            _delta("tokens in", diff.input_tokens),
            _delta("tokens out", diff.output_tokens),
            _delta("cost", diff.cost, currency),
            _delta("latency", diff.latency_ms, " ms"),
        ]
    )


def verdict_text(verdict: str) -> Text:
    return Text(f" {verdict.upper()} ", style=VERDICT_STYLES.get(verdict, "bold"))


def render_replay(
    decision: Decision, record: ReplayRecord, index: int | None, console: Console
) -> None:
    console.print(
        Panel(
            Text.assemble(
                ("recorded  ", "bold"),
                _model(record.recorded_model),
                ("\nreplayed  ", "bold"),
                _model(record.model),
                ("\nmode      ", "bold"),
                record.mode,
            ),
            title=f"[bold]Replay of {decision.id}[/] ({decision.decision_type})",
            title_align="left",
        )
    )
    console.print(steps_table(decision, record))
    changes = diff_table(record)
    if changes is not None:
        console.print(changes)
    console.print(usage_line(record))
    line = Text("verdict ", style="bold").append_text(verdict_text(record.verdict))
    if record.divergence is not None:
        line.append(f"  {record.divergence.kind} at step {record.divergence.recorded_step}")
    if record.error is not None:
        line.append(f"  {record.error.type}: {record.error.message}", style="red")
    console.print(line)
    where = f"log index {index}" if index is not None else "not stored"
    console.print(Text(f"replay {record.id} · {where}", style="dim"))


def render_batch(report: ShadowReport, html: str, console: Console) -> None:
    """The verdict shares and the fields that changed most; the rest is in the report."""
    against = ", ".join(_model(model) for model in report.models)
    overrides = ", ".join(f"{k}={v}" for k, v in report.parameters.items())
    console.print(
        Text.assemble(
            ("Shadow evaluation ", "bold"),
            report.batch,
            f": {report.total} {report.mode} replays against {against or '—'}",
            f" with {overrides}" if overrides else "",
        )
    )
    table = Table()
    table.add_column("verdict")
    table.add_column("replays", justify="right")
    table.add_column("share", justify="right")
    for share in report.verdicts:
        table.add_row(verdict_text(share.verdict), str(share.count), f"{share.share:.1%}")
    console.print(table)
    if report.changed_fields:
        fields = ", ".join(
            f"{field.path or '(whole decision)'} {field.share:.0%}"
            for field in report.changed_fields[:5]
        )
        console.print(Text("most changed: ", style="bold").append(fields))
    if report.text_only:
        console.print(f"{report.text_only} replays gave no decision in their text")
    if report.stored < report.total:
        console.print(
            Text(f"{report.total - report.stored} replays were not stored", style="bold red")
        )
    # Never wrapped, so that the path can be copied from the terminal.
    console.print(Text("report: ", style="bold").append(html), soft_wrap=True)
