"""Model calls, tool runs and retrievals as a service made them, and the decision they add up to.

Two producers observe the same things from different sides: the SDK's drop-in
instrumentation sees each provider call's exact request and response
(`ingest.client.instrument`), and the OTLP mapper reads them back from GenAI spans
(`ingest.otlp`). Both describe what they saw as the Structs of `observed`, and
`assemble.assemble_decision` turns them into one `ledger.records.decision.Decision`, so the
rules that make a recorded run replayable (docs/replay.md, "Request rebuilding") live in one
place.
"""

from ingest.calls.assemble import Assembled, assemble_decision
from ingest.calls.observed import (
    CalledTool,
    ModelCall,
    ObservedMessage,
    RetrievalRun,
    ToolOffered,
    ToolRun,
)

__all__ = [
    "Assembled",
    "CalledTool",
    "ModelCall",
    "ObservedMessage",
    "RetrievalRun",
    "ToolOffered",
    "ToolRun",
    "assemble_decision",
]
