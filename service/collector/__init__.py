"""`prov collector`: an OTLP/HTTP receiver beside one service that holds the service's key
(docs/collector.md).

`config` checks what it is told, `spool` opens its data directory (the span store and its
lock), `forward` signs assembled decisions with the service key and sends them with the
SDK, `app` is the HTTP app and its assembler, and `run` serves it under uvicorn.
"""
