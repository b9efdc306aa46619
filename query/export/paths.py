"""Where an export lives, and the names of its files.

An export location is a local directory or any URI pyarrow's filesystems understand
(`s3://bucket/prefix`, `gs://…`, `hdfs://…`, `file:///…`). A plain `s3://bucket/prefix` is
reached with the service's S3 options (`PROV_S3_*`, shared with the blob store) when they
are given; a URI with a query (`?endpoint_override=…`) says everything itself. Inside it:

    manifests/export-000001.json
    decisions/tenant=acme/date=2025-06-02/part-000001-000000000000.parquet
    steps/tenant=acme/date=2025-06-02/part-000001-000000000000.parquet
    …

A data file is named after the export's sequence number and the log index of the first
entry in it, so names never collide within or across exports, and the files of one
segment (the rows of some entries of one partition) share a name in every table.

Partition values are escaped as Hive does, with `%XX` for any byte outside
``[A-Za-z0-9._-]`` and for a leading dot, so that no tenant can name a path outside its
partition; DuckDB, Spark and Trino unescape them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs  # type: ignore[import-untyped]

from ledger.blobs.stores.s3_options import S3Options, parse_s3_url
from query.export.schema import TABLES

MANIFEST_DIR = "manifests"
_MANIFEST = re.compile(r"export-(\d{6,})\.json")
_DATA = re.compile(
    r"(?P<table>[a-z_]+)/tenant=(?P<tenant>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"(?P<name>part-(?P<sequence>\d{6,})-(?P<first>\d{12,}))\.parquet"
)
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_ESCAPE = re.compile(r"%[0-9A-F]{2}")


@dataclass(frozen=True, slots=True)
class Location:
    """A filesystem and the base path of an export in it."""

    fs: Any
    base: str
    uri: str
    local: bool

    def path(self, relative: str) -> str:
        return f"{self.base}/{relative}" if relative else self.base


def open_location(uri: str, *, s3: S3Options | None = None) -> Location:
    """The export location named by a local path or a filesystem URI; ValueError if pyarrow
    knows no filesystem for it."""
    if "://" not in uri:
        local = pafs.LocalFileSystem()
        return Location(local, _local_base(uri), uri, local=True)
    if s3 is not None and uri.startswith("s3://") and "?" not in uri:
        return _s3_location(uri, s3)
    try:
        fs, base = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{uri}: {error}") from None
    return Location(fs, base.rstrip("/"), uri, local=isinstance(fs, pafs.LocalFileSystem))


def _s3_location(uri: str, s3: S3Options) -> Location:
    where = parse_s3_url(uri)  # its BadConfiguration is a ValueError
    s3.check()
    fs = pafs.S3FileSystem(
        access_key=s3.access_key_id,
        secret_key=s3.secret_access_key,
        region=s3.region,
        endpoint_override=s3.endpoint,  # with its scheme: pyarrow takes http:// from it
        connect_timeout=s3.connect_timeout_s,
        request_timeout=s3.read_timeout_s,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=s3.max_retries + 1),
    )
    base = f"{where.bucket}/{where.prefix}" if where.prefix else where.bucket
    return Location(fs, base, uri, local=False)


def _local_base(path: str) -> str:
    return Path(path).expanduser().resolve().as_posix()


def escape_value(value: str) -> str:
    """A partition value as a path segment: never `.` or `..`, and without `/` or `=`."""
    if not value:
        raise ValueError("a partition value cannot be empty")
    escaped = "".join(
        char if _SAFE.fullmatch(char) else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in value
    )
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    return escaped


def unescape_value(segment: str) -> str:
    """The inverse of `escape_value`; ValueError for a malformed escape."""
    raw = bytearray()
    position = 0
    while position < len(segment):
        if segment[position] == "%":
            if not _ESCAPE.match(segment, position):
                raise ValueError(f"bad escape in partition value {segment!r}")
            raw.append(int(segment[position + 1 : position + 3], 16))
            position += 3
        else:
            raw += segment[position].encode()
            position += 1
    return raw.decode()


@dataclass(frozen=True, slots=True)
class DataPath:
    table: str
    tenant: str
    day: date
    sequence: int
    first_index: int

    @property
    def name(self) -> str:
        return f"part-{self.sequence:06d}-{self.first_index:012d}"

    @property
    def partition_dir(self) -> str:
        return f"tenant={escape_value(self.tenant)}/date={self.day.isoformat()}"

    def __str__(self) -> str:
        return f"{self.table}/{self.partition_dir}/{self.name}.parquet"


def parse_data_path(relative: str) -> DataPath:
    """The parts of a data file's relative path; ValueError unless the path is exactly as
    the exporter writes it."""
    match = _DATA.fullmatch(relative)
    if match is None or match["table"] not in TABLES:
        raise ValueError(f"{relative!r} is not a data file of an export")
    parsed = DataPath(
        match["table"],
        unescape_value(match["tenant"]),
        date.fromisoformat(match["date"]),
        int(match["sequence"]),
        int(match["first"]),
    )
    if str(parsed) != relative:
        raise ValueError(f"{relative!r} is not written the way the exporter writes it")
    return parsed


def manifest_path(sequence: int) -> str:
    return f"{MANIFEST_DIR}/export-{sequence:06d}.json"


def parse_manifest_name(name: str) -> int | None:
    """The sequence number of a manifest file name, or None for any other name."""
    match = _MANIFEST.fullmatch(name)
    if match is None or manifest_path(int(match[1])) != f"{MANIFEST_DIR}/{name}":
        return None
    return int(match[1])


def list_files(location: Location, under: str = "") -> list[str]:
    """Every file in the location (or in its folder `under`), as paths relative to the
    location, sorted; none where nothing exists yet."""
    selector = pafs.FileSelector(location.path(under), recursive=True, allow_not_found=True)
    prefix = location.base.rstrip("/") + "/"
    return sorted(
        info.path.removeprefix(prefix)
        for info in location.fs.get_file_info(selector)
        if info.type == pafs.FileType.File
    )


def read_bytes(location: Location, relative: str) -> bytes:
    with location.fs.open_input_stream(location.path(relative)) as stream:
        data: bytes = stream.read()
    return data


def write_bytes(location: Location, relative: str, data: bytes) -> None:
    path = location.path(relative)
    location.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with location.fs.open_output_stream(path) as stream:
        stream.write(data)


def delete_file(location: Location, relative: str) -> None:
    location.fs.delete_file(location.path(relative))
