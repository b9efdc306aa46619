"""The one way `prov` reads a time from the command line.

Every option that takes a time (`--expires`, `--not-before`, `--valid-from`,
`--valid-until`, `--from`, `--to`, `--since`, `--until`, `--at`) accepts RFC 3339: a date
and a time with `Z` or an offset (`2026-03-01T09:30:00+02:00`). Two shorter spellings are
accepted because people type them, and both mean UTC: a time without an offset
(`2026-03-01T09:30`) and a bare date (`2026-03-01`, midnight). A space may stand for `T`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    _ParamType = click.ParamType[datetime, Any]
else:  # generic only from click 8.3; the project allows 8.1
    _ParamType = click.ParamType

# RFC 3339 `date-time`, with the offset and the seconds optional (both explained above);
# anything else ISO 8601 allows (week dates, basic format, hour-only offsets) is refused.
_RFC3339 = re.compile(
    r"""
    (?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})
    (?:
        [Tt\x20]
        (?P<time>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?)
        (?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?
    )?
    """,
    re.VERBOSE | re.ASCII,
)

TIME_HELP = "RFC 3339, e.g. 2026-03-01T09:30:00+02:00; UTC without an offset"


def parse_time(text: str) -> datetime:
    """An aware datetime from RFC 3339 text; `ValueError` naming the accepted forms."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not an RFC 3339 time (e.g. 2026-03-01T09:30:00Z, "
            "2026-03-01T09:30:00+02:00 or 2026-03-01)"
        )
    moment_text = match["date"]
    if match["time"] is not None:
        clock = match["time"]
        if "." in clock:
            # Python keeps microseconds; RFC 3339 allows any number of fraction digits.
            whole, fraction = clock.split(".")
            clock = f"{whole}.{fraction[:6].ljust(6, '0')}"
        moment_text += f"T{clock}"
    offset = match["offset"]
    try:
        moment = datetime.fromisoformat(moment_text)
    except ValueError as error:  # 2026-02-30, 25:00 and the like
        raise ValueError(f"{text!r} is not a valid time: {error}") from None
    if offset is None or offset in "Zz":
        return moment.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(f"{moment_text}{offset}")
    except ValueError:  # an offset of +24:00 or more
        raise ValueError(f"{text!r} has an offset out of range: {offset}") from None


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with `Z`, as the server and the query filters read it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Moment(_ParamType):
    """A click parameter type for `parse_time`: a bad time is a usage error (exit 2)."""

    name = "time"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            return parse_time(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


TIME = Moment()
