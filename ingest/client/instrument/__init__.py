"""Drop-in instrumentation: model calls recorded as they are made (docs/sdk.md).

`instrument_openai(client)` and `instrument_anthropic(client)` wrap a provider client
instance so that each call it makes inside a decision block (``with
client.decision(...) as d:``, `decision.OpenDecision`) is recorded with its exact request
and response, the model version that answered, usage and timing. When the block ends the
calls, with the tools, retrievals and context the block reported, become one decision,
signed and appended by the ledger client; its recorded requests are exact, so it replays.

Nothing here imports `openai` or `anthropic`: the base install has neither.
"""

from ingest.client.instrument.anthropic import instrument_anthropic
from ingest.client.instrument.decision import (
    ERROR_ATTRIBUTE,
    AsyncDecisionScope,
    DecisionArguments,
    DecisionOptions,
    DecisionScope,
    OpenDecision,
    current_decision,
)
from ingest.client.instrument.openai import instrument_openai

__all__ = [
    "ERROR_ATTRIBUTE",
    "AsyncDecisionScope",
    "DecisionArguments",
    "DecisionOptions",
    "DecisionScope",
    "OpenDecision",
    "current_decision",
    "instrument_anthropic",
    "instrument_openai",
]
