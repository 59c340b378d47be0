"""The censor front: listens on a target's public lab addresses and applies the rules.

For each accepted connection the front learns the vantage from the source address, peeks
(MSG_PEEK, nothing consumed) at the first bytes for the TLS SNI or HTTP Host, evaluates the
rules at the lab clock's time and then acts: pass (splice to the origin), tcp_reset,
tls_reset, tls_silence, tls_mitm, http_blockpage, http_redirect, throttle. tcp_drop and
blackhole are enforced earlier, in the kernel, by a BPF filter on the listening socket
(`refresh`); if the filter cannot be attached, such connections are accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import ssl
import struct
from collections.abc import Callable, Coroutine
from typing import Any

from probe.lab import bpf
from probe.lab.blockpage import blockpage_response, redirect_response
from probe.lab.ca import RogueChain
from probe.lab.clienthello import NeedMoreData, NotRecognised, http_host, tls_server_name
from probe.lab.loss import NO_LOSS, Loss
from probe.lab.origin import read_request_head
from probe.lab.rules import Decision, Policy
from probe.lab.scenario import SYN_ACTIONS, TargetSpec, VantageSpec
from probe.lab.splice import splice

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 10.0
_PEEK_BYTES = 64 * 1024

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def reset(sock: socket.socket) -> None:
    """Close `sock` with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def peek_name(sock: socket.socket, tls: bool) -> tuple[bool, str | None]:
    """Peek until the ClientHello / request head is complete: (complete, name).

    `complete` is False when the client closed first; the name is None when the bytes are
    not recognised or carry no name. Nothing is consumed from the socket.
    """
    parse = tls_server_name if tls else http_host
    seen = -1
    while True:
        await _readable(sock)
        data = sock.recv(_PEEK_BYTES, socket.MSG_PEEK)
        if not data:
            return False, None
        try:
            return True, parse(data)
        except NotRecognised:
            return True, None
        except NeedMoreData:
            if len(data) == seen:
                await asyncio.sleep(0.005)  # the rest is in flight; readable fires at once
            seen = len(data)


async def hold(sock: socket.socket) -> None:
    """Read and discard everything, never answer, until the client goes away."""
    with contextlib.suppress(OSError):
        while True:
            await _readable(sock)
            if not sock.recv(_PEEK_BYTES):
                return


