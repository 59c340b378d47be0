"""Blocking fingerprints: known censor blockpages, redirects and DNS answers.

The format follows ooni/blocking-fingerprints: each fingerprint has a `name`, a `scope`
(nat, isp, prod, inst, vbw, or fp for a known false positive), a `location` (``body``,
``header.<name>`` or ``dns``), a `pattern_type` (full, prefix, contains, regexp), a
`pattern` and the `expected_countries`. The bundled set lives in
``probe/data/fingerprints.yaml``; `default_fingerprints()` loads it once.

Matching is pure: it reads an `HttpObservation` (its `body_sample` and headers) or a tuple
of DNS answers and returns the first matching fingerprint, or None.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from probe.model import HttpObservation

Scope = Literal["nat", "isp", "prod", "inst", "vbw", "fp"]
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
        # `re` keeps its own cache of compiled patterns, so this does not recompile each time.
        return re.search(self.pattern, value) is not None


class Fingerprints:
    """An ordered, validated collection of fingerprints with HTTP and DNS matchers."""

    def __init__(self, items: Iterable[Fingerprint]) -> None:
        self._items = tuple(items)
        seen: set[str] = set()
        for fp in self._items:
            if fp.name in seen:
                raise FingerprintError(f"duplicate fingerprint name {fp.name!r}")
            seen.add(fp.name)

    def __iter__(self) -> Iterator[Fingerprint]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str) -> Fingerprint | None:
        return next((fp for fp in self._items if fp.name == name), None)

    def match_http(self, obs: HttpObservation) -> Fingerprint | None:
        """Return the first fingerprint matching the response's body sample or headers.

        Fingerprints of scope ``fp`` (known false positives) are never returned.
        """
        for fp in self._items:
            if fp.scope == "fp" or fp.location == "dns":
                continue
            if fp.location == "body":
                if obs.body_sample is not None and fp.matches(obs.body_sample):
                    return fp
                continue
            header = fp.header
            assert header is not None  # location validated: body, dns or header.<name>
            # A header may repeat (Set-Cookie, Via): any occurrence counts.
            for key, value in obs.headers:
                if key.lower() == header and fp.matches(value):
                    return fp
        return None

    def match_dns(self, answers: Iterable[str]) -> Fingerprint | None:
        """Return the first ``dns`` fingerprint matching any answer (an IP or a CNAME)."""
        values = tuple(answers)
        for fp in self._items:
            if fp.scope == "fp" or fp.location != "dns":
                continue
            if any(fp.matches(value) for value in values):
                return fp
        return None


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
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise FingerprintError(f"{source}: not valid YAML") from None
    return parse_fingerprints(data, source)


@cache
def default_fingerprints() -> Fingerprints:
    """The bundled fingerprint set, loaded and validated once per process."""
    return load_fingerprints()
