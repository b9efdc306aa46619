"""The why-report and search results in the terminal, drawn with rich.

The report is read top to bottom the way an auditor asks: what was decided, from what,
by which model and prompt, through which steps, under which policy and authority, and
whether each of those claims verifies. Every badge shows the status the report carries;
a check that was not made is never drawn as a pass.
"""

from __future__ import annotations

from typing import Any

import msgspec
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

_BADGES = {
    "valid": ("✔", "green"),
    "present": ("✔", "green"),
    "no-expiry": ("·", "dim"),
    "none": ("·", "dim"),
    "recorded": ("·", "cyan"),
    "not-checked": ("?", "yellow"),
    "not-yet-checkpointed": ("…", "yellow"),
    "expired-since": ("!", "yellow"),
    "erased": ("⌫", "yellow"),
    "missing": ("?", "yellow"),
    "registered": ("✔", "green"),
    "registered-as-other": ("!", "yellow"),
    "unregistered": ("!", "yellow"),
}

# How a decision is attested is a level, not a check: each is drawn in its own colour, so
# that a decision the ledger built from spans never looks like one its producer signed.
_ATTESTATIONS = {
    "producer-signed": ("✎", "bold green"),
    "ledger-attested": ("◆", "bold magenta"),
}


def attestation_badge(level: str) -> Text:
    mark, style = _ATTESTATIONS.get(level, ("✘", "bold red"))
    return Text(f"{mark} {level}", style=style)


def badge(status: str) -> Text:
    mark, style = _BADGES.get(status, ("✘", "bold red"))
    return Text(f"{mark} {status}", style=style)


# A replay's verdict is an outcome, not a check: coloured by how far it strays from the record.
_VERDICT_STYLES = {
    "identical": "green",
    "equivalent": "cyan",
    "changed": "yellow",
    "diverged": "magenta",
    "failed": "bold red",
}


def verdict(word: str | None) -> Text:
    return Text(word or "undecodable", style=_VERDICT_STYLES.get(word or "", "bold red"))