async def accepted_streams(sock: socket.socket, context: ssl.SSLContext | None = None) -> Streams:
    """Stream reader/writer over an accepted socket, as a TLS server if `context` is given."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol, sock, ssl=context, ssl_handshake_timeout=HELLO_TIMEOUT if context else None
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class Front:
    """The censor in front of one target: a listener on each of the target's addresses."""

    def __init__(
        self,
        target: TargetSpec,
        policy: Policy,
        now: Callable[[], dt.datetime],
        origin_port: int,
        rogue: RogueChain,
        origin_client_context: ssl.SSLContext,
        loss: Loss = NO_LOSS,
    ) -> None:
        self.target = target
        self.loss = loss
        self.policy = policy
        self.now = now
        self.origin_port = origin_port
        self.rogue = rogue
        self.origin_client_context = origin_client_context
        self.port = target.listen_port
        self.filter_works = True
        self._listeners: list[socket.socket] = []
        self._blocked: frozenset[str] = frozenset()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for address in self.target.addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, self.port))
            except OSError:
                sock.close()
                await self.close()
                raise
            sock.listen(256)
            sock.setblocking(False)
            self.port = sock.getsockname()[1]  # geo addresses reuse the first free port
            self._listeners.append(sock)
        self.refresh()
        for sock in self._listeners:
            self._spawn(self._accept_loop(sock))

    def refresh(self) -> None:
        """Attach a BPF filter dropping SYNs from the vantages cut off right now."""
        blocked = self.policy.syn_blocked(self.now(), self.target)
        if blocked == self._blocked or not self.filter_works:
            return
        try:
            for sock in self._listeners:
                bpf.attach_drop_filter(sock, blocked)
        except OSError as exc:
            self.filter_works = False
            log.warning("lab: cannot attach BPF filter (%s); tcp_drop falls back to accept-and-silence", exc)
        self._blocked = blocked

    async def close(self) -> None:
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as exc:
                log.warning("lab: accept failed on %s: %s", self.target.name, exc)
                await asyncio.sleep(0.05)
                continue
            sock.setblocking(False)
            # asyncio only sets TCP_NODELAY on sockets created with proto=IPPROTO_TCP; without it
            # Nagle holds the relayed response behind the client's delayed ACK (~40 ms a probe).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._handle(sock, peer[0]))

    async def _handle(self, sock: socket.socket, source: str) -> None:
        try:
            await self._censor(sock, source)
        except (TimeoutError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client or the origin went away mid-exchange
        except Exception:
            log.exception("lab: censor front for %s failed", self.target.name)
        finally:
            sock.close()

    async def _censor(self, sock: socket.socket, source: str) -> None:
        if self.loss.drop():  # a flaky path, not the censor: reset before anything is said
            reset(sock)
            return
        vantage = self.policy.scenario.vantage_at(source)
        early = self.policy.decide(self.now(), vantage, self.target).action
        if early == "tcp_reset":
            reset(sock)
            return
        if early in SYN_ACTIONS:  # the BPF filter missed this one (race or no filter)
            await hold(sock)
            return
        tls = self.target.scheme == "https"
        complete, name = await asyncio.wait_for(peek_name(sock, tls), HELLO_TIMEOUT)
        if not complete:
            return
        decision = self.policy.decide(self.now(), vantage, self.target, name)
        await self._act(sock, decision, vantage, name, tls)

    async def _act(
        self,
        sock: socket.socket,
        decision: Decision,
        vantage: VantageSpec | None,
        name: str | None,
        tls: bool,
    ) -> None:
        action = decision.action
        rule = decision.rule
        if action in ("tcp_reset", "tls_reset"):
            with contextlib.suppress(OSError):
                sock.recv(_PEEK_BYTES)  # consume the ClientHello first
            reset(sock)
        elif action in ("tls_silence", *SYN_ACTIONS):
            await hold(sock)
        elif action == "tls_mitm" and tls:
            await self._intercept(sock, name)
        elif action in ("http_blockpage", "http_redirect") and not tls and rule is not None:
            reader, writer = await accepted_streams(sock)
            try:
                await asyncio.wait_for(read_request_head(reader), HELLO_TIMEOUT)
                if action == "http_blockpage":
                    writer.write(blockpage_response(rule.status or 200))
                else:
                    writer.write(redirect_response(rule.redirect_location, rule.status or 302))
                await writer.drain()
            finally:
                writer.close()
        else:
            throttled = action in ("throttle", "congestion") and rule is not None
            rate = rule.rate_bps if throttled and rule is not None else None
            client = await accepted_streams(sock)
            await self._relay(client, None, None, rate)

    async def _intercept(self, sock: socket.socket, name: str | None) -> None:
        """Terminate TLS with the rogue chain, then relay the plaintext to the origin over TLS."""
        server_name = name or self.target.hosts[0]
        client = await accepted_streams(sock, self.rogue.server_context(server_name))
        origin_name = server_name if server_name in self.target.hosts else self.target.hosts[0]
        await self._relay(client, self.origin_client_context, origin_name, None)

    async def _relay(
        self, client: Streams, context: ssl.SSLContext | None, server_name: str | None, rate: int | None
    ) -> None:
        """Connect to the origin and splice; the client's transport is closed in every case."""
        try:
            origin = await asyncio.open_connection(
                "127.0.0.1", self.origin_port, ssl=context, server_hostname=server_name
            )
        except BaseException:
            client[1].close()
            raise
        await splice(client, origin, down_rate_bps=rate)
