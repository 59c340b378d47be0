"""What asking the test helpers gave, as data: the answer (or none) and each failed attempt
with its reason. Apart from the client that makes them, so that the control's analysis
(`probe.control`, `probe.analysis.replay`) reads them without loading an HTTP client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from probe.helper.protocol import THResponse

Reason = Literal["timeout", "unreachable", "http_status", "too_large", "bad_answer"]
"""Why an attempt failed: the deadline passed; no connection (refused, reset, TLS, DNS); an
HTTP status other than 200 (401/403 for a wrong token); an answer over the size cap; an answer
that is not a THResponse."""
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)


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
