"""An order router whose model calls are recorded by the SDK's drop-in instrumentation.

`route` is the business logic, written as it would be without a ledger: it asks a model
(through the ordinary `openai` client) where to ship an order from and with which carrier,
running the tools the model asks for (`check_inventory`, `quote_carriers`) until it
answers. The client is instrumented once (`instrument_openai`), and each order is routed
inside ``with ledger.decision("order.route", ...) as d:``: every call's exact request and
response, the model version that answered, usage and timing, with the tool runs the block
reports, become one decision signed with the service key and appended when the block ends.
The recorded requests are exact, so each decision replays with `prov replay`.

    python examples/sdk_instrumented.py register   # once: make and register the service key
    python examples/sdk_instrumented.py run        # route a few orders

It talks to the demo models of `prov models serve` (OpenAI wire format). See
examples/README.md for the setup against `prov serve`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai

from ingest.client import ClientError, instrument_openai
from ingest.client.instrument import OpenDecision
from ingest.client.service_cli import register_command, service_client, service_parser

TENANT = "acme"
SERVICE = "order-router"
MODEL = "gpt-4.1-mini"  # the alias; the answer names the dated snapshot that decided
# The demo model recognizes its task by this prompt, word for word.
SYSTEM_PROMPT = (
    "You route orders for a parts distributor. Ship from the first warehouse, in the order "
    "listed, that has every unit on hand: call check_inventory for the SKU first. Then call "
    "quote_carriers for the whole parcel from that warehouse and pick the cheapest quote "
    "that arrives within the order's promise_days; if none does, pick the fastest. Reply "
    'with only a JSON object {"warehouse", "carrier", "days"}.'
)
WAREHOUSES = ["RNO-1", "SEA-1", "OAK-2"]
UNIT_KG = {"WID-220": 2.0, "GAD-118": 3.0, "BRK-540": 4.0, "HNG-031": 0.5}
ZONES = {"94107": 1, "98109": 1, "60614": 2, "30309": 3, "10013": 3}
CUTOFFS = {"UPS": "17:00", "FedEx": "18:30"}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "check_inventory",
            "description": "Units on hand per warehouse",
            "parameters": {
                "type": "object",
                "properties": {"sku": {"type": "string"}},
                "required": ["sku"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "quote_carriers",
            "description": "Carrier quotes for a parcel",
            "parameters": {
                "type": "object",
                "properties": {
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "kg": {"type": "number"},
                },
                "required": ["from", "to", "kg"],
            },
        },
    },
]
MAX_TURNS = 6
REGISTRY = "replay-registry.toml"  # beside this file: routes the demo models for replay


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# The service's own tools: stand-ins for the warehouse system and the carriers' rating APIs.


def check_inventory(arguments: dict[str, Any]) -> dict[str, int]:
    seed = hashlib.sha256(arguments["sku"].encode()).digest()
    return {warehouse: seed[n] % 12 for n, warehouse in enumerate(WAREHOUSES)}


def quote_carriers(arguments: dict[str, Any]) -> list[dict[str, Any]]:
    zone, kg = ZONES.get(arguments["to"], 3), float(arguments["kg"])
    return [
        {"carrier": "UPS", "usd": f"{7.9 + 1.2 * kg + 0.85 * zone:.2f}", "days": zone + 1},
        {"carrier": "FedEx", "usd": f"{12.5 + 1.6 * kg + 1.1 * zone:.2f}", "days": 2},
    ]


RUN_TOOL: dict[str, Callable[[dict[str, Any]], Any]] = {
    "check_inventory": check_inventory,
    "quote_carriers": quote_carriers,
}


def route(llm: openai.OpenAI, d: OpenDecision, order: dict[str, Any]) -> dict[str, Any]:
    """Ask the model to route `order`, running the tools it asks for; its decision."""
    facts = order | {"unit_kg": UNIT_KG[order["sku"]]}
    messages: list[Any] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"Route order {order['order_id']}.\n"
            f"Order: {_compact(facts)}\nWarehouses: {_compact(WAREHOUSES)}",
        },
    ]
    quotes: list[dict[str, Any]] = []
    for _ in range(MAX_TURNS):
        answer = llm.chat.completions.create(
            model=MODEL, messages=messages, tools=TOOLS, temperature=0, seed=7, max_tokens=400
        )
        message = answer.choices[0].message
        if not message.tool_calls:
            decision: dict[str, Any] = json.loads(message.content or "")
            chosen = [q for q in quotes if q["carrier"] == decision.get("carrier")]
            if chosen:  # what the order commits to spend, for portfolio monitors
                d.exposure("shipping-spend", Decimal(chosen[0]["usd"]), "USD")
            return decision
        messages.append(message)
        for call in message.tool_calls:
            if call.type != "function":
                raise RuntimeError(f"the model asked for a {call.type} tool")
            arguments = json.loads(call.function.arguments)
            result = RUN_TOOL[call.function.name](arguments)
            if call.function.name == "quote_carriers":
                quotes = result
            # `d.tool` records the run and gives back the content replay will feed the
            # model, so the conversation a pinned replay sends is the one sent here.
            content = d.tool(call.function.name, call_id=call.id, result=result)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
    raise RuntimeError(f"no routing decision after {MAX_TURNS} turns")


def orders(count: int) -> list[dict[str, Any]]:
    skus, postcodes = list(UNIT_KG), list(ZONES)
    return [
        {
            "order_id": f"SO-{700100 + n}",
            "sku": skus[n % len(skus)],
            "qty": 1 + n % 4,
            "postcode": postcodes[n % len(postcodes)],
            "promise_days": (2, 3, 5)[n % 3],
        }
        for n in range(count)
    ]


def run(args: argparse.Namespace) -> int:
    """Route `--count` orders, each recorded as one decision by the instrumentation."""
    ledger = service_client(args, tenant=TENANT, service=SERVICE)
    if ledger is None:
        return 2
    recorded: list[str] = []
    with ledger:
        llm = instrument_openai(openai.OpenAI(base_url=args.model_url, api_key=args.model_key))
        for order in orders(args.count):
            try:
                with ledger.decision("order.route", inputs=order, subject=order["order_id"]) as d:
                    d.context("carrier.cutoffs", datetime.now(UTC).date().isoformat(), CUTOFFS)
                    decision = route(llm, d, order)
            except (ClientError, openai.OpenAIError, RuntimeError, ValueError) as error:
                print(f"{order['order_id']}: not routed or not recorded: {error}", file=sys.stderr)
                return 1
            recorded.append(d.id)
            print(f"decision {d.id} index {d.result.index} {_compact(decision)}")
    print("\nReplay them (with `prov models serve` running):")
    print(f"  export PROV_REPLAY_REGISTRY={Path(__file__).resolve().with_name(REGISTRY)}")
    for decision_id in recorded[:1]:
        print(f"  prov replay {decision_id} --tenant {TENANT} --mode deterministic")
        print(f"  prov replay {decision_id} --tenant {TENANT}    # pinned: {MODEL} again")
        print(f"  prov replay {decision_id} --tenant {TENANT} --against gpt-5-mini")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = service_parser(__doc__, key_file="order-router.key")
    parser.add_argument(
        "--model-url",
        default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8090/v1"),
        help="the OpenAI-compatible endpoint (default: prov models serve)",
    )
    parser.add_argument(
        "--model-key",
        default=os.environ.get("OPENAI_API_KEY", "local"),
        help="its API key (prov models serve accepts any)",
    )
    parser.add_argument("--count", type=int, default=3, help="orders to route")
    args = parser.parse_args(argv)
    return register_command(args, SERVICE) if args.command == "register" else run(args)


if __name__ == "__main__":
    sys.exit(main())
