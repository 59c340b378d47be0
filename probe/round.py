"""One round: every (vantage, target) probed concurrently, then each judged against its controls.

Analysis needs the whole round: the control targets at the same vantage and the same target at
a control vantage are measured at the same time as the target they vouch for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from probe.analysis.control_vantage import analyze_control_vantage
from probe.analysis.fingerprints import Fingerprints, default_fingerprints
from probe.analysis.verdict import analyze
from probe.clock import SYSTEM_CLOCK, Clock
from probe.config import Config, Target, Vantage
from probe.control import from_helper, from_vantage, no_control, own_verdict
from probe.engine import measure
from probe.helper.answer import HelperAnswer
from probe.helper_pool import HelperPool
from probe.model import DnsObservation, Measurement, Result
from probe.vantage import VantageNetwork, vantage_network

DEFAULT_CONCURRENCY = 64
OnResolved = Callable[[Vantage, Target, DnsObservation | None], None]


async def measure_pairs(
    config: Config,
    pairs: Sequence[tuple[Vantage, Target]],
    clock: Clock = SYSTEM_CLOCK,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_resolved: OnResolved | None = None,
) -> list[Measurement]:
    """Measure each (vantage, target) with at most `concurrency` probes in flight.

    `on_resolved(vantage, target, dns)` is called as soon as a probe's name resolution is done
    (`engine.measure`'s hook), e.g. to ask a test helper while the probe goes on.
    """
    gate = asyncio.Semaphore(concurrency)
    networks = {v.name: vantage_network(v, config) for v in config.vantages}

    async def one(vantage: Vantage, target: Target) -> Measurement:
        hook = None
        if on_resolved is not None:

            def hook(dns: DnsObservation | None) -> None:
                on_resolved(vantage, target, dns)

        async with gate:
            return await measure(target, networks[vantage.name], config.probe, clock, on_resolved=hook)

    return list(await asyncio.gather(*(one(v, t) for v, t in pairs)))


def elsewhere(control: Measurement, others: Sequence[Measurement]) -> list[str]:
    """Addresses the other vantages resolved for the control's target that the control did not try.

    Only what a vantage's own resolver answered counts (not a proxy's stand-in host), in the
    order first seen.
    """
    tried = {obs.address for obs in control.tcp}
    out: dict[str, None] = {}
    for m in others:
        if m.target != control.target or m.dns is None or m.dns.engine == "proxy":
            continue
        for address in m.dns.answers:
            if address not in tried:
                out.setdefault(address)
    return list(out)


def with_reached(control: Measurement, extra: Measurement, addresses: Sequence[str]) -> Measurement:
    """`control` with `extra`'s TCP and TLS observations of `addresses` added.

    Their times are relative to `extra`'s start (a second pass after the round), which only
    matters for phase durations, and those come from the control's own connection.
    """
    wanted = set(addresses)
    tcp = tuple(o for o in extra.tcp if o.address in wanted)
    tls = tuple(o for o in extra.tls if o.address in wanted)
    return replace(control, tcp=control.tcp + tcp, tls=control.tls + tls)


async def reach(
    config: Config,
    network: VantageNetwork,
    control: Measurement,
    addresses: Sequence[str],
    clock: Clock = SYSTEM_CLOCK,
) -> Measurement:
    """What a helper does for a probe, done by a control vantage: connect and handshake (with
    the target's name) to `addresses` another vantage resolved, and add what it saw to `control`.

    The target is probed again without its bulk download; only the observations of
    `addresses` are kept, so the control's own steps stay those of its first probe.
    """
    target = config.target(control.target).model_copy(update={"throughput_url": None})
    extra = await measure(target, network, config.probe, clock, extra_addresses=addresses)
    return with_reached(control, extra, addresses)


async def measure_round(
    config: Config,
    pairs: Sequence[tuple[Vantage, Target]],
    clock: Clock = SYSTEM_CLOCK,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_resolved: OnResolved | None = None,
) -> list[Measurement]:
    """`measure_pairs`, then a second pass in which each control vantage also connects and
    handshakes to the addresses the other vantages resolved and it did not (geo-DNS, CDNs,
    tampered answers), as a helper would: so the same verdicts come out with either."""
    measurements = await measure_pairs(config, pairs, clock, concurrency, on_resolved)
    control_vantages = {v.name for v in config.vantages if v.control}
    others = [m for m in measurements if m.vantage not in control_vantages]
    networks = {v.name: vantage_network(v, config) for v in config.vantages if v.control}
    gate = asyncio.Semaphore(concurrency)

    async def second_pass(m: Measurement) -> Measurement:
        missing = elsewhere(m, others) if m.vantage in control_vantages else []
        if not missing:
            return m
        async with gate:
            return await reach(config, networks[m.vantage], m, missing, clock)

    return list(await asyncio.gather(*(second_pass(m) for m in measurements)))


def judge(
    config: Config,
    measurements: Sequence[Measurement],
    fingerprints: Fingerprints | None = None,
    baselines: dict[tuple[str, str], float] | None = None,
    helper_answers: Mapping[tuple[str, str], HelperAnswer] | None = None,
) -> list[Result]:
    """Analyse each measurement against the others of the same round.

    The control for a measurement of a non-control target is the same target at a control
    vantage; with no control vantage configured, the helper's answer for it in
    `helper_answers` (keyed by (vantage, target)), if any. Each result keeps the control it
    was judged with (`Result.control`).
    """
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
            analysis = analyze_control_vantage(m, controls=controls, peers=peers)
            results.append(Result(m, analysis, own_verdict(controls, peers)))
            continue
        reference = next(
            (by_pair[(cv, m.target)] for cv in control_vantages if (cv, m.target) in by_pair), None
        )
        answer = (helper_answers or {}).get((m.vantage, m.target))
        if reference is not None:
            record = from_vantage(reference, m, controls)
        elif answer is not None:
            reference, record = from_helper(answer, m, controls)
        else:
            record = no_control(controls)
        baseline = (baselines or {}).get((m.vantage, m.target))
        analysis = analyze(
            m, controls=controls, control_vantage=reference, fingerprints=fps, baseline_bps=baseline
        )
        results.append(Result(m, analysis, record))
    return results


async def run_round(config: Config, clock: Clock = SYSTEM_CLOCK) -> list[Result]:
    """Probe every vantage x target once and judge the results.

    With helpers configured (and no control vantage), each probe of a non-control target asks
    its vantage's helpers for the control as soon as its name is resolved, in parallel with
    the rest of the probe.
    """
    pairs = [(v, t) for v in config.vantages for t in config.targets]
    pool = HelperPool(config)
    asking: dict[tuple[str, str], asyncio.Future[HelperAnswer | None]] = {}

    def ask(vantage: Vantage, target: Target, dns: DnsObservation | None) -> None:
        if pool.wanted_for(vantage.name, target.name):
            asking[(vantage.name, target.name)] = asyncio.ensure_future(
                pool.ask_for(vantage.name, target.name, target.url, dns)
            )

    try:
        measurements = await measure_round(config, pairs, clock, on_resolved=ask)
        answers = {pair: answer for pair, question in asking.items() if (answer := await question)}
    finally:
        for question in asking.values():
            question.cancel()
        await pool.aclose()
    return judge(config, measurements, helper_answers=answers)
