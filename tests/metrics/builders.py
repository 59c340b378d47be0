"""Hand-made results for the metrics tests: a measurement (see tests.analysis.builders) and a verdict.

    result("facebook", "tls_blocked", tls_failure="connection_reset")

The analysis is written by hand, not computed, so these tests depend on the metrics alone.
"""

from __future__ import annotations

from typing import Any

from probe.model import Analysis, Measurement, Result, Verdict
from tests.analysis.builders import STARTED, measurement, throughput

VANTAGE = "kz-kazakhtelecom"
__all__ = ["STARTED", "VANTAGE", "analysis", "labels", "result", "throughput"]


def analysis(verdict: Verdict = "ok") -> Analysis:
    return Analysis(verdict, None, None, f"hand-made: {verdict}")


def result(
    target: str = "facebook", verdict: Verdict = "ok", *, vantage: str = VANTAGE, **steps: Any
) -> Result:
    """A result for (vantage, target) with `verdict`; `steps` go to tests.analysis.builders.measurement."""
    m: Measurement = measurement(target, vantage=vantage, **steps)
    return Result(m, analysis(verdict))


def labels(target: str = "facebook", vantage: str = VANTAGE, **more: str) -> dict[str, str]:
    return {"vantage": vantage, "target": target, **more}
