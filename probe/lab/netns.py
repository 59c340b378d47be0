"""Run the lab's censorship in the kernel, inside a throwaway network namespace (root only).

    with namespace() as ns:                       # ip netns add curfew-<random>; lo up
        ns.drop_syn("127.0.0.2", "127.0.1.1", 443)    # SYN silently dropped
        ns.reset_syn("127.0.0.3", "127.0.1.1", 443)   # SYN answered with RST
        ns.run(sys.executable, "-m", "probe.lab", "serve", "--scenario", "smoke")

The namespace is deleted when the block exits, whatever happened inside. nftables rules
live in the table ``inet curfew_lab`` of the namespace and vanish with it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

TABLE = "curfew_lab"
_BASE = f"""
table inet {TABLE} {{
    chain input {{
        type filter hook input priority filter; policy accept;
    }}
}}
"""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (not root, no ip or nft), or None if they can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command"
    return None


def namespaces() -> set[str]:
    """Names of the existing network namespaces."""
    out = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@dataclass(frozen=True)
class Namespace:
    name: str

    def argv(self, *command: str) -> list[str]:
        """The argv running `command` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(
        self, *command: str, input: str | None = None, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` inside the namespace and wait for it; output is captured as text."""
        return subprocess.run(
            self.argv(*command), input=input, timeout=timeout, check=check, capture_output=True, text=True
        )

    def nft(self, script: str) -> None:
        """Load an nftables script inside the namespace (``nft -f -``)."""
        self.run("nft", "-f", "-", input=script)

    def drop_syn(self, source: str, destination: str, port: int) -> None:
        """Silently drop new TCP connections from `source` to `destination:port`."""
        self._syn_rule(source, destination, port, "drop")

    def reset_syn(self, source: str, destination: str, port: int) -> None:
        """Answer SYNs from `source` to `destination:port` with a RST (connection refused)."""
        self._syn_rule(source, destination, port, "reject with tcp reset")

    def flush(self) -> None:
        """Remove every rule this module installed."""
        self.nft(f"{_BASE}\nflush chain inet {TABLE} input\n")

    def _syn_rule(self, source: str, destination: str, port: int, verdict: str) -> None:
        src, dst = ipaddress.IPv4Address(source), ipaddress.IPv4Address(destination)
        if not 0 < port < 65536:
            raise ValueError(f"bad port {port}")
        rule = (
            f"add rule inet {TABLE} input ip saddr {src} ip daddr {dst} "
            f"tcp dport {port} tcp flags & (syn | ack) == syn {verdict}\n"
        )
        self.nft(_BASE + rule)


@contextmanager
def namespace(prefix: str = "curfew") -> Iterator[Namespace]:
    """Create ``<prefix>-<random>`` with loopback up; always delete it afterwards."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"network namespaces unavailable: {reason}")
    ns = Namespace(f"{prefix}-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", ns.name], check=False, capture_output=True)
