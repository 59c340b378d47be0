"""Scenario loading: shipped files load, mistakes name the key; rule selection is pure."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from probe.lab.rules import Policy
from probe.lab.scenario import SCENARIO_DIR, Scenario, ScenarioError, load_scenario, parse_scenario


def base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "timezone": "Asia/Almaty",
        "vantages": [
            {"name": "kz", "address": "127.0.0.2"},
            {"name": "control", "address": "127.0.0.9", "control": True},
        ],
        "targets": [
            {"name": "facebook", "hosts": ["www.facebook.com"], "address": "127.0.1.1"},
            {"name": "cdn", "hosts": ["static.xx.fbcdn.net"], "address": "127.0.1.2"},
            {"name": "wiki", "hosts": ["www.wikipedia.org"], "address": "127.0.1.10", "control": True},
        ],
        "rules": [],
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("path", sorted(SCENARIO_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem


def test_shipped_scenario_by_name() -> None:
    assert load_scenario("kazakhstan-2019").timezone == "Asia/Almaty"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timezone": "Asia/Nowhere"}, "t.yaml: timezone: unknown IANA time zone"),
        ({"colour": "red"}, "t.yaml: colour: unknown key"),
        (
            {"vantages": [{"name": "kz", "address": "10.0.0.2"}]},
            "t.yaml: vantages[0].address: 10.0.0.2 is not in 127.0.0.0/8",
        ),
        ({"rules": [{"action": "tcp_explode"}]}, "t.yaml: rules[0].action: Input should be"),
        ({"rules": [{"action": "throttle"}]}, "t.yaml: rules[0]: throttle needs rate_bps"),
        ({"rules": [{"action": "tcp_reset", "vantages": ["mars"]}]}, "rules[0]: unknown vantage 'mars'"),
        ({"rules": [{"action": "tcp_reset", "vantages": ["control"]}]}, "'control' is a control vantage"),
        ({"rules": [{"action": "tcp_reset", "targets": ["wiki"]}]}, "'wiki' is a control target"),
        ({"rules": [{"action": "tcp_reset", "when": {"daily": "8pm"}}]}, "rules[0].when.daily: expected"),
        ({"rules": [{"action": "tcp_reset", "when": {"days": ["mon"]}}]}, "days needs a daily window"),
        (
            {"rules": [{"action": "tcp_reset", "when": {"daily": "20:00-22:00", "days": ["monday"]}}]},
            "rules[0].when.days: unknown weekday 'monday'",
        ),
        (
            {"rules": [{"action": "http_redirect"}]},
            "rules[0]: redirect host 'warning.lab' is not a",
        ),
        ({"rules": [{"action": "dns_bogus", "address": "8.8.8.8"}]}, "rules[0].address: 8.8.8.8 is not in"),
    ],
)
def test_scenario_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(base(**change), "t.yaml")
    assert message in str(info.value)


def test_duplicate_target_host_is_refused() -> None:
    targets = base()["targets"]
    targets[1]["hosts"] = ["WWW.facebook.com."]
    with pytest.raises(ScenarioError, match=r"target hosts: duplicate 'www\.facebook\.com'"):
        parse_scenario(base(targets=targets), "t.yaml")


def test_unreadable_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: not valid YAML \(line"):
        load_scenario(bad)


def test_ephemeral_copy_frees_every_port() -> None:
    scenario = load_scenario("kazakhstan-2019").ephemeral()
    assert scenario.dns.host_port == ("127.0.0.1", 0)
    assert {t.listen_port for t in scenario.targets} == {0}


# -- rule selection --------------------------------------------------------------------

ALMATY_2019 = dt.timezone(dt.timedelta(hours=6))


def kz_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ALMATY_2019)


def decide(scenario: Scenario, when: str, vantage: str, target: str | None, name: str | None = None) -> str:
    policy = Policy(scenario)
    spec = scenario.target(target) if target else None
    return policy.decide(kz_time(when), scenario.vantage(vantage), spec, name).action


def test_first_matching_rule_wins() -> None:
    scenario = parse_scenario(
        base(
            rules=[
                {"action": "tls_mitm", "targets": ["facebook"], "when": {"from": "2019-07-17T00:00:00"}},
                {"action": "tls_reset", "targets": ["facebook"]},
            ]
        )
    )
    assert decide(scenario, "2019-07-20T10:00", "kz", "facebook") == "tls_mitm"
    assert decide(scenario, "2019-07-01T10:00", "kz", "facebook") == "tls_reset"


def test_control_vantage_and_unknown_source_are_never_censored() -> None:
    scenario = parse_scenario(base(rules=[{"action": "blackhole"}]))
    policy = Policy(scenario)
    now = kz_time("2019-07-20T10:00")
    assert policy.decide(now, scenario.vantage("control"), scenario.target("facebook")).action == "pass"
    assert policy.decide(now, None, scenario.target("facebook")).action == "pass"
    assert policy.decide(now, scenario.vantage("kz"), scenario.target("wiki")).action == "blackhole"


def test_control_target_escapes_untargeted_rules() -> None:
    scenario = parse_scenario(base(rules=[{"action": "tls_reset"}]))
    assert decide(scenario, "2019-07-20T10:00", "kz", "wiki") == "pass"
    assert decide(scenario, "2019-07-20T10:00", "kz", "facebook") == "tls_reset"


def test_name_globs_match_sni_or_stand_in_hosts() -> None:
    scenario = parse_scenario(base(rules=[{"action": "tls_reset", "names": ["*.fbcdn.net"]}]))
    assert decide(scenario, "2019-07-20T10:00", "kz", "cdn", "static.xx.fbcdn.net") == "tls_reset"
    assert decide(scenario, "2019-07-20T10:00", "kz", "cdn", "other.example") == "pass"
    assert decide(scenario, "2019-07-20T10:00", "kz", "cdn") == "tls_reset"  # no SNI: the target's hosts
    assert decide(scenario, "2019-07-20T10:00", "kz", None, "video.fbcdn.net") == "tls_reset"


def test_naive_from_is_read_in_the_scenario_zone() -> None:
    scenario = parse_scenario(
        base(
            rules=[
                {"action": "tcp_drop", "when": {"from": "2019-05-09T13:00:00", "until": "2019-05-09T20:00"}}
            ]
        )
    )
    assert decide(scenario, "2019-05-09T12:59", "kz", "facebook") == "pass"
    assert decide(scenario, "2019-05-09T13:00", "kz", "facebook") == "tcp_drop"


@pytest.mark.parametrize(
    ("when", "vantage", "target", "expected"),
    [
        ("2019-05-09T12:00", "kz-almaty", "facebook", "pass"),
        ("2019-05-09T14:00", "kz-almaty", "facebook", "tcp_drop"),
        ("2019-05-09T14:00", "kz-astana", "wikipedia", "pass"),
        ("2019-05-09T14:00", "control", "facebook", "pass"),
        ("2019-06-09T11:30", "kz-astana", "wikipedia", "blackhole"),
        ("2019-06-09T12:30", "kz-astana", "wikipedia", "pass"),
        ("2019-06-11T16:00", "kz-mobile", "youtube", "tls_reset"),
        ("2019-07-20T10:00", "kz-almaty", "facebook", "tls_mitm"),
        ("2019-07-20T10:00", "kz-mobile", "facebook", "pass"),
        ("2019-07-20T21:00", "kz-almaty", "facebook", "tls_mitm"),
        ("2019-03-20T21:00", "kz-almaty", "facebook", "tls_reset"),
        ("2019-03-20T21:00", "kz-almaty", "youtube", "throttle"),
        ("2019-03-20T21:00", "kz-almaty", "news", "http_blockpage"),
        ("2019-03-20T21:00", "kz-astana", "youtube", "dns_bogus"),
        ("2019-03-20T22:05", "kz-mobile", "facebook", "throttle"),
        ("2019-03-20T22:05", "kz-almaty", "facebook", "pass"),
        ("2019-03-20T21:00", "control", "youtube", "pass"),
    ],
)
def test_kazakhstan_2019_timeline(when: str, vantage: str, target: str, expected: str) -> None:
    assert decide(load_scenario("kazakhstan-2019"), when, vantage, target) == expected


def test_only_network_conditions_reach_control_targets() -> None:
    base = {
        "name": "t",
        "vantages": [{"name": "v", "address": "127.0.0.2"}],
        "targets": [{"name": "wiki", "hosts": ["wiki.lab"], "address": "127.0.3.2", "control": True}],
    }
    congested = dict(base, rules=[{"action": "congestion", "rate_bps": 1000, "targets": ["wiki"]}])
    assert parse_scenario(congested).rules[0].action == "congestion"
    blocked = dict(base, rules=[{"action": "throttle", "rate_bps": 1000, "targets": ["wiki"]}])
    with pytest.raises(ScenarioError, match=r"rules\[0\]: 'wiki' is a control target"):
        parse_scenario(blocked)
    with pytest.raises(ScenarioError, match="congestion needs rate_bps"):
        parse_scenario(dict(base, rules=[{"action": "congestion", "targets": ["wiki"]}]))
