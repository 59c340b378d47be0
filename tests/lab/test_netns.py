"""Kernel-level SYN drop and RST-on-SYN with nftables inside a throwaway namespace."""

from __future__ import annotations

import json
import sys

import pytest

from probe.lab.netns import Namespace, namespace, namespaces, unavailable_reason

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"netns: {unavailable_reason()}"),
]

# Runs inside the namespace: listen on 127.0.1.1, connect from each source, report outcomes.
_CLIENTS = """
import json, socket, sys
listener = socket.create_server(("127.0.1.1", 443))
results = {}
for source in sys.argv[1:]:
    client = socket.socket()
    client.bind((source, 0))
    client.settimeout(0.5)
    try:
        client.connect(("127.0.1.1", 443))
        results[source] = "connected"
    except TimeoutError:
        results[source] = "timeout"
    except ConnectionRefusedError:
        results[source] = "refused"
    finally:
        client.close()
print(json.dumps(results))
"""


def outcomes(ns: Namespace, *sources: str) -> dict[str, str]:
    result = ns.run(sys.executable, "-c", _CLIENTS, *sources, timeout=20)
    return dict(json.loads(result.stdout))


def test_nft_drop_and_reset_syn_inside_a_namespace() -> None:
    with namespace() as ns:
        assert outcomes(ns, "127.0.0.2", "127.0.0.3") == {"127.0.0.2": "connected", "127.0.0.3": "connected"}
        ns.drop_syn("127.0.0.2", "127.0.1.1", 443)
        ns.reset_syn("127.0.0.3", "127.0.1.1", 443)
        assert outcomes(ns, "127.0.0.2", "127.0.0.3", "127.0.0.4") == {
            "127.0.0.2": "timeout",
            "127.0.0.3": "refused",
            "127.0.0.4": "connected",
        }
        ns.flush()
        assert outcomes(ns, "127.0.0.2") == {"127.0.0.2": "connected"}


def test_namespace_is_removed_afterwards_even_on_error() -> None:
    with pytest.raises(RuntimeError, match="boom"), namespace() as ns:
        name = ns.name
        assert name in namespaces()
        raise RuntimeError("boom")
    assert name not in namespaces()
