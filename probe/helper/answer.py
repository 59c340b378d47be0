"""What asking test helpers gives: the answer, or who failed and why. Pure records, no I/O.

They live apart from the client (probe.helper.client, which talks HTTP) so the pure core - the
control model (probe.control) and the analysis replaying stored controls - can name them
without reaching a network client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

from probe.helper.protocol import THResponse

Reason = Literal["timeout", "unreachable", "http_status", "too_large", "bad_answer"]
"""Why an attempt failed: the deadline passed; no connection (refused, reset, TLS, DNS); an
HTTP status other than 200 (401/403 for a wrong token); an answer over the size cap; an answer
that is not a THResponse."""
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)


@dataclass(frozen=True)
class HelperEndpoint:
    """One helper: its URL, an optional file holding a bearer token, and a short name for labels."""

    url: str
    token_file: Path | None = None
    name: str = ""

    @property
    def label(self) -> str:
        """The name, else the helper's host: a small fixed set, never a full URL."""
        return self.name or (urlsplit(self.url).hostname or "helper")


@dataclass(frozen=True)
class Attempt:
    helper: str  # HelperEndpoint.label
    reason: Reason
    detail: str  # for the log line; never a metric label


@dataclass(frozen=True)
class HelperAnswer:
    """The first helper's answer that worked, and the attempts that failed before it."""

    response: THResponse | None
    helper: str | None = None  # label of the helper that answered
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)

    @property
    def reason(self) -> Reason | None:
        """Why there is no answer: the last attempt's reason (None when there is an answer)."""
        if self.response is not None or not self.attempts:
            return None
        return self.attempts[-1].reason
