"""The C2SP tlog-tiles read API: the log as immutable, cacheable tiles of hashes and entries.

Standard transparency-log clients and witnesses follow the log through these paths, which
expose hashes and entry bytes, never payloads:

    tile/<L>/<N>[.p/<W>]        hashes of the tree's nodes at height 8·L, indexes 256·N on
    tile/entries/<N>[.p/<W>]    the entries 256·N on, each as a big-endian uint16 length
                                and the entry bytes, whose leaf is SHA-256(0x00 || entry)

`N` is written in groups of three digits, all but the last prefixed with `x`
(1234067 is `x001/x234/067`). A full tile has 256 members and never changes; a partial
tile (`.p/W`, 1 ≤ W ≤ 255) is served once the tree holds at least W of that tile's
members, so that a client following a checkpoint can fetch the tree's right edge.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from sqlalchemy import Connection

from ledger.errors import BadRequest, NotFound
from ledger.log.store import fetch_required_nodes, read_entries, rebuild_entries

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
# Tree heights above 63 cannot hold a node in a log with a 64-bit size.
MAX_LEVEL = 63 // TILE_HEIGHT
SPEC_MAX_LEVEL = 63  # the highest <L> a tile path may spell, per tlog-tiles
# [0-9], not \d: the spec's numbers are ASCII decimal, and \d matches any Unicode digit.
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_GROUP = re.compile(r"x[0-9]{3}")
_LAST = re.compile(r"[0-9]{3}")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_LENGTH = struct.Struct(">H")
# Every 64-bit index is spelled in at most 7 segments (20 digits); a longer one, however
# canonical, names a tile no log can have, and int() never sees its thousands of digits.
_MAX_GROUPS = 6


@dataclass(frozen=True, slots=True)
class Tile:
    level: int | None  # None: an entry bundle
    index: int
    width: int  # TILE_WIDTH for a full tile

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH


def encode_index(index: int) -> str:
    """`N` as its path segments: 1234067 -> `x001/x234/067`."""
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    return "/".join(["x" + group for group in reversed(groups[1:])] + [groups[0]])


def tile_path(tile: Tile) -> str:
    level = "entries" if tile.level is None else str(tile.level)
    suffix = "" if tile.full else f".p/{tile.width}"
    return f"tile/{level}/{encode_index(tile.index)}{suffix}"


def parse_tile_path(path: str) -> Tile:
    """Parse what follows `tile/`; only the canonical spelling of a tile is accepted."""
    segments = path.strip("/").split("/")
    if len(segments) < 2:
        raise _bad(path)
    level_text, *rest = segments
    level: int | None
    if level_text == "entries":
        level = None
    elif _LEVEL.fullmatch(level_text) and int(level_text) <= SPEC_MAX_LEVEL:
        level = int(level_text)
    else:
        raise _bad(path)
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise _bad(path)
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2].removesuffix(".p")]
    *groups, last = rest
    if not _LAST.fullmatch(last) or not all(_GROUP.fullmatch(group) for group in groups):
        raise _bad(path)
    if groups and groups[0] == "x000":
        raise _bad(path)  # padding: not the canonical spelling
    if len(groups) > _MAX_GROUPS or (level is not None and level > MAX_LEVEL):
        # A well-formed path to a tile that no log with a 64-bit size can have: absent.
        raise NotFound(f"tile/{path[:100]} cannot exist in a log with a 64-bit size")
    index = int("".join(group[1:] for group in groups) + last)
    tile = Tile(level, index, width)
    if tile_path(tile) != f"tile/{path.strip('/')}":  # no x000 padding, no leading zeros
        raise _bad(path)
    return tile


def read_tile(connection: Connection, tile: Tile, tree_size: int) -> bytes:
    """The tile's bytes for a tree of `tree_size` entries; NotFound if it is not complete."""
    height = 0 if tile.level is None else tile.level * TILE_HEIGHT
    start = tile.index * TILE_WIDTH
    end = start + tile.width
    if end > tree_size >> height:
        raise NotFound(f"{tile_path(tile)} is not in the tree of size {tree_size}")
    if tile.level is None:
        return _entry_bundle(connection, start, end)
    if height == 0:
        return b"".join(entry.leaf_hash for entry in read_entries(connection, start, end))
    nodes = [(height, index) for index in range(start, end)]
    found = fetch_required_nodes(connection, set(nodes))
    return b"".join(found[node] for node in nodes)


def _entry_bundle(connection: Connection, start: int, end: int) -> bytes:
    bundle = bytearray()
    for entry in rebuild_entries(connection, start, end):
        bundle += _LENGTH.pack(len(entry.data)) + entry.data
    return bytes(bundle)


def _bad(path: str) -> BadRequest:
    return BadRequest(f"not a tile path: tile/{path[:100]}", pointer="/path")
