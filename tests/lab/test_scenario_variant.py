"""Scenario variants (`variant_of:`) and a control vantage served as a test helper (`helper: true`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.lab.scenario import ScenarioError, load_scenario

BASE = """
name: base
dns: {listen: 127.0.0.1:0}
vantages:
  - {name: kz, address: 127.0.0.2}
  - {name: control, address: 127.0.0.9, control: true}
targets:
  - {name: site, hosts: [site.lab], address: 127.0.3.1, port: 0}
rules:
  - {action: tls_reset, vantages: [kz], targets: [site]}
"""


def test_the_shipped_helper_variant_is_kazakhstan_2019_with_a_helper() -> None:
    base, variant = load_scenario("kazakhstan-2019"), load_scenario("kazakhstan-2019-helper")
    assert variant.name == "kazakhstan-2019-helper"
    assert variant.rules == base.rules and variant.targets == base.targets
    assert variant.vantages == base.vantages
    assert [v.name for v in variant.helper_vantages] == ["control"]
    assert base.helper_vantages == []
    assert variant.vantage("control").address == base.vantage("control").address
    assert variant.ephemeral().vantage("control").helper_port == 0


def test_a_variant_replaces_the_top_level_keys_it_names(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    variant = tmp_path / "variant.yaml"
    variant.write_text(
        "variant_of: base\nname: variant\nvantages:\n"
        "  - {name: kz, address: 127.0.0.2}\n"
        "  - {name: control, address: 127.0.0.9, control: true, helper: true}\n"
    )
    scenario = load_scenario(variant)
    assert scenario.name == "variant" and scenario.vantage("control").helper
    assert [r.action for r in scenario.rules] == ["tls_reset"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("variant_of: variant\nname: variant\n", "cannot be a variant of itself"),
        ("variant_of: nowhere\nname: variant\n", "no scenario 'nowhere'"),
    ],
)
def test_a_bad_variant_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "variant.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_a_helper_must_be_a_control_vantage(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        BASE.replace("{name: kz, address: 127.0.0.2}", "{name: kz, address: 127.0.0.2, helper: true}")
    )
    with pytest.raises(ScenarioError, match="helper: true needs control: true"):
        load_scenario(path)


def test_any_scenario_can_serve_its_control_vantages_as_helpers() -> None:
    # `curfew lab serve --helper`: the same as the shipped variant, for any scenario.
    served = load_scenario("kazakhstan-2019").with_helpers()
    assert served.helper_vantages == load_scenario("kazakhstan-2019-helper").helper_vantages
