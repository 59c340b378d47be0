"""Reading a journal segment back: every row it can, and what it skipped and why.

A segment file numbered `seq` holds, in order: this use's lines (``<seq>\\t<row>``), then
possibly what is left of an earlier use of the recycled file (a fragment of one line, then
lines tagged with older numbers), never read. Files written before tags hold rows that start
with ``{`` and no tag. A crash can tear this use's last line.

Anything else is damage (a disk error, a person's editor, a bad block) and is said, line by
line: a line inside this use's part whose tag is damaged is kept when what follows its first tab
is a row (a damaged first byte makes ``{`` of ``1``, say); a complete line that is not a valid
row is *poison*: set aside (``<seq>.rejected``) rather than retried against the database
forever; a file with none of this use's lines and lines of no use at all is reported too.
Replaying a line twice is harmless (the database skips a uid it has), so when in doubt a line
is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from probe.store.mapping import BadValue, Row, line_row, line_uid

_TAG: Final = re.compile(rb"(\d{1,19})\t\{")


@dataclass(frozen=True)
class Skipped:
    """A line of a segment that was not replayed."""

    line: int
    """1-based line number in the file."""
    reason: str
    data: bytes
    uid: str | None = None
    poison: bool = False
    """A complete line that is not a row: kept in ``.rejected`` for a person to look at."""


@dataclass
class Contents:
    rows: list[Row] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    kept_damaged: list[int] = field(default_factory=list)
    """Line numbers whose tag was damaged but whose row was whole, and kept."""
    tagged: bool = True
    """Holds this use's tagged lines (or nothing): the file can be recycled."""
    candidates: int = 0
    """Complete lines that should be rows (what `count` says before they are parsed)."""


def read_segment(path: Path, seq: int, *, parse: bool = True) -> Contents:
    """The rows of segment file `path` numbered `seq`; with `parse` False only how many
    complete candidate lines it holds (`candidates`) and whether it is `tagged`.

    Raises OSError if the file cannot be read.
    """
    data = path.read_bytes()
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    tag = b"%d\t" % seq
    last_own = 0  # line number of this use's last line
    for number in range(len(lines), 0, -1):
        if lines[number - 1].startswith(tag):
            last_own = number
            break
    out = Contents(tagged=last_own > 0 or not data)
    legacy = last_own == 0 and data[:1] == b"{"
    # No line of this use and none of an earlier one: the file is not a journal any more.
    garbage = not last_own and not legacy and not any(_older(line, seq) for line in lines)
    last = last_own or (len(lines) if legacy else 0)
    for number, line in enumerate(lines, 1):
        tail = not legacy and not garbage and number > last_own  # an earlier use's bytes
        body, damaged = _body(line, tag, seq, tail=tail, legacy=legacy)
        if body is None:
            if damaged:
                out.skipped.append(Skipped(number, damaged, line, line_uid(line), poison=True))
            continue
        complete = body.endswith(b"\n")
        if complete:
            out.candidates += 1
        if not parse:
            continue
        try:
            out.rows.append(line_row(body))
        except ValueError as exc:
            if tail:
                continue  # an earlier use's fragment, not a row: expected, not ours
            if not complete or (number == last and not isinstance(exc, BadValue)):
                # The process died while writing it (a recycled file's old bytes may follow).
                out.skipped.append(Skipped(number, f"torn ({exc})", body, line_uid(body)))
            else:
                reason = f"{damaged}; {exc}" if damaged else str(exc)
                out.skipped.append(Skipped(number, reason, body, line_uid(body), poison=True))
            continue
        if damaged:
            out.kept_damaged.append(number)
    return out


def _older(line: bytes, seq: int) -> bool:
    old = _TAG.match(line)
    return old is not None and int(old[1]) < seq


def _body(line: bytes, tag: bytes, seq: int, *, tail: bool, legacy: bool) -> tuple[bytes | None, str]:
    """(the row part of `line`, or None to skip it; why the line is damaged, if it is)."""
    if line.startswith(tag):
        return line[len(tag) :], ""
    if legacy:
        return (line, "") if line.startswith(b"{") else (None, "not a journal line")
    if tail:
        # An earlier use's lines and fragments, or this use's last line with a damaged tag:
        # a row after the first tab is taken (an old row is harmless: its uid is in the
        # database), the rest skipped without a word, since that is what recycling leaves.
        return (None, "") if _older(line, seq) else (_row_part(line), "")
    # Among this use's lines (or in a file with none): the tag is damaged.
    body = _row_part(line)
    return body, "damaged sequence tag" if body is not None else "not a journal line"


def _row_part(line: bytes) -> bytes | None:
    """Where a row may start in a line whose tag is not right: the line itself if it starts
    like one (the tag is gone), else what follows the first tab (a first byte turned into
    "{" leaves ``{\t{"uid"...``)."""
    if line.startswith(b'{"'):
        return line
    tab = line.find(b"\t")
    return line[tab + 1 :] if tab >= 0 and line[tab + 1 : tab + 3] == b'{"' else None
