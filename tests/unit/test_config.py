"""Config validation: good files load, bad ones name the file and the key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from probe.config import ConfigError, load_config, parse_config, parse_resolver

MINIMAL = {
    "vantages": [{"name": "kz-almaty", "timezone": "Asia/Almaty", "resolver": "127.0.0.1:5053"}],
    "targets": [{"name": "facebook", "url": "https://www.facebook.com/"}],
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "curfew.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def with_change(section: str, key: str, value: object) -> dict[str, object]:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data[section][0][key] = value
    return data


def test_the_shipped_default_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "curfew.yaml")
    names = {t.name for t in config.targets}
    assert {"facebook", "youtube"} <= names
    assert any(t.control for t in config.targets)
    assert config.vantages[0].resolver == "system"


def test_defaults_fill_what_is_not_said() -> None:
    config = parse_config(MINIMAL)
    assert config.interval == 300
    assert config.probe.timeouts.total == 40
    assert config.vantages[0].control is False
    assert config.tls.ca_bundle is None


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("vantages", "resolver", "dns.google", "vantages[0].resolver: expected"),
        ("vantages", "resolver", "127.0.0.1:99999", "vantages[0].resolver: bad port"),
        ("vantages", "timezone", "Asia/Nowhere", "vantages[0].timezone: unknown IANA time zone"),
        ("vantages", "source_address", "not-an-ip", "vantages[0].source_address"),
        ("vantages", "proxy", "ftp://x:1", "vantages[0].proxy: expected http://"),
        ("vantages", "name", "bad name!", "vantages[0].name"),
        ("vantages", "colour", "red", "vantages[0].colour: unknown key"),
        ("targets", "url", "www.facebook.com", "targets[0].url: expected an http:// or https:// URL"),
        ("targets", "throughput_url", "ftp://x/", "targets[0].throughput_url"),
        ("targets", "interval", 0.5, "targets[0].interval"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, section: str, key: str, value: object, expected: str
) -> None:
    path = write(tmp_path, with_change(section, key, value))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("database", "mysql://u:secret@h/db", "database: expected sqlite:///path or postgresql://"),
        ("metrics", {"listen": "localhost"}, "metrics.listen: expected host:port"),
        ("confirm_count", 0, "confirm_count: Input should be greater than or equal to 1"),
        ("retention_days", -1, "retention_days"),
    ],
)
def test_daemon_settings_are_checked(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(dict(MINIMAL, **{key: value}), "x.yaml")
    assert expected in str(info.value)
    assert "secret" not in str(info.value)  # a database password never reaches a message


def test_database_defaults_to_sqlite_in_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/curfew")
    config = parse_config(MINIMAL)
    assert config.database_url == "sqlite:////var/lib/curfew/curfew.db"
    assert config.metrics.host_port == ("127.0.0.1", 9716)


def test_duplicate_names_are_rejected() -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["targets"].append(dict(data["targets"][0]))
    with pytest.raises(ConfigError, match="duplicate name 'facebook'"):
        parse_config(data, "x.yaml")


def test_missing_sections_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="targets: Field required"):
        parse_config({"vantages": MINIMAL["vantages"]}, "x.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("vantages: [\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML \(line"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_ca_bundle_must_exist(tmp_path: Path) -> None:
    data = dict(MINIMAL, tls={"ca_bundle": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match=r"tls\.ca_bundle: file not found"):
        parse_config(data, "x.yaml")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("system", ("system", None, None)),
        ("127.0.0.1", ("udp", "127.0.0.1", 53)),
        ("127.0.0.1:5053", ("udp", "127.0.0.1", 5053)),
        ("[::1]:5353", ("udp", "::1", 5353)),
        ("::1", ("udp", "::1", 53)),
        ("https://127.0.0.1:8443/dns-query", ("doh", "https://127.0.0.1:8443/dns-query", 8443)),
    ],
)
def test_resolver_forms(text: str, parsed: tuple[str, str | None, int | None]) -> None:
    assert parse_resolver(text) == parsed


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, MINIMAL)
    ok = subprocess.run(
        [sys.executable, "-m", "probe.cli", "check", "--config", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_change("vantages", "resolver", "bogus")))
    out = subprocess.run(
        [sys.executable, "-m", "probe.cli", "check", "--config", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"{bad}: vantages[0].resolver" in lines[0]
