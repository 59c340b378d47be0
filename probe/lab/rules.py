"""Which rule applies to a connection or query: a pure function of the scenario and a time.

The first matching rule wins. A rule matches when the vantage, the target or name, and the
time window all match:

- vantages: the listed ones, or (omitted) every non-control vantage. Control vantages and
  unknown source addresses are outside the censor's network and never match.
- targets / names: the rule matches if the target is listed or the name matches a glob;
  with neither given it matches everything. When the name is not known (a SYN, or a TLS
  ClientHello without SNI) the target's hostnames stand in for it.
- when: the rule's window in its zone (default the scenario's).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from probe.lab.scenario import REACHES_CONTROLS, Rule, Scenario, TargetSpec, VantageSpec, name_matches
from probe.lab.timewindow import ALWAYS, Window


@dataclass(frozen=True)
class Decision:
    """The outcome for one (vantage, target/name, time): the rule that applies, if any."""

    rule: Rule | None

    @property
    def action(self) -> str:
        return self.rule.action if self.rule is not None else "pass"


PASS = Decision(None)


class Policy:
    """The scenario's rules with their windows compiled once."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._windows: list[Window] = [
            rule.when.window(scenario.timezone) if rule.when else ALWAYS for rule in scenario.rules
        ]

    def decide(
        self,
        now: dt.datetime,
        vantage: VantageSpec | None,
        target: TargetSpec | None,
        name: str | None = None,
    ) -> Decision:
        """The first rule active at `now` for this vantage and target/name, or PASS.

        `name` is the DNS query name, TLS SNI or HTTP Host; `target` the lab target the
        connection or name belongs to (None for a name the lab does not serve).
        """
        if vantage is None or vantage.control:
            return PASS
        for rule, window in zip(self.scenario.rules, self._windows, strict=True):
            if rule.vantages is not None and vantage.name not in rule.vantages:
                continue
            if not _selects(rule, target, name):
                continue
            if window.contains(now):
                return Decision(rule)
        return PASS

    def syn_blocked(self, now: dt.datetime, target: TargetSpec) -> frozenset[str]:
        """Source addresses whose SYNs to `target` are dropped at `now` (tcp_drop, blackhole)."""
        return frozenset(
            v.address
            for v in self.scenario.vantages
            if self.decide(now, v, target).action in ("tcp_drop", "blackhole")
        )


def _selects(rule: Rule, target: TargetSpec | None, name: str | None) -> bool:
    if rule.targets is None and rule.names is None:
        return target is None or not target.control or rule.action in REACHES_CONTROLS
    if target is not None and target.control and rule.action not in REACHES_CONTROLS:
        return False
    if rule.targets is not None and target is not None and target.name in rule.targets:
        return True
    if rule.names is not None:
        if name is not None:
            return name_matches(rule.names, name)
        return target is not None and any(name_matches(rule.names, h) for h in target.hosts)
    return False
