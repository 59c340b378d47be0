"""One round: every (vantage, target) probed concurrently, then each judged against its controls.

Analysis needs the whole round: the control targets at the same vantage and the same target at
a control vantage are measured at the same time as the target they vouch for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from probe.analysis.control_vantage import analyze_control_vantage
from probe.analysis.fingerprints import Fingerprints, default_fingerprints
from probe.analysis.verdict import analyze
from probe.clock import SYSTEM_CLOCK, Clock
from probe.config import Config, Target, Vantage
from probe.engine import measure
from probe.model import Measurement, Result
from probe.vantage import vantage_network

DEFAULT_CONCURRENCY = 64


async def measure_pairs(
    config: Config,
    pairs: Sequence[tuple[Vantage, Target]],
    clock: Clock = SYSTEM_CLOCK,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[Measurement]:
    """Measure each (vantage, target) with at most `concurrency` probes in flight."""
    gate = asyncio.Semaphore(concurrency)
    networks = {v.name: vantage_network(v, config) for v in config.vantages}

    async def one(vantage: Vantage, target: Target) -> Measurement:
        async with gate:
            return await measure(target, networks[vantage.name], config.probe, clock)

    return list(await asyncio.gather(*(one(v, t) for v, t in pairs)))


def judge(
    config: Config,
    measurements: Sequence[Measurement],
    fingerprints: Fingerprints | None = None,
    baselines: dict[tuple[str, str], float] | None = None,
) -> list[Result]:
    """Analyse each measurement against the others of the same round."""
    fps = fingerprints if fingerprints is not None else default_fingerprints()
    control_targets = {t.name for t in config.targets if t.control}
    control_vantages = [v.name for v in config.vantages if v.control]
    by_pair = {(m.vantage, m.target): m for m in measurements}
    results = []
    for m in measurements:
        controls = [
            by_pair[(m.vantage, name)]
            for name in sorted(control_targets)
            if name != m.target and (m.vantage, name) in by_pair
        ]
        if not controls and m.target in control_targets:
            # A lone control target is vouched for by whatever else the vantage reached.
            controls = [o for o in measurements if o.vantage == m.vantage and o.target != m.target]
        if m.vantage in control_vantages:
            # The comparison itself: judged against the other vantages, never "blocked".
            peers = [o for o in measurements if o.target == m.target and o.vantage not in control_vantages]
            results.append(Result(m, analyze_control_vantage(m, controls=controls, peers=peers)))
            continue
        reference = next(
            (by_pair[(cv, m.target)] for cv in control_vantages if (cv, m.target) in by_pair), None
        )
        baseline = (baselines or {}).get((m.vantage, m.target))
        analysis = analyze(
            m, controls=controls, control_vantage=reference, fingerprints=fps, baseline_bps=baseline
        )
        results.append(Result(m, analysis))
    return results


async def run_round(config: Config, clock: Clock = SYSTEM_CLOCK) -> list[Result]:
    """Probe every vantage x target once and judge the results."""
    pairs = [(v, t) for v in config.vantages for t in config.targets]
    measurements = await measure_pairs(config, pairs, clock)
    return judge(config, measurements)
