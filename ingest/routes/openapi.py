"""OpenAPI descriptions of bodies the routes read as raw bytes.

Record routes read the body themselves, because the ledger stores and hashes exactly the
bytes the client sent; the framework therefore cannot infer the request schema, and these
operation classes state it.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)

# The envelope's component is generated from `dsse.Envelope`, which every receipt carries.
ENVELOPE = Reference(ref="#/components/schemas/Envelope")


@dataclass
class OneEnvelope(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=ENVELOPE)},
            description="One DSSE envelope whose payload is a record.",
            required=True,
        )


@dataclass
class EnvelopeBatch(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.ARRAY, items=ENVELOPE, min_items=1)
                ),
                "application/x-ndjson": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        description="One DSSE envelope per line.",
                    )
                ),
            },
            description="DSSE envelopes, as a JSON array or one per line.",
            required=True,
        )


@dataclass
class OctetStream(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={
                "application/octet-stream": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING, content_media_type="application/octet-stream"
                    )
                )
            },
            description="The blob's bytes; their SHA-256 must equal the digest in the path.",
            required=True,
        )
