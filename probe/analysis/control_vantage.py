"""The control vantage's own verdict: it is the comparison, so it can never be censored.

A control vantage sits outside censorship by configuration: when it fails to reach a target,
that is either the target being down (the other vantages fail the same way) or something of
its own we cannot name (`inconclusive`); never a `*_blocked`, `tls_mitm` or `throttled`
verdict, which would blame a censor the configuration says is not there.

Pure, like `probe.analysis.verdict`: observations in, an `Analysis` out.
"""

from __future__ import annotations

from collections.abc import Sequence

from probe.analysis.verdict import connectivity_failure, same_failure, vantage_wide
from probe.model import Analysis, Measurement


def analyze_control_vantage(
    m: Measurement, *, controls: Sequence[Measurement] = (), peers: Sequence[Measurement] = ()
) -> Analysis:
    """Judge measurement `m`, taken at a control vantage.

    `controls`: the control targets measured at the same (control) vantage in the same round.
    `peers`: the same target measured at the other vantages in the same round.

    - every step succeeded: `ok`;
    - the target and every control target failed: `vantage_down` (name resolution died too)
      or `inconclusive`, as for any vantage;
    - the target failed and some peer failed the same way (same step, same kind of failure)
      while no peer reached it: `target_down`;
    - otherwise: `inconclusive`.
    """
    op, failure = connectivity_failure(m)
    if op is None:
        return Analysis(
            "ok", None, None, f"every step for {m.target} succeeded at the control vantage", accessible=True
        )
    wide = vantage_wide(op, failure, controls, None)
    if wide is not None:
        return wide
    outcomes = [(p.vantage, connectivity_failure(p)) for p in peers if p.target == m.target]
    same = sorted(v for v, outcome in outcomes if same_failure((op, failure), outcome))
    reached = sorted(v for v, (p_op, _) in outcomes if p_op is None)
    if same and not reached:
        return Analysis(
            "target_down",
            op,
            failure,
            f"the control vantage failed at {op} ({failure}) and so did {', '.join(same)}: "
            "the target is down",
            accessible=False,
        )
    if reached:
        why = f"{', '.join(reached)} reached it: a problem of the control vantage, not a block"
    elif outcomes:
        why = (
            "the other vantages failed differently: a control vantage is not censored, so no block is claimed"
        )
    else:
        why = "no other vantage measured it to tell an outage from a problem of the control vantage"
    return Analysis("inconclusive", op, failure, f"the control vantage failed at {op} ({failure}); {why}")
