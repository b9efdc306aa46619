"""An incremental decoder for server-sent events (the WHATWG ``text/event-stream`` format).

Both streaming wire formats use it: OpenAI-compatible servers send ``data:`` lines ending
with ``data: [DONE]``, Anthropic sends ``event:`` and ``data:`` pairs. Network chunks cut
the stream anywhere, inside a line, inside a UTF-8 sequence, or between the ``\\r`` and
``\\n`` of a CRLF, so the decoder keeps state across `feed` calls and owns its UTF-8
decoding rather than trusting a line iterator.

One leniency over the specification: `close` dispatches an event still being built when
the stream ends without its blank line, because some servers close right after their
last ``data:`` line and dropping that event would lose the end of an answer.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    data: str
    event: str | None = None
    id: str | None = None


class SseDecoder:
    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._started = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by this chunk, in order."""
        self._buffer += self._utf8.decode(chunk)
        if not self._started and self._buffer:
            self._started = True
            self._buffer = self._buffer.removeprefix("\ufeff")
        return self._drain(final=False)

    def close(self) -> list[SseEvent]:
        """The end of the stream: flush a last unterminated line and a pending event."""
        self._buffer += self._utf8.decode(b"", final=True)
        events = self._drain(final=True)
        if self._buffer:
            event = self._line(self._buffer)
            self._buffer = ""
            if event is not None:
                events.append(event)
        pending = self._dispatch()
        if pending is not None:
            events.append(pending)
        return events

    def _drain(self, *, final: bool) -> list[SseEvent]:
        events: list[SseEvent] = []
        position = 0
        while True:
            match = _EOL.search(self._buffer, position)
            if match is None:
                break
            # A lone CR at the end may be the first half of a CRLF still in transit.
            if match.group() == "\r" and match.end() == len(self._buffer) and not final:
                break
            event = self._line(self._buffer[position : match.start()])
            if event is not None:
                events.append(event)
            position = match.end()
        self._buffer = self._buffer[position:]
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, used as a keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored, as the spec says

    def _dispatch(self) -> SseEvent | None:
        if not self._data:
            self._event = None
            return None
        event = SseEvent(data="\n".join(self._data), event=self._event, id=self._id)
        self._data = []
        self._event = None
        return event
