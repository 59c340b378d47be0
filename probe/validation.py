"""Validated YAML files (config, lab scenarios): one way to read them and one way to word
their errors, so every bad file is reported as ``FILE: key.path[0].name: what is wrong``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from probe.redaction import redact, redact_url

M = TypeVar("M", bound=BaseModel)


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("vantages", 0, "resolver")`` -> ``vantages[0].resolver``.

    >>> key_path(("vantages", 0, "resolver"))
    'vantages[0].resolver'
    """
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(model: type[M], data: Any, source: str, error: type[Exception]) -> M:
    """Validate parsed YAML against `model`; raise `error` with one line naming the key."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise error(f"{source}: nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        # Checks over the whole document carry no key path; they name their key themselves.
        where = f"{key_path(loc)}: " if loc else ""
        # A value quoted back may be a URL pasted in the wrong place, password and all.
        value = first.get("input")
        if isinstance(value, str) and "@" in value and value in message:
            message = message.replace(value, redact_url(value) if "://" in value else "***")
        raise error(f"{source}: {where}{redact(message)}") from None


def read_yaml(path: Path, error: type[Exception]) -> Any:
    """Parse a YAML file; raise `error` naming the file (and the line) when it cannot."""
    try:
        # At most MAX_BYTES + 1: /dev/zero must not fill the memory (a pipe, /dev/stdin, is fine).
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the name
        raise error(f"{path}: cannot read: not a valid path") from None
    if len(raw) > MAX_BYTES:
        raise error(f"{path}: larger than {MAX_BYTES // 1024 // 1024} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise error(f"{path}: not valid YAML{where}") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply") from None
    except Exception as exc:  # a constructor's own error: an int of 5,000 digits, a bad date
        raise error(f"{path}: not valid YAML ({type(exc).__name__})") from None
    if _depth(data) > MAX_DEPTH:
        # A config is a few levels deep; hundreds of levels would only exhaust the stack later.
        raise error(f"{path}: nested more than {MAX_DEPTH} levels deep")
    return data


MAX_DEPTH = 32
MAX_BYTES = 16 * 1024 * 1024
"""A config or a scenario is a few kilobytes; this bounds the time and memory a wrong file costs."""


def _depth(data: Any) -> int:
    """How deeply lists and mappings nest, without recursion (YAML may nest thousands deep).

    >>> _depth({"a": [1, {"b": 2}]})
    3
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen: set[int] = set()
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if id(item) in seen:  # aliases may share, or even contain, a node
                continue
            seen.add(id(item))
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest
