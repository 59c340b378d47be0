"""A seeded config fuzz: `curfew check` says 0 or 2 (never a traceback), and what it accepts,
`curfew run` can build.

Seeds: the shipped config/curfew.yaml and the config the lab writes for its smoke scenario.
Each case mutates one seed: a value replaced by a wrong type or an out-of-range number, a key
dropped or invented, deep nesting, or the file's bytes damaged. Most cases run in-process (the
same calls as `check`: load_config, then preflight); a few run `curfew check` as a process for
the exit code and stderr.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from probe.config import Config, ConfigError, load_config
from probe.preflight import preflight

ROOT = Path(__file__).parents[2]
SEED = 20261130
CASES = 400
SUBPROCESS_CASES = 12
PLANTED = "Fz9Pl4nted"
"""A password in some of the wrong values: no error message may quote it."""

WRONG_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1,
    0.5,
    65535,
    65536,
    999999,
    10**300,
    1e300,
    -1e300,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    " ",
    "x" * 3000,
    "\x00",
    "é",
    "300",
    "1e300",
    ".inf",
    [],
    [1, 2],
    {},
    {"a": 1},
    "2019-05-01",
    "127.0.0.1:0",
    "127.0.0.1:65536",
    "0.0.0.0:99999",
    "[::1]:0",
    "https://host:999999/",
    "https://host:0/",
    "https:///x",
    "https://exa mple.org/",
    "https://xn--.org/",
    "https://" + "a" * 64 + ".org/",
    "https://example.org/é",
    "http://u:p@h:8080/",
    "socks5://u:p@127.0.0.1:1080",
    "socks5://u:pa/ss@127.0.0.1:1080",
    "socks5://127.0.0.1",
    "socks5://127.0.0.1:0",
    "sqlite:///fuzz.db",
    "sqlite://",
    "sqlite:///:memory:",
    "postgresql://u:p@127.0.0.1:1/db",
    "postgresql://u:p@h:99999/db",
    "mysql://u:p@h/db",
    "postgresql://u:p@ex ample/db",
    "system",
    "127.0.0.1:53",
    "127.0.0.1:0",
    "::1",
    "[::1]:99999",
    "https://dns.example/dns-query",
    "https://dns.example:99999/dns-query",
    "Asia/Almaty",
    "Nowhere/City",
    "../../etc",
    "bad name!",
    "a" * 63,
    "a" * 64,
    "Mozilla\r\nX-Injected: 1",
    " padded ",
    "data",
    "data/curfew.db",
    f"postgresql://u:{PLANTED}@127.0.0.1:99999/db",
    f"postgresql://u:{PLANTED}@h/db?sslmode=x",
    f"socks5://u:{PLANTED}/x@127.0.0.1:1080",
    f"HTTPS://u:{PLANTED}@dns.example/",
    f"http://u:{PLANTED}@h:0",
    f"https://u:{PLANTED} x@dns.example:99999/",
]

# Values at or near the edge of what is valid somewhere: run must cope with each it accepts.
EDGE_VALUES: list[Any] = [
    1,
    2,
    30,
    3600,
    86400,
    604800,
    604801,
    36500,
    36501,
    1024,
    64 * 1024 * 1024,
    1024**3,
    10000,
    0.001,
    1.5,
    False,
    "UTC",
    "Asia/Almaty",
    "local-2",
    "https://example.org:65535/x?y=1",
    "http://127.0.0.1:0/",
    "https://[::1]:8443/",
    "https://xn--80ak6aa92e.com/",
    "http://user:pa%2Fss@example.org/",
    "socks5://u:p%40ss@127.0.0.1:1080",
    "http://127.0.0.1:3128",
    "127.0.0.2",
    "::1",
    "[::1]:5353",
    "https://127.0.0.1:8443/dns-query",
    "curl/8.0",
    "a b c",
]

EDGE_NUMBERS: list[Any] = [0, 0.01, 1, 2, 16, 17, 30, 100, 3600, 3601, 86400, 604800, 36500, 1024, 2**30]


def _ca_pem(tmp: Path) -> Path:
    from probe.lab.ca import LabCA

    return LabCA(tmp / "ca").ca_pem_path


def _lab_config(tmp: Path) -> dict[str, Any]:
    """What `curfew lab serve` writes for the smoke scenario (ports as the lab chose them)."""
    from probe.lab import Lab
    from probe.lab.scenario import load_scenario

    async def generate() -> dict[str, Any]:
        scenario = load_scenario(ROOT / "probe/lab/scenarios/smoke.yaml")
        async with Lab(scenario, state_dir=tmp / "lab") as lab:
            config = lab.curfew_config()
        return config

    config = asyncio.run(generate())
    # The lab's CA file lives in its state dir; it must outlive the lab for the fuzz.
    config["tls"]["ca_bundle"] = str(_ca_pem(tmp))
    return config


def _seeds(tmp: Path) -> list[dict[str, Any]]:
    shipped = yaml.safe_load((ROOT / "config" / "curfew.yaml").read_text())
    seeds = [shipped, _lab_config(tmp)]
    for seed in seeds:
        # Write only under tmp, listen where nobody else does: every machine's 9716 may be taken.
        seed["data_dir"] = "data"  # relative: each case runs in a directory of its own
        seed["metrics"] = {"listen": "127.0.0.1:0"}
    # The lab's with test helpers too (a token file, one vantage with its own list).
    token = tmp / "helper.token"
    token.write_text("fuzz-token\n")
    seeds[1]["helpers"] = [{"url": "https://127.0.0.1:8765/", "token_file": str(token)}]
    seeds[1]["vantages"][0]["helpers"] = [{"url": "http://th.example.org:8080/"}]
    return seeds


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a parsed YAML document."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _mutate_value(rng: random.Random, doc: dict[str, Any], files: list[str]) -> str:
    paths = [p for p in _paths(doc) if p]
    numbers = [p for p in paths if type(_parent(doc, p)[p[-1]]) in (int, float)]
    if numbers and rng.random() < 0.3:
        # A number at or near a bound: often valid, and where it is, run must cope with it.
        path = rng.choice(numbers)
        _parent(doc, path)[path[-1]] = rng.choice(EDGE_NUMBERS)
        return yaml.safe_dump(doc, sort_keys=False)
    path = rng.choice(paths)
    parent = _parent(doc, path)
    pool = (EDGE_VALUES if rng.random() < 0.4 else WRONG_VALUES) + files
    action = rng.random()
    if action < 0.12 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action < 0.2 and isinstance(parent, dict):
        parent[rng.choice(["colour", "intervals", 1, None, "x" * 100])] = rng.choice(pool)
    elif action < 0.27:
        parent[path[-1]] = _nested(rng.choice([3, 40, 120]))
    else:
        parent[path[-1]] = rng.choice(pool)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=rng.random() < 0.5)


def _mutate_bytes(rng: random.Random, text: str) -> bytes:
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        at = rng.randrange(len(data))
        if kind < 0.35:
            data[at] = rng.randrange(256)
        elif kind < 0.55:
            data[at:at] = rng.choice(
                [b"\xff\xfe", b"\xc3(", b"\x00", b"\t", b": ", b"- ", b"&a *a ", b"!!python"]
            )
        elif kind < 0.7:
            del data[at : at + rng.randint(1, 40)]
        else:
            data[at:at] = rng.choice(
                [b"[" * 600 + b"]" * 600, b"{a: " * 550 + b"1" + b"}" * 550, b"\n" + b"  " * 5]
            )
    return bytes(data)


def _cases(tmp: Path) -> Iterator[bytes]:
    rng = random.Random(SEED)
    seeds = _seeds(tmp)
    not_pem = tmp / "not.pem"
    not_pem.write_text("not a certificate\n")
    a_file = tmp / "a-file"
    a_file.write_text("")
    files = [str(not_pem), str(a_file), str(tmp), str(_ca_pem(tmp)), str(tmp / "missing" / "x")]
    for _ in range(CASES):
        seed = rng.choice(seeds)
        doc = yaml.safe_load(yaml.safe_dump(seed))
        if rng.random() < 0.7:
            yield _mutate_value(rng, doc, files).encode()
        else:
            text = yaml.safe_dump(doc, sort_keys=False)
            if rng.random() < 0.5:
                text = _mutate_value(rng, doc, files)
            yield _mutate_bytes(rng, text)


def build_like_run(config: Config) -> None:
    """Everything `curfew run` builds from a config before its first probe, without probing
    (probe.daemon.run.Daemon.run, less the store and the listening socket, which preflight
    checks): the metrics' series, the vantages' networks, TLS contexts and helper pools, the
    schedule's triggers, the episode monitor, the database engine, each target's GET, each
    proxy, the metrics address, the retention cutoff."""
    from python_socks.async_.asyncio import Proxy

    from probe.daemon.prober import Prober
    from probe.daemon.scheduler import Scheduler, pairs_of
    from probe.engine import _split
    from probe.episodes.monitor import Monitor
    from probe.layers.http import _request
    from probe.metrics import Metrics
    from probe.store.engine import create_engine

    async def build() -> None:
        metrics = Metrics()
        metrics.set_pairs(pairs_of(config))
        prober = Prober(config, on_local_failure=metrics.observe_local_failure)
        scheduler = Scheduler(prober, lambda _: None)
        scheduler.apply(config)
        zones = {v.name: v.timezone for v in config.vantages}
        monitor = Monitor(
            zones,
            open_after=config.confirm_count,
            close_after=config.confirm_count,
            min_span=config.episode_min_span,
        )
        monitor.set_config(zones, pairs_of(config))
        engine = create_engine(config.database_url)
        await engine.dispose()
        for target in config.targets:
            for url in filter(None, (target.url, target.throughput_url)):
                _split(url)
                _request(url, config.probe.user_agent)
        for vantage in config.vantages:
            if vantage.proxy is not None:
                Proxy.from_url(vantage.proxy, rdns=True)
        config.metrics.host_port  # noqa: B018 - parsing it is the check
        datetime.now(UTC) - timedelta(days=config.retention_days)

    asyncio.run(build())


def check_in_process(path: Path) -> Config | ConfigError:
    """What `curfew check` does, minus printing: a Config or the ConfigError it would print."""
    try:
        config = load_config(path)
        preflight(config, str(path))
    except ConfigError as exc:
        return exc
    return config


def test_fuzzed_configs_are_accepted_only_if_run_can_build_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted = rejected = 0
    for number, content in enumerate(_cases(tmp_path)):
        # A directory of its own: what one case's run creates (data/, a sqlite file) must not
        # change what the next one finds.
        home = tmp_path / f"case-{number}"
        home.mkdir()
        monkeypatch.chdir(home)
        path = home / "curfew.yaml"
        path.write_bytes(content)
        outcome = check_in_process(path)  # anything but a Config or a ConfigError fails the test
        if isinstance(outcome, ConfigError):
            message = str(outcome)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
            assert PLANTED not in message, message
            rejected += 1
            continue
        try:
            build_like_run(outcome)
        except Exception as exc:
            pytest.fail(f"check accepted case {number} but run cannot build it: {exc!r}\n{content!r}")
        accepted += 1
    # Both sides must be exercised, or the fuzz proves nothing.
    assert accepted >= 30 and rejected >= 150, (accepted, rejected)


def test_fuzzed_configs_through_the_command_exit_0_or_2_in_one_line(tmp_path: Path) -> None:
    cases = list(_cases(tmp_path))
    picked = random.Random(SEED).sample(range(len(cases)), SUBPROCESS_CASES)
    # The nastiest by construction: invalid UTF-8 and 600 levels of nesting.
    extra = [b"vantages: \xff\xfe\n", b"a: " + b"[" * 600 + b"]" * 600 + b"\n"]
    codes = []
    for number, content in enumerate([cases[i] for i in picked] + extra):
        home = tmp_path / f"sub-{number}"
        home.mkdir()
        path = home / "curfew.yaml"
        path.write_bytes(content)
        done = _check(path, home)
        assert done.returncode in (0, 2), done.stderr
        assert "Traceback" not in done.stderr
        if done.returncode == 2:
            assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"curfew: error: {path}: ")
        codes.append(done.returncode)
    assert codes[-2:] == [2, 2]


def _check(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probe.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
