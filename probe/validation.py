"""Validated YAML files (config, lab scenarios): one way to read them and one way to word
their errors, so every bad file is reported as ``FILE: key.path[0].name: what is wrong``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

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
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        # Checks over the whole document carry no key path; they name their key themselves.
        where = f"{key_path(loc)}: " if loc else ""
        raise error(f"{source}: {where}{message}") from None


def read_yaml(path: Path, error: type[Exception]) -> Any:
    """Parse a YAML file; raise `error` naming the file (and the line) when it cannot."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise error(f"{path}: not valid YAML{where}") from None
