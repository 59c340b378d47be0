"""Blocking fingerprints: known censor blockpages, redirects and DNS answers.

The format follows ooni/blocking-fingerprints: each fingerprint has a `name`, a `scope`
(nat, isp, prod, inst, vbw, prov; fp for a known false positive, injb for a benign injection
such as a router's firmware-update notice), a `location` (``body``,
``header.<name>`` or ``dns``), a `pattern_type` (full, prefix, contains, regexp), a
`pattern` and the `expected_countries`. The bundled set lives in
``probe/data/fingerprints.yaml``; `default_fingerprints()` loads it once.

Matching is pure: it reads an `HttpObservation` (its `body_sample` and headers) or a tuple
of DNS answers and returns the first matching fingerprint (in file order), or None.
Fingerprints whose scope is in `NOT_EVIDENCE` are never returned: a match is not evidence of
censorship. With several hundred rows matched on every measurement, `Fingerprints` indexes them
once (per location, DNS ``full`` patterns in a dict, regexps precompiled) instead of
scanning the whole list per header.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Literal

import ahocorasick
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from probe.model import HttpObservation

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML has it: the bundled set (1,800 rows) loads in a tenth
of the time."""

Scope = Literal["nat", "isp", "prod", "inst", "vbw", "prov", "fp", "injb"]
# Scopes whose match says nothing about censorship: fp marks a known false positive, injb a
# benign injection (ooni/blocking-fingerprints' cl.injb_routerupdate: a router asking for a
# firmware update). Their rows are kept so the file mirrors upstream, but never matched.
NOT_EVIDENCE: frozenset[str] = frozenset({"fp", "injb"})
PatternType = Literal["full", "prefix", "contains", "regexp"]

_HEADER_NAME = re.compile(r"^header\.[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class FingerprintError(ValueError):
    """A fingerprint file that does not validate; the message names the entry and key."""


class Fingerprint(BaseModel):
    """One blocking fingerprint (see the module docstring for the fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    scope: Scope
    location: str
    pattern_type: PatternType
    pattern: str = Field(min_length=1)
    expected_countries: tuple[str, ...] = ()

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if value in ("body", "dns"):
            return value
        if _HEADER_NAME.match(value):
            # Header names are case-insensitive; store them lowercased so lookups are simple.
            return "header." + value.removeprefix("header.").lower()
        raise ValueError('expected "body", "dns" or "header.<name>"')

    @field_validator("expected_countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cc in value:
            if not re.fullmatch(r"[A-Z]{2}", cc):
                raise ValueError(f"expected ISO 3166 alpha-2 country codes, got {cc!r}")
        return value

    @model_validator(mode="after")
    def _regexp_compiles(self) -> Fingerprint:
        if self.pattern_type == "regexp":
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: not a valid regular expression: {exc}") from None
        return self

    @property
    def is_evidence(self) -> bool:
        """Whether a match is evidence of censorship (False for fp and injb scopes)."""
        return self.scope not in NOT_EVIDENCE

    @property
    def header(self) -> str | None:
        """The lowercased header name for ``header.<name>`` locations, else None."""
        return self.location.removeprefix("header.") if self.location.startswith("header.") else None

    def matches(self, value: str) -> bool:
        """Whether `value` (a body, a header value or a DNS answer) matches the pattern.

        >>> Fingerprint(name="x", scope="isp", location="body", pattern_type="contains",
        ...             pattern="blocked").matches("<h1>This site is blocked</h1>")
        True
        """
        if self.pattern_type == "full":
            return value == self.pattern
        if self.pattern_type == "prefix":
            return value.startswith(self.pattern)
        if self.pattern_type == "contains":
            return self.pattern in value
        return _compiled(self.pattern).search(value) is not None


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # `re`'s own cache holds 512 patterns and is shared with every other caller; keep ours.
    return re.compile(pattern)


class Fingerprints:
    """An ordered, validated collection of fingerprints with HTTP and DNS matchers."""

    def __init__(self, items: Iterable[Fingerprint]) -> None:
        self._items = tuple(items)
        self._by_name: dict[str, Fingerprint] = {}
        self._position: dict[str, int] = {}
        for i, fp in enumerate(self._items):
            if fp.name in self._by_name:
                raise FingerprintError(f"duplicate fingerprint name {fp.name!r}")
            self._by_name[fp.name] = fp
            self._position[fp.name] = i
        # Indexes over the evidence rows, each list in file order so "first match" is unchanged.
        evidence = [(i, fp) for i, fp in enumerate(self._items) if fp.is_evidence]
        self._body, self._headers = _by_location(fp for _, fp in evidence)
        self._fp_body, self._fp_headers = _by_location(fp for fp in self._items if fp.scope == "fp")
        # DNS: almost every row is a `full` IP or CNAME, so a dict answers those in O(1); the
        # file position decides between a full row and a rarer prefix/contains/regexp row.
        self._dns_full: dict[str, tuple[int, Fingerprint]] = {}
        self._dns_other: list[tuple[int, Fingerprint]] = []
        for i, fp in evidence:
            if fp.location != "dns":
                continue
            if fp.pattern_type == "full":
                self._dns_full.setdefault(fp.pattern, (i, fp))
            else:
                self._dns_other.append((i, fp))

    def __iter__(self) -> Iterator[Fingerprint]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str) -> Fingerprint | None:
        return self._by_name.get(name)

    def match_http(self, obs: HttpObservation) -> Fingerprint | None:
        """Return the fingerprint matching the body sample or a header, or None.

        Fingerprints of scope ``fp`` or ``injb`` (see `NOT_EVIDENCE`) are never returned. A
        specific fingerprint (nat, isp, prod, inst, prov) wins over a vague blocking word
        (``vbw``, e.g. "Access Denied"), then file order decides. A vague word alone is not
        trusted when a known false positive (scope ``fp``) matches the same response: the
        Censored Planet fp rows exist to veto exactly those (a CDN's own "Access Denied").
        """
        specific = self._first_http(obs, self._body, self._headers)
        if specific is not None and specific.scope != "vbw":
            return specific
        if specific is None:
            return None
        if self._first_http(obs, self._fp_body, self._fp_headers) is not None:
            return None
        return specific

    def _first_http(
        self,
        obs: HttpObservation,
        body_rows: _BodyRows,
        header_rows: dict[str, _HeaderRows],
    ) -> Fingerprint | None:
        """The best match among the given rows: non-vbw before vbw, then file order."""
        found: list[Fingerprint] = []
        if obs.body_sample is not None:
            found += body_rows.find(obs.body_sample)
        # A header may repeat (Set-Cookie, Via): any occurrence counts.
        for key, value in obs.headers:
            rows = header_rows.get(key.lower())
            if rows is not None:
                found += rows.find(value)
        if not found:
            return None
        return min(found, key=lambda fp: (fp.scope == "vbw", self._position[fp.name]))

    def match_header(self, name: str, value: str) -> Fingerprint | None:
        """The first evidence row (file order) for header `name` that `value` matches.

        >>> fps = default_fingerprints()
        >>> fps.match_header("Location", "http://warning.rt.ru/?id=1") is not None
        True
        """
        rows = self._headers.get(name.lower())
        found = rows.find(value) if rows is not None else []
        return found[0] if found else None

    def match_dns(self, answers: Iterable[str]) -> Fingerprint | None:
        """Return the first ``dns`` fingerprint (file order) matching any answer (IP or CNAME)."""
        values = tuple(answers)
        found = [self._dns_full[value] for value in values if value in self._dns_full]
        found += [(i, fp) for i, fp in self._dns_other if any(fp.matches(v) for v in values)]
        return min(found, key=lambda pair: pair[0])[1] if found else None


class _Substrings:
    """The rows whose pattern occurs in a text, found in one pass over it (Aho-Corasick).

    Most body rows (about 1,250 of OONI's) are plain substrings: one substring search each
    cost ~0.6 ms on a 4 KB body, which halved `curfew import --ooni`'s rate; one scan of the
    body costs a few microseconds whatever the number of rows.
    """

    def __init__(self, rows: Iterable[tuple[str, Fingerprint]]) -> None:
        by_pattern: dict[str, list[Fingerprint]] = {}
        for pattern, fp in rows:
            by_pattern.setdefault(pattern, []).append(fp)
        self._automaton: Any = None
        if by_pattern:
            self._automaton = ahocorasick.Automaton()
            for pattern, fps in by_pattern.items():
                self._automaton.add_word(pattern, tuple(fps))
            self._automaton.make_automaton()

    def find(self, text: str) -> list[Fingerprint]:
        """Every row whose pattern occurs in `text`, each once.

        >>> row = Fingerprint(name="x", scope="isp", location="body", pattern_type="contains",
        ...                   pattern="blocked", expected_countries=("ZZ",))
        >>> [fp.name for fp in _Substrings([("blocked", row)]).find("is blocked, blocked")]
        ['x']
        >>> _Substrings([]).find("anything")
        []
        """
        if self._automaton is None:
            return []
        found: dict[str, Fingerprint] = {}
        for _, fps in self._automaton.iter(text):
            for fp in fps:
                found.setdefault(fp.name, fp)
        return list(found.values())


class _HeaderRows:
    """One header's rows (Location has ~400): a value that no row can match is turned away
    with a few C-level checks; only a value that matches something walks the rows in order."""

    def __init__(self, rows: Iterable[Fingerprint]) -> None:
        self.rows = tuple(rows)
        self._full = frozenset(fp.pattern for fp in self.rows if fp.pattern_type == "full")
        self._prefixes = tuple(fp.pattern for fp in self.rows if fp.pattern_type == "prefix")
        self._contains = _Substrings((fp.pattern, fp) for fp in self.rows if fp.pattern_type == "contains")
        self._regexps = tuple(fp for fp in self.rows if fp.pattern_type == "regexp")

    def find(self, value: str) -> list[Fingerprint]:
        """The rows `value` matches, in file order."""
        if not (
            value in self._full
            or value.startswith(self._prefixes)
            or self._contains.find(value)
            or any(fp.matches(value) for fp in self._regexps)
        ):
            return []
        return [fp for fp in self.rows if fp.matches(value)]


BODIES_KEPT = 256
"""Bodies whose matches a `_BodyRows` remembers (at most ~4 KB each: ~1 MB)."""


class _BodyRows:
    """The body rows: the `contains` rows in one automaton, and the other rows.

    A site answers the same page again and again, and a blockpage is the same at every
    probe, so `find` remembers the matches of the last `BODIES_KEPT` bodies (an LRU cache): a
    body seen before costs a dictionary lookup instead of a scan and the regexp rows (~90 us).
    """

    def __init__(self, contains: _Substrings, others: tuple[Fingerprint, ...]) -> None:
        self._contains = contains
        self._others = others
        self.find: Callable[[str], tuple[Fingerprint, ...]] = lru_cache(maxsize=BODIES_KEPT)(self._scan)

    def _scan(self, body: str) -> tuple[Fingerprint, ...]:
        """Every row `body` matches: the `contains` rows first, then the others in order.

        >>> row = Fingerprint(name="x", scope="isp", location="body", pattern_type="contains",
        ...                   pattern="blocked", expected_countries=("ZZ",))
        >>> rows = _BodyRows(_Substrings([("blocked", row)]), ())
        >>> [fp.name for fp in rows.find("blocked")], [fp.name for fp in rows.find("blocked")]
        (['x'], ['x'])
        """
        return (*self._contains.find(body), *(fp for fp in self._others if fp.matches(body)))


def _by_location(rows: Iterable[Fingerprint]) -> tuple[_BodyRows, dict[str, _HeaderRows]]:
    """Split HTTP rows into body rows and rows per lowercased header name."""
    contains: list[tuple[str, Fingerprint]] = []
    others: list[Fingerprint] = []
    headers: dict[str, list[Fingerprint]] = {}
    for fp in rows:
        if fp.location == "body" and fp.pattern_type == "contains":
            contains.append((fp.pattern, fp))
        elif fp.location == "body":
            others.append(fp)
        elif fp.header is not None:
            headers.setdefault(fp.header, []).append(fp)
    by_header = {name: _HeaderRows(fps) for name, fps in headers.items()}
    return _BodyRows(_Substrings(contains), tuple(others)), by_header


def parse_fingerprints(data: Any, source: str = "<fingerprints>") -> Fingerprints:
    """Validate parsed YAML (``{"fingerprints": [...]}``) into `Fingerprints`.

    Raises `FingerprintError` with a one-line message such as
    ``fingerprints.yaml: fingerprints[2].pattern_type: ...``.
    """
    if not isinstance(data, dict) or not isinstance(data.get("fingerprints"), list):
        raise FingerprintError(f"{source}: expected a mapping with a 'fingerprints' list")
    items: list[Fingerprint] = []
    for index, entry in enumerate(data["fingerprints"]):
        try:
            items.append(Fingerprint.model_validate(entry))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            where = f"fingerprints[{index}]" + (f".{key}" if key else "")
            message = err["msg"].removeprefix("Value error, ")
            raise FingerprintError(f"{source}: {where}: {message}") from None
    try:
        return Fingerprints(items)
    except FingerprintError as exc:
        raise FingerprintError(f"{source}: {exc}") from None


def load_fingerprints(text: str | None = None, source: str = "fingerprints.yaml") -> Fingerprints:
    """Load fingerprints from YAML `text`, or from the bundled package data when None."""
    if text is None:
        text = resources.files("probe").joinpath("data/fingerprints.yaml").read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError:
        raise FingerprintError(f"{source}: not valid YAML") from None
    return parse_fingerprints(data, source)


@cache
def default_fingerprints() -> Fingerprints:
    """The bundled fingerprint set, loaded and validated once per process."""
    return load_fingerprints()
