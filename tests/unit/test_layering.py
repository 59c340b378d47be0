"""The architecture's contracts, checked on the import graph of `probe/` in every `make test`.

Why a pytest that walks the source (tests/unit/layering.py) rather than import-linter: one of
the contracts is about calls, not imports ("only probe/layers opens sockets": asyncio, which
opens them, is imported everywhere, so an import rule cannot say it), another needs to know
which names a module uses from `socket` and `ssl` (the failure taxonomy classifies their
exceptions and must call nothing), and the rest are a few lines each on the same graph; no
new dependency, and a broken contract fails with the module, the line and the rule.

Each contract has a self-test on a small fake package, so a walker that stopped seeing
imports would fail here rather than pass everything.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.unit import layering

ROOT = Path(__file__).resolve().parents[2]
GRAPH = layering.graph(ROOT, "probe")
EDGES = {m: [i.module for i in found] for m, found in GRAPH.items()}

PURE_CORE = (
    "probe.analysis",
    "probe.episodes",
    "probe.model",
    "probe.uid",
    "probe.failures",
    "probe.daemon.schedule",
    "probe.daemon.watch",
    "probe.daemon.agenda",  # the scheduling core, when it lands
)
"""Analysis, episode detection and patterns, the data model, failure classification and the
scheduling maths: observations and time come in as arguments."""

IO_LIBRARIES = (
    "socket",
    "ssl",
    "asyncio",
    "selectors",
    "select",
    "subprocess",
    "multiprocessing",
    "concurrent",
    "http",
    "urllib.request",
    "sqlite3",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "alembic",
    "httpx",
    "httpcore",
    "h11",
    "dns.query",
    "dns.asyncquery",
    "dns.resolver",
    "dns.asyncresolver",
    "python_socks",
    "uvloop",
    "apscheduler",
    "prometheus_client",
)
IO_ROOMS = (
    "probe.layers",
    "probe.engine",
    "probe.round",
    "probe.vantage",
    "probe.store",
    "probe.metrics",
    "probe.daemon",
    "probe.lab",
    "probe.commands",
    "probe.cli",
    "probe.export",
    "probe.runner",
)
CONFIG_MODEL = ("probe.config", "probe.validation")
"""The configuration, reached from the scheduling core (the agenda reads its intervals): its
validators check a PEM bundle (ssl) and parse a database URL (sqlalchemy) when a file is
loaded, so they may import those inside functions, never at import: loading the core loads
neither."""
EXCEPTIONS_ONLY = {"probe.failures": ("socket", "ssl")}
"""The failure taxonomy maps `socket` and `ssl` exceptions to OONI's failure strings: it may
name their exception classes and constants, and call nothing from them."""

SOCKET_CALLS = (
    "socket",
    "socketpair",
    "fromfd",
    "create_connection",
    "create_server",
    "getaddrinfo",
    "gethostbyname",
    "open_connection",
    "start_server",
    "open_unix_connection",
    "start_unix_server",
    "create_unix_connection",
    "create_unix_server",
    "create_datagram_endpoint",
    "sock_connect",
    "wrap_socket",
    "AsyncClient",
)
NETWORK_CLIENTS = ("httpx", "dns.query", "dns.asyncquery", "python_socks")
SOCKETS_ALSO_IN = {
    "probe.lab": "the offline lab plays the Internet (its servers and censor); the product never imports it",
    "probe.metrics.server": "the Prometheus endpoint listens",
    "probe.daemon.sdnotify": "one AF_UNIX datagram to systemd's notify socket",
    "probe.vantage": "makes the vantage's TCP socket, bound to its source address, that layers/tcp connects",
    "probe.helper.client": "asks test helpers (an HTTP API, like DoH in layers/dns) with httpx",
    "probe.helper.httpserver": "`curfew helper` listens for probes' requests",
    "probe.preflight": "`curfew check` tries to bind the metrics port and each source_address",
}

PRODUCT_MAY_IMPORT_LAB = {"probe.commands.lab": "the `curfew lab` command, lazily, inside its handlers"}
STORE_MUST_NOT_IMPORT = (
    "probe.metrics",
    "probe.daemon",
    "probe.commands",
    "probe.cli",
    "probe.layers",
    "probe.engine",
    "probe.round",
    "probe.vantage",
    "probe.lab",
)


def within(module: str, prefixes: tuple[str, ...] | dict[str, str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# -- the contracts, as functions of a graph (so the self-tests can run them on a fake one) ------


def pure_core_violations(graph: dict[str, list[layering.Import]]) -> list[str]:
    edges = {m: [i.module for i in found] for m, found in graph.items()}
    core = [m for m in graph if within(m, PURE_CORE)]
    found = []
    for module in sorted(layering.closure(edges, core)):
        if within(module, IO_ROOMS) and not within(module, PURE_CORE):
            found.append(f"{module} (an I/O module) is reached from the pure core")
            continue
        for imp in graph[module]:
            allowed = EXCEPTIONS_ONLY.get(module, ())
            if module in CONFIG_MODEL and imp.lazy:
                continue
            if within(imp.module, IO_LIBRARIES) and imp.module not in allowed:
                found.append(f"{module}:{imp.line} imports {imp.module}")
    return found


def socket_violations(root: Path, graph: dict[str, list[layering.Import]]) -> list[str]:
    found = []
    for module in sorted(graph):
        if within(module, ("probe.layers",)) or within(module, SOCKETS_ALSO_IN):
            continue
        path = layering.modules(root, module.split(".")[0])[module]
        found += [f"{module}:{c.line} calls {c.text}()" for c in layering.calls(path, SOCKET_CALLS)]
        found += [
            f"{module}:{i.line} imports the network client {i.module}"
            for i in graph[module]
            if within(i.module, NETWORK_CLIENTS)
        ]
    return found


def lab_violations(graph: dict[str, list[layering.Import]]) -> list[str]:
    found = []
    for module, imports in sorted(graph.items()):
        if within(module, ("probe.lab",)):
            continue
        for imp in imports:
            if not within(imp.module, ("probe.lab",)):
                continue
            if module in PRODUCT_MAY_IMPORT_LAB and imp.lazy:
                continue
            found.append(f"{module}:{imp.line} imports {imp.module}")
    return found


def cli_violations(graph: dict[str, list[layering.Import]]) -> list[str]:
    """The command line sits on top: nothing else (the lab included) imports it."""
    top = ("probe.cli", "probe.commands")
    return [
        f"{module}:{imp.line} imports {imp.module}"
        for module, imports in sorted(graph.items())
        if not within(module, top)
        for imp in imports
        if within(imp.module, top)
    ]


def store_violations(graph: dict[str, list[layering.Import]]) -> list[str]:
    return [
        f"{module}:{imp.line} imports {imp.module}"
        for module, imports in sorted(graph.items())
        if within(module, ("probe.store",))
        for imp in imports
        if within(imp.module, STORE_MUST_NOT_IMPORT)
    ]


# -- the contracts on probe/ ---------------------------------------------------------------------


def test_the_pure_core_imports_no_io_module() -> None:
    assert any(within(m, ("probe.analysis",)) for m in GRAPH), "the pure core moved: update PURE_CORE"
    assert pure_core_violations(GRAPH) == []


def test_the_failure_taxonomy_uses_only_exception_classes_and_constants_of_socket_and_ssl() -> None:
    path = layering.modules(ROOT, "probe")["probe.failures"]
    for module in (socket, ssl):
        for name in sorted(layering.attributes_of(path, module.__name__)):
            value = getattr(module, name)
            is_exception = isinstance(value, type) and issubclass(value, BaseException)
            assert is_exception or isinstance(value, int | str), (
                f"probe.failures uses {module.__name__}.{name}"
            )


def test_only_the_layers_open_sockets() -> None:
    assert socket_violations(ROOT, GRAPH) == []


def test_the_product_never_imports_the_lab() -> None:
    assert lab_violations(GRAPH) == []


@pytest.mark.parametrize("entry", ["probe.cli", "probe.daemon.run"])
def test_loading_the_product_loads_no_lab_module(entry: str) -> None:
    code = f"import sys, {entry}; print(sorted(m for m in sys.modules if m.startswith('probe.lab')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_nothing_below_the_command_line_imports_it() -> None:
    assert cli_violations(GRAPH) == []


def test_the_store_never_imports_metrics_daemon_commands_or_the_network() -> None:
    assert store_violations(GRAPH) == []


def test_there_is_no_import_cycle() -> None:
    assert layering.cycles(EDGES) == []


# -- the walker and the contracts can fail ---------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    files = {
        "probe/__init__.py": "",
        "probe/model.py": "import socket\nfrom probe import engine\n",
        "probe/engine.py": "import asyncio\n",
        "probe/daemon/__init__.py": "",
        "probe/daemon/agenda.py": "from probe import config\n",
        "probe/config.py": "import sqlalchemy\ndef check():\n    import ssl\n",
        "probe/lab/shards.py": "def run():\n    from probe.commands.common import run_async\n",
        "probe/commands/common.py": "",
        "probe/failures.py": "import ssl\nif TYPE_CHECKING:\n    import httpx\n",
        "probe/lab/__init__.py": "",
        "probe/lab/censor.py": "",
        "probe/commands/__init__.py": "",
        "probe/commands/lab.py": "def handle():\n    from probe.lab import censor\n",
        "probe/commands/run.py": "from probe.lab.censor import x\n",
        "probe/store/__init__.py": "",
        "probe/store/a.py": "from . import b\nfrom probe.metrics import families\n",
        "probe/store/b.py": "def f():\n    from probe.store import a\n",
        "probe/metrics/__init__.py": "",
        "probe/metrics/families.py": "",
        "probe/metrics/other.py": "import asyncio\nasync def f():\n    await asyncio.open_connection()\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_the_contracts_find_what_breaks_them(fake: Path) -> None:
    graph = layering.graph(fake, "probe")
    assert pure_core_violations(graph) == [
        "probe.config:1 imports sqlalchemy",
        "probe.engine (an I/O module) is reached from the pure core",
        "probe.model:1 imports socket",
    ]
    assert socket_violations(fake, graph) == ["probe.metrics.other:3 calls asyncio.open_connection()"]
    assert lab_violations(graph) == ["probe.commands.run:1 imports probe.lab.censor"]
    assert store_violations(graph) == ["probe.store.a:2 imports probe.metrics.families"]
    assert cli_violations(graph) == ["probe.lab.shards:2 imports probe.commands.common"]
    edges = {m: [i.module for i in found] for m, found in graph.items()}
    assert layering.cycles(edges) == [["probe.store.a", "probe.store.b"]]
