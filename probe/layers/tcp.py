"""TCP layer: connect to one address from the vantage (directly or through its proxy).

The only module that opens TCP connections. `connect` returns the observation and, on
success, the connected non-blocking socket, which the caller owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from python_socks.async_.asyncio import Proxy

from probe import failures
from probe.clock import Clock
from probe.model import TcpObservation
from probe.vantage import VantageNetwork


async def connect(
    address: str, port: int, net: VantageNetwork, timeout: float, clock: Clock, origin: float
) -> tuple[TcpObservation, socket.socket | None]:
    """Connect to (address, port); with a proxy, `address` is the host name the proxy resolves."""
    t0 = clock.monotonic() - origin
    sock: socket.socket | None = None
    failure: str | None = None
    try:
        sock = await _open(address, port, net, timeout)
    except TimeoutError:
        failure = failures.GENERIC_TIMEOUT
    except Exception as exc:  # every network error becomes data
        failure = failures.classify(exc)
    obs = TcpObservation(address=address, port=port, t0=t0, t=clock.monotonic() - origin, failure=failure)
    return obs, sock


async def _open(address: str, port: int, net: VantageNetwork, timeout: float) -> socket.socket:
    """A connected non-blocking socket, directly or through the vantage's proxy; raises on failure
    (TimeoutError past `timeout`) and never leaves a half-made socket open."""
    async with asyncio.timeout(timeout):
        if net.proxy is not None:
            return await _via_proxy(address, port, net, timeout)
        sock = net.new_socket(address)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
        except BaseException:
            sock.close()
            raise
        return sock


async def _via_proxy(host: str, port: int, net: VantageNetwork, timeout: float) -> socket.socket:
    proxy = Proxy.from_url(str(net.proxy), rdns=True)
    local = (net.source_address, 0) if net.source_address else None
    sock: socket.socket = await proxy.connect(host, port, timeout=timeout, local_addr=local)
    sock.setblocking(False)
    return sock


async def idle_reset(address: str, port: int, net: VantageNetwork, wait: float) -> bool | None:
    """Open a connection, send nothing, and watch it for `wait` seconds.

    True if the network reset (or closed) the idle connection: the block keys on the
    address, not on anything the client said. False if it stayed open. None if the
    connection could not even be made (the question has no answer).
    """
    loop = asyncio.get_running_loop()
    try:
        sock = await _open(address, port, net, wait + 5.0)
    except Exception:
        return None
    try:
        async with asyncio.timeout(wait):
            data = await loop.sock_recv(sock, 1)
        return data == b""
    except TimeoutError:
        return False
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            sock.close()
