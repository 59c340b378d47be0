"""OONI measurement files, streamed: JSON lines (plain or gzip), one JSON document, or stdin.

`records(paths)` yields one `Line` per measurement, in file order, holding either the parsed
object or why it could not be parsed; nothing is held beyond the line being read, so a file of
any size is read in constant memory. A file whose first line is a bare ``{`` or ``[`` is one
pretty-printed JSON document (a measurement, or a list of them) and is read whole, up to
`MAX_DOCUMENT_BYTES`: OONI's API serves single measurements that way.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

import orjson

MAX_DOCUMENT_BYTES: Final = 256 * 1024 * 1024
GZIP_MAGIC: Final = b"\x1f\x8b"


@dataclass(frozen=True)
class Line:
    """One measurement's place in its file and its content (`error` set when unreadable)."""

    source: str
    number: int
    record: dict[str, Any] | None
    error: str | None = None


class Progress:
    """Bytes read so far (of the file as stored, so gzip progress counts compressed bytes)."""

    def __init__(self) -> None:
        self.bytes_read = 0
        self.bytes_total = 0


def _open(path: str) -> IO[bytes]:
    if path == "-":
        stdin = sys.stdin.buffer
        peek = getattr(stdin, "peek", None)
        if peek is not None and peek(2)[:2] == GZIP_MAGIC:  # `zcat` not needed: gzip on stdin too
            return gzip.GzipFile(fileobj=stdin, mode="rb")  # type: ignore[return-value]
        return stdin
    raw = open(path, "rb")  # noqa: SIM115  # closed by the caller through the gzip wrapper or itself
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw


def _raw(stream: IO[bytes]) -> IO[bytes]:
    inner = getattr(stream, "fileobj", None)
    return inner if inner is not None else stream


def _parse(source: str, number: int, text: bytes) -> Line:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Line(source, number, None, f"not JSON ({exc.args[0].split(':')[0]})")
    if not isinstance(value, dict):
        return Line(source, number, None, f"not a measurement (a JSON {type(value).__name__})")
    return Line(source, number, value)


def _document(source: str, first: bytes, stream: IO[bytes]) -> Iterator[Line]:
    text = first + stream.read(MAX_DOCUMENT_BYTES)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        yield Line(source, 1, None, f"not a JSON document ({exc.args[0].split(':')[0]})")
        return
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items, 1):
        if isinstance(item, dict):
            yield Line(source, index, item)
        else:
            yield Line(source, index, None, f"not a measurement (a JSON {type(item).__name__})")


def read_file(path: str, progress: Progress | None = None) -> Iterator[Line]:
    """The measurements in one file (`-`: standard input). Raises OSError if it cannot be
    opened or read (a corrupt gzip stream included)."""
    source = "<stdin>" if path == "-" else path
    stream = _open(path)
    raw = _raw(stream)
    try:
        if progress is not None and path != "-":
            raw.seek(0, 2)
            progress.bytes_total += raw.tell()
            raw.seek(0)
        base = progress.bytes_read if progress is not None else 0
        number = 0
        for line in stream:
            number += 1
            if progress is not None and path != "-":
                progress.bytes_read = base + raw.tell()
            text = line.strip()
            if not text:
                continue
            if number == 1 and text in (b"{", b"["):
                yield from _document(source, line, stream)
                return
            yield _parse(source, number, text)
    except EOFError as exc:  # gzip: the stream ends before its end marker (a truncated download)
        raise OSError(f"{source}: truncated gzip file ({exc})") from None
    except gzip.BadGzipFile as exc:
        raise OSError(f"{source}: {exc}") from None
    finally:
        if path != "-":
            stream.close()
            raw.close()
