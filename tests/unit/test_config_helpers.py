"""The `helpers:` keys: a top-level list, a vantage's override, and who gets a helper control."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probe.config import ConfigError, parse_config

TH = "https://th.example.org/"


def config(**extra: Any) -> Any:
    data: dict[str, Any] = {
        "vantages": [{"name": "kz"}, {"name": "kz2", "helpers": [{"url": "http://127.0.0.1:8080/"}]}],
        "targets": [{"name": "fb", "url": "https://fb.example/"}],
        **extra,
    }
    return parse_config(data)


def test_the_top_level_helpers_are_tried_in_order_and_a_vantage_overrides_them(tmp_path: Path) -> None:
    token = tmp_path / "th.token"
    token.write_text("s3cret\n")
    cfg = config(helpers=[{"url": TH, "token_file": str(token)}, {"url": "https://th2.example.org/"}])
    assert [h.url for h in cfg.helpers_for(cfg.vantage("kz"))] == [TH, "https://th2.example.org/"]
    assert cfg.helpers[0].token_file == token
    assert [h.url for h in cfg.helpers_for(cfg.vantage("kz2"))] == ["http://127.0.0.1:8080/"]


def test_an_empty_list_on_a_vantage_means_no_helper() -> None:
    cfg = parse_config(
        {
            "helpers": [{"url": TH}],
            "vantages": [{"name": "kz", "helpers": []}],
            "targets": [{"name": "fb", "url": "https://fb.example/"}],
        }
    )
    assert cfg.helpers_for(cfg.vantage("kz")) == []


def test_a_control_vantage_is_the_control_when_there_is_one() -> None:
    cfg = parse_config(
        {
            "helpers": [{"url": TH}],
            "vantages": [{"name": "kz"}, {"name": "de", "control": True}],
            "targets": [{"name": "fb", "url": "https://fb.example/"}],
        }
    )
    assert cfg.helpers_for(cfg.vantage("kz")) == []
    assert cfg.helpers_for(cfg.vantage("de")) == []


def test_the_helper_deadline_has_a_default_and_a_key() -> None:
    assert config().probe.timeouts.helper == 15.0
    assert config(probe={"timeouts": {"helper": 3}}).probe.timeouts.helper == 3.0


@pytest.mark.parametrize(
    ("helpers", "message"),
    [
        ([{"url": "ftp://th.example.org/"}], "helpers.0.url"),
        ([{"url": TH, "token_file": "/nonexistent/th.token"}], "helpers.0.token_file"),
        ([{"url": TH, "tokenfile": "x"}], "helpers.0.tokenfile"),
        ({"url": TH}, "helpers"),
    ],
)
def test_a_bad_helper_is_refused_naming_the_key(helpers: Any, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        config(helpers=helpers)
    assert message in str(error.value).replace("[", ".").replace("]", "")