def _json(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def _kv(rows: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows.items():
        if value not in (None, "", [], {}):
            table.add_row(name, value if isinstance(value, Text) else str(value))
    return table


def render_why(report: dict[str, Any], console: Console) -> None:
    decision = report["decision"]
    verification = report["verification"]
    entry = report["evidence"]["entry"]
    if decision is None:
        console.print(Panel(f"entry {entry['index']}: the stored record does not decode"))
        console.print(badge(verification["signature"]["status"]), verification["signature"])
        return
    analysis = report["analysis"]
    console.print(
        Panel(
            _kv(
                {
                    "decision": decision["id"],
                    "type": decision["decision_type"],
                    "service": f"{decision['tenant']}/{decision['service']}",
                    "occurred at": decision["occurred_at"],
                    "subject": decision.get("subject"),
                    "log entry": f"{entry['index']} (integrated {entry['integrated_at']})",
                }
                | _attestation_rows(verification.get("attestation"))
            ),
            title="[bold]Why this decision was made",
            subtitle=f"report generated {report['generated_at']}",
        )
    )
    console.print(Panel(_json(decision["output"]), title="Output"))
    console.print(Panel(_json(decision["inputs"]), title="Inputs"))
    _context(decision, analysis, verification, console)
    _retrieval(decision, console)
    _model_and_prompt(decision, console)
    _steps(decision, analysis, console)
    _usage_and_policy(decision, console)
    _authority(verification, console)
    _replays(verification["replays"], console)
    _verification(report, console)


def _attestation_rows(attestation: dict[str, Any] | None) -> dict[str, Any]:
    """The header's lines on who vouches for the decision and what it was built from; none
    for a report made before levels were shown."""
    if attestation is None:
        return {}
    source = attestation.get("source")
    built = None
    if source is not None:
        built = f"OpenTelemetry trace {source.get('trace_id') or '?'}"
        if source.get("incomplete"):
            built += " (incomplete: its root span never arrived)"
    return {
        "attested": Text.assemble(
            attestation_badge(attestation["level"]), f"  ({attestation['detail']})"
        ),
        "built from": built,
        "not replayable": attestation.get("not_replayable"),
    }


def _context(
    decision: dict[str, Any],
    analysis: dict[str, Any],
    verification: dict[str, Any],
    console: Console,
) -> None:
    if not decision["context"]:
        return
    blobs = {blob["digest"]: blob["status"] for blob in verification["blobs"]}
    table = Table(title="Context the decision saw", expand=True)
    for column in ("name", "version", "fetched at", "valid until", "freshness", "content"):
        table.add_column(column)
    for snapshot, seen in zip(decision["context"], analysis["context"], strict=True):
        content: Text | str = (
            badge(blobs.get(snapshot["blob"], "missing")).append(f" {snapshot['blob'][:19]}…")
            if snapshot.get("blob")
            else _json(snapshot.get("value"))
        )
        table.add_row(
            snapshot["name"],
            snapshot["version"],
            snapshot["fetched_at"],
            snapshot.get("valid_until") or "—",
            badge(seen["freshness"]),
            content,
        )
    console.print(table)


def _retrieval(decision: dict[str, Any], console: Console) -> None:
    if not decision["retrieval"]:
        return
    table = Table(title="Retrieved documents", expand=True)
    for column in ("source", "document", "version", "score", "digest"):
        table.add_column(column)
    for document in decision["retrieval"]:
        table.add_row(
            document["source"],
            document["doc_id"],
            document["version"],
            f"{document['score']:.3f}",
            document["digest"][:19] + "…",
        )
    console.print(table)


def _model_and_prompt(decision: dict[str, Any], console: Console) -> None:
    model = decision["model"]
    parameters = {
        name: model.get(name)
        for name in ("temperature", "top_p", "top_k", "seed", "max_tokens", "stop_sequences")
    }
    prompt = decision.get("prompt") or {}
    console.print(
        Panel(
            _kv(
                {
                    "model": f"{model['provider']} {model['name']} ({model['version']})",
                    "fingerprint": model.get("fingerprint"),
                    "parameters": ", ".join(
                        f"{k}={v}" for k, v in parameters.items() if v not in (None, [])
                    ),
                    "tools offered": ", ".join(tool["name"] for tool in model.get("tools", [])),
                    "prompt": f"{prompt['template_id']} v{prompt['version']}" if prompt else None,
                    "prompt digest": prompt.get("digest"),
                    "variables": _json(prompt["variables"]) if prompt.get("variables") else None,
                    "messages": f"{len(prompt['messages'])} inline"
                    if prompt.get("messages")
                    else prompt.get("messages_blob"),
                }
            ),
            title="Model and prompt",
        )
    )


def _steps(decision: dict[str, Any], analysis: dict[str, Any], console: Console) -> None:
    table = Table(title="Steps, in order", expand=True)
    for column in ("#", "kind", "what", "at +ms", "took ms", "tokens", "details"):
        table.add_column(column)
    for step, line in zip(decision["steps"], analysis["timeline"], strict=True):
        details = {
            key: step[key]
            for key in ("arguments", "result", "inputs", "outputs", "error")
            if step.get(key) not in (None, {}, [])
        }
        table.add_row(
            str(line["step"]),
            step["kind"],
            line["label"] + (f" ({step['call_id']})" if step.get("call_id") else ""),
            f"{line['offset_ms']:,.0f}",
            f"{line['duration_ms']:,.0f}",
            str(line["tokens"] or ""),
            Text(msgspec.json.encode(details).decode(), style="red" if line["error"] else ""),
        )
    console.print(table)


def _usage_and_policy(decision: dict[str, Any], console: Console) -> None:
    usage = decision.get("usage") or {}
    cost = usage.get("cost")
    policy = decision.get("policy")
    parts = [
        _kv(
            {
                "tokens": f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"
                if usage
                else None,
                "cost": f"{cost['amount']} {cost['currency']}" if cost else None,
                "latency": f"{usage['latency_ms']} ms" if usage.get("latency_ms") else None,
            }
        )
    ]
    if policy:
        parts.append(
            _kv(
                {
                    "policy": f"{policy['engine']} {policy['policy_id']} {policy['version']}",
                    "result": policy["result"],
                    "reasons": ", ".join(policy.get("reasons", [])) or None,
                }
            )
        )
    console.print(Panel(Group(*parts), title="Usage, cost and policy"))


def _authority(verification: dict[str, Any], console: Console) -> None:
    delegation = verification["delegation"]
    lines: list[Any] = [Text.assemble("chain: ", badge(delegation["status"]))]
    lines.append(Text(delegation["detail"], style="dim"))
    for hop, link in enumerate(delegation.get("hops", [])):
        lines.append(
            Text(f"{hop}. {link['iss']} → {link['aud']}  {link['cmd']}, exp {link['exp']}")
        )
    console.print(Panel(Group(*lines), title="Who authorized it"))


def _replays(replays: dict[str, Any], console: Console) -> None:
    if not replays["replays"]:
        return
    table = Table(title="Replays", expand=True)
    for column in ("entry", "replay", "occurred at", "mode", "model", "verdict", "what differs"):
        table.add_column(column)
    table.add_column("signature")
    for item in replays["replays"]:
        model = item["model"] or {}
        checks = [item["signature"]["status"], item["leaf"], item["inclusion"], item["link"]]
        failed = next((status for status in checks if status != "valid"), None)
        table.add_row(
            str(item["index"]),
            item["id"] + (f"\nbatch {item['batch']}" if item["batch"] else ""),
            item["occurred_at"] or "",
            item["mode"] or "",
            " ".join(
                filter(None, (model.get("provider"), model.get("name"), model.get("version")))
            ),
            verdict(item["verdict"]),
            item["summary"] or "",
            badge(failed or "valid"),
        )
    console.print(table)


def _verification(report: dict[str, Any], console: Console) -> None:
    verification = report["verification"]
    table = Table(title="Verification", expand=True)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail")
    signature = verification["signature"]
    table.add_row(
        "signature, key valid at occurred_at",
        badge(signature["status"]),
        signature.get("detail") or f"key {signature.get('keyid', '')[:16]}…",
    )
    table.add_row("leaf hash", badge(verification["leaf"]["status"]), "")
    checkpoint = report["evidence"]["checkpoint"]
    table.add_row(
        "inclusion in the latest checkpoint",
        badge(verification["inclusion"]["status"]),
        checkpoint.splitlines()[1] + " entries" if checkpoint else "",
    )
    # Shown once a witness has cosigned a tree that holds the decision (the JSON report
    # always says; a ledger without witnesses would otherwise show a failure on every page).
    if (witnessed := verification.get("witnesses")) is not None and witnessed["witnesses"]:
        table.add_row("cosigned by witnesses", badge(witnessed["status"]), _witnessed(witnessed))
    for blob in verification["blobs"]:
        table.add_row(f"blob {blob['pointer']}", badge(blob["status"]), _blob_detail(blob))
    replays = verification["replays"]
    table.add_row("replays", badge(replays["status"]), replays["detail"])
    for name, label in (("policy", "policy document"), ("policy_checks", "policy checks")):
        if (item := verification.get(name)) is not None:
            table.add_row(label, badge(item["status"]), item["detail"])
    console.print(table)
    console.print(
        Text(
            "Re-check offline: prov why ID --json > report.json; "
            "prov verify-report report.json --verifier-key KEY",
            style="dim",
        )
    )


def _witnessed(witnessed: dict[str, Any]) -> str:
    names = ", ".join(witnessed["names"])
    return f"{witnessed['witnesses']} ({names}) at size {witnessed['tree_size']}"


def render_search(page: dict[str, Any], console: Console) -> None:
    table = Table(expand=True)
    columns = ("index", "id", "type", "occurred at", "model", "subject", "attested", "output")
    for column in columns:
        table.add_column(column)
    for item in page["decisions"]:
        table.add_row(
            str(item["index"]),
            item["id"],
            item["decision_type"],
            item["occurred_at"],
            f"{item['model']} ({item['model_version']})",
            item.get("subject") or "",
            # A page from a server that predates levels has none: shown as unknown.
            attestation_badge(item.get("attestation") or "unknown"),
            msgspec.json.encode(item["output"]).decode(),
        )
    console.print(table)
    if page.get("next_cursor"):
        console.print(Text(f"more: --cursor {page['next_cursor']}", style="dim"))


def _blob_detail(blob: dict[str, Any]) -> str:
    """The digest, and for an erased blob when and by which request: "erased on DATE
    (request R, entry N)"."""
    digest = str(blob["digest"])[:23] + "…"
    if blob["status"] != "erased" or not blob.get("erased_at"):
        return digest
    erasure = blob.get("erasure") or {}
    by = f" (request {erasure['request_id']}, entry {erasure['index']})" if erasure else ""
    return f"{digest} erased on {blob['erased_at'][:10]}{by}"
