"""The lab in one process and on virtual time: an in-memory network for the real probe.

`lab simulate` needs days of probing in minutes. Over kernel sockets every silence, SYN
drop and throttled download costs real seconds and the results depend on how loaded the
machine is. Here the probe engine runs unchanged (`probe.engine.measure`, the layers, real
TLS with the lab's certificates, real DNS messages) but its sockets are `MemorySocket`s:
the seam is the event loop's `sock_*` methods (`VirtualLoop`), below `probe/layers`. The
censor and the sites of the lab answer in the same loop, with the lab's own rules
(`probe.lab.rules.Policy`), DNS answers (`probe.lab.dns_server.answer`), pages and
blockpages (`probe.lab.origin`, `probe.lab.blockpage`) and certificates (`probe.lab.ca`).

Time is virtual: `VirtualLoop.time()` only moves when nothing is ready to run, straight to
the next timer, so a 0.5 s timeout or a throttled download takes no real time, and the
same inputs give the same measurements however loaded the machine is. Links have a fixed
latency and bandwidth (`LATENCY`, `BANDWIDTH`) so steps take plausible virtual durations.

What behaves like the kernel lab: a connect to an address nobody serves is refused; a
SYN-level block (tcp_drop, blackhole) never completes; a reset is `ConnectionResetError`
on the peer's next read; a closed peer gives EOF. The real-socket lab (`probe.lab.lab.Lab`)
stays for `lab serve` and the tests that must see the kernel (BPF filters, netns, ports).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import datetime as dt
import hashlib
import heapq
import itertools
import selectors
import socket
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVarTuple

from probe.lab.blockpage import blockpage_response, redirect_response
from probe.lab.ca import LabCA, RogueChain
from probe.lab.clienthello import NeedMoreData, NotRecognised, http_host, tls_server_name
from probe.lab.dns_server import answer
from probe.lab.lab import scenario_config
from probe.lab.origin import ORIGIN_HEADER, ORIGIN_SERVER, page_body, response_head
from probe.lab.rules import Decision, Policy
from probe.lab.scenario import SYN_ACTIONS, Scenario, TargetSpec, VantageSpec
from probe.lab.splice import TokenBucket, chunk_for

LATENCY = 0.001
"""Seconds one way on every link (a 2 ms round trip)."""
BANDWIDTH = 100e6 / 8
"""Bytes per second on every link (100 Mbit/s)."""
_CHUNK = 64 * 1024
_BULK_BLOCK = bytes(range(256)) * (_CHUNK // 256)
_MAX_HEAD = 16 * 1024

Address = tuple[str, int]
_Args = TypeVarTuple("_Args")
_RESET = object()
"""On a link, in place of bytes: the sender reset the connection."""


# -- the virtual event loop ---------------------------------------------------------------


class _VirtualSelector(selectors.DefaultSelector):
    """Never waits for a timer: tells the loop to jump its clock to it instead.

    The only file the loop watches is its self-pipe, which another thread writes to wake it
    (`call_soon_threadsafe`); the callback itself is already queued by then. So while there
    is work or a timer, the pipe is polled only every `POLL_EVERY` turns (to drain it), not
    at each of the loop's ~20 turns per measurement: a system call saved per turn.
    """

    POLL_EVERY = 64

    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._loop = loop
        self._turns = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # Nothing ready and no timer: only another thread can wake us.
            return super().select(None)
        self._turns += 1
        events = super().select(0) if self._turns % self.POLL_EVERY == 0 else []
        if not events and timeout > 0:
            self._loop.advance(timeout)
        return events


class VirtualLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time whose `sock_*` methods serve `MemorySocket`s.

    Only in-memory work may run on it: a wait for a real socket or another thread while a
    timer is pending would see the timer fire at once.
    """

    def __init__(self, start: float) -> None:
        super().__init__(_VirtualSelector(self))
        self._now = start
        # Unix seconds as floats are only good to ~0.2 us today: a timer counts as due
        # within a microsecond, or now + (when - now) could fall short of `when` forever.
        self._clock_resolution = 1e-6
        # The timers: a heap of (when, order, handle), compared in C. asyncio's heap of
        # TimerHandles compares them with a Python `__lt__`, ~7 calls a timer, and a
        # measurement sets ~30 timers. Equal deadlines fire in the order they were set.
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Jump to the earliest timer (`seconds` from now, as the loop computed it)."""
        target = self._timers[0][0] if self._timers else self._now + seconds
        self._now = max(self._now + seconds, target)

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Args], object],
        *args: *_Args,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        timer = asyncio.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        timer._scheduled = True  # type: ignore[attr-defined]  # asyncio's own bookkeeping
        return timer

    def _run_once(self) -> None:
        """`BaseEventLoop._run_once` on `_timers`, without its debug checks."""
        timers = self._timers
        cancelled: int = self._timer_cancelled_count  # type: ignore[has-type]
        if len(timers) > 100 and cancelled * 2 > len(timers):
            kept = []
            for entry in timers:
                if entry[2].cancelled():
                    entry[2]._scheduled = False  # type: ignore[attr-defined]
                else:
                    kept.append(entry)
            heapq.heapify(kept)
            self._timers = timers = kept
            self._timer_cancelled_count = 0
        else:
            while timers and timers[0][2].cancelled():
                self._timer_cancelled_count -= 1
                heapq.heappop(timers)[2]._scheduled = False  # type: ignore[attr-defined]
        ready: collections.deque[asyncio.Handle] = self._ready  # type: ignore[attr-defined]
        timeout = None
        if ready or self._stopping:  # type: ignore[attr-defined]
            timeout = 0.0
        elif timers:
            timeout = max(0.0, timers[0][0] - self._now)
        self._process_events(self._selector.select(timeout))  # type: ignore[attr-defined]
        end = self._now + self._clock_resolution
        while timers and timers[0][0] < end:
            timer = heapq.heappop(timers)[2]
            timer._scheduled = False  # type: ignore[attr-defined]
            ready.append(timer)
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle.cancelled():
                handle._run()

    def close(self) -> None:
        self._timers.clear()
        super().close()

    async def sock_connect(self, sock: Any, address: Any) -> None:
        if isinstance(sock, MemorySocket):
            return await sock.connect_async(address)
        return await super().sock_connect(sock, address)

    async def sock_recv(self, sock: Any, n: int) -> bytes:
        if isinstance(sock, MemorySocket):
            return await sock.recv_async(n)
        return await super().sock_recv(sock, n)

    async def sock_sendall(self, sock: Any, data: Any) -> None:
        if isinstance(sock, MemorySocket):
            return sock.sendall_now(bytes(data))
        return await super().sock_sendall(sock, data)


# -- links and sockets --------------------------------------------------------------------


class _Link:
    """One direction of a connection: bytes arrive after latency + size / bandwidth, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[object], None]) -> None:
        self._loop = loop
        self._deliver = deliver
        self._free_at = 0.0
        self._queue: collections.deque[object] = collections.deque()

    def send(self, data: bytes | object) -> None:
        """Queue `data` (None: the end of the stream; `_RESET`: a reset; after what was sent)."""
        now = self._loop.time()
        start = max(now, self._free_at)
        self._free_at = start + (_wire_size(data) / BANDWIDTH if isinstance(data, bytes) else 0.0)
        self._queue.append(data)
        self._loop.call_at(self._free_at + LATENCY, self._arrive)

    def _arrive(self) -> None:
        # Each timer delivers the oldest chunk: equal deadlines cannot reorder the stream.
        self._deliver(self._queue.popleft())


def _wire_size(data: bytes) -> int:
    """The bytes a write costs on the link, in whole 4 KiB blocks: handshake messages (whose
    size varies by a byte with each ECDSA signature) cost latency only, so the timing of a
    run never depends on a signature's length; bulk transfers cost their size.

    >>> _wire_size(bytes(1500)), _wire_size(bytes(65536))
    (0, 65536)
    """
    return len(data) // 4096 * 4096


class Endpoint:
    """One end of an in-memory TCP connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buffer = bytearray()
        self._eof = False
        self._reset = False
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._out: _Link | None = None
        self.peer: Endpoint | None = None

    @staticmethod
    def pair(loop: asyncio.AbstractEventLoop) -> tuple[Endpoint, Endpoint]:
        a, b = Endpoint(loop), Endpoint(loop)
        a.peer, b.peer = b, a
        a._out = _Link(loop, b._receive)
        b._out = _Link(loop, a._receive)
        return a, b

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _receive(self, data: object) -> None:
        if data is None:
            self._eof = True
        elif data is _RESET:
            self._reset = True
        elif isinstance(data, bytes):
            if not self._closed:
                self._buffer += data
            elif not self._reset and self._out is not None:
                # Data for a socket closed on this side: the kernel answers with a reset, and
                # the sender's next write fails. (A throttled origin would otherwise trickle
                # the rest of its bulk object to a client that gave up long ago.)
                self._reset = True
                self._out.send(_RESET)
        self._wake()

    async def _more(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read(self, n: int) -> bytes:
        """Up to `n` bytes; b"" at EOF; ConnectionResetError after a reset."""
        while True:
            if self._closed:
                raise OSError(9, "Bad file descriptor")
            if self._reset:
                self._buffer.clear()
                raise ConnectionResetError(104, "Connection reset by peer")
            if self._buffer:
                data = bytes(self._buffer[:n])
                del self._buffer[:n]
                return data
            if self._eof:
                return b""
            await self._more()

    async def peek(self, parse: Callable[[bytes], str | None]) -> tuple[bool, str | None]:
        """Wait until `parse` accepts the bytes received so far (nothing is consumed)."""
        while True:
            if self._buffer:
                try:
                    return True, parse(bytes(self._buffer))
                except NotRecognised:
                    return True, None
                except NeedMoreData:
                    pass
            if self._eof or self._reset or self._closed:
                return False, None
            await self._more()

    def consume(self) -> None:
        self._buffer.clear()

    def write(self, data: bytes) -> None:
        if self._closed or self._reset:
            raise ConnectionResetError(104, "Connection reset by peer")
        if data and self._out is not None:
            self._out.send(data)

    def close(self) -> None:
        """Close with a FIN: the peer reads what was sent, then EOF."""
        if not self._closed:
            self._closed = True
            if self._out is not None and not self._reset:
                self._out.send(None)
            self._wake()

    def abort(self) -> None:
        """Close with an RST: the peer's next read fails with ConnectionResetError."""
        if not self._closed:
            self._closed = True
            if self._out is not None:
                self._out.send(_RESET)
            self._wake()

    @property
    def closed(self) -> bool:
        return self._closed


class MemorySocket:
    """What `VantageNetwork.socket` hands the layers in a simulation: enough of a socket
    for `probe/layers` (bind, connect, send, close) with I/O through `VirtualLoop`."""

    def __init__(self, network: MemoryNetwork, family: int, kind: int) -> None:
        self.network = network
        self.family = family
        self.type = kind
        self.source: str | None = None
        self.remote: Address | None = None
        self.endpoint: Endpoint | None = None
        self._datagrams: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    # socket.socket's synchronous surface, as the layers use it
    def setblocking(self, flag: bool) -> None:
        pass

    def setsockopt(self, *args: Any) -> None:
        pass

    def bind(self, address: tuple[str, int]) -> None:
        self.source = address[0]

    def connect(self, address: Address) -> None:
        """A datagram socket's connect: just where sends go."""
        self.remote = (address[0], address[1])

    def send(self, data: bytes) -> int:
        self.sendall_now(bytes(data))
        return len(data)

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.endpoint is not None:
                self.endpoint.close()

    def __enter__(self) -> MemorySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # what VirtualLoop's sock_* methods call
    async def connect_async(self, address: Address) -> None:
        self.remote = (address[0], address[1])
        self.endpoint = await self.network.connect(self.source or "127.0.0.1", self.remote)

    def sendall_now(self, data: bytes) -> None:
        if self._closed:
            raise OSError(9, "Bad file descriptor")
        if self.type == socket.SOCK_DGRAM:
            if self.remote is None:
                raise OSError(89, "Destination address required")
            self.network.datagram(self.source or "127.0.0.1", self.remote, data, self._datagram)
            return
        if self.endpoint is None:
            raise OSError(107, "Transport endpoint is not connected")
        self.endpoint.write(data)

    def _datagram(self, data: bytes) -> None:
        if not self._closed:
            self._datagrams.append(data)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    async def recv_async(self, n: int) -> bytes:
        if self.type == socket.SOCK_DGRAM:
            while not self._datagrams:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            return self._datagrams.popleft()[:n]
        if self.endpoint is None:
            raise OSError(107, "Transport endpoint is not connected")
        return await self.endpoint.read(n)


# -- the lab's side -----------------------------------------------------------------------


class MemoryNetwork:
    """The scenario's DNS server, censor and sites, answering `MemorySocket`s.

    `now()` is the time the rules are evaluated at (the simulation's current instant).
    """

    def __init__(
        self,
        scenario: Scenario,
        state_dir: Path,
        now: Callable[[], dt.datetime],
        loss: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {loss}")
        self.scenario = scenario
        self.policy = Policy(scenario)
        self.now = now
        self.loss = loss
        self.seed = seed or 0
        self._draws: collections.Counter[tuple[str, str]] = collections.Counter()
        self.ca = LabCA(state_dir)
        self.rogue = RogueChain(state_dir)
        host, port = scenario.dns.host_port
        self.dns_address: Address = (host, port or 53)
        self._contexts: dict[str, ssl.SSLContext] = {}
        # The rules and the DNS answers only change with the instant: an instant's many
        # probes ask the same questions, so the answers are kept until the instant changes.
        self._instant: dt.datetime | None = None
        self._decisions: dict[tuple[str | None, str, str | None], Decision] = {}
        self._answers: dict[tuple[str, bytes, object], bytes | None] = {}
        self._pages: dict[str, bytes] = {}
        self._targets: dict[Address, TargetSpec] = {}
        for target in scenario.targets:
            if target.down:
                continue
            for address in target.addresses:
                self._targets[(address, self.port_of(target))] = target
        self._tasks: set[asyncio.Task[None]] = set()

    def _fresh(self) -> dt.datetime:
        now = self.now()
        if now != self._instant:
            self._instant = now
            self._decisions.clear()
            self._draws.clear()
        return now

    def decide(self, vantage: VantageSpec | None, target: TargetSpec, name: str | None = None) -> Decision:
        """`Policy.decide` at the current instant, remembered for the instant."""
        now = self._fresh()
        key = (vantage.name if vantage is not None else None, target.name, name)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decisions[key] = self.policy.decide(now, vantage, target, name)
        return decision

    def _answer(self, source: str, wire: bytes) -> bytes | None:
        """`probe.lab.dns_server.answer`, remembered by question (the ID aside) and by the
        rule that decides it, so it is computed again only when another rule applies."""
        now = self._fresh()
        name = _qname(wire)
        target = self.scenario.target_for_host(name) if name is not None else None
        vantage = self.scenario.vantage_at(source)
        if target is not None:
            decision = self.decide(vantage, target, name)
        else:
            decision = self.policy.decide(now, vantage, None, name)
        key = (source, wire[2:], (decision.action, id(decision.rule)))
        if key not in self._answers:
            self._answers[key] = answer(self.policy, now, source, wire)
        response = self._answers[key]
        return None if response is None else wire[:2] + response[2:]

    def lost(self, source: str, what: str) -> bool:
        """Whether this connection or query from `source` to `what` is lost (`loss`).

        Drawn from a hash of the seed, the instant, the endpoints and how many times they
        met in the instant, not from a stream of random numbers: the outcome does not
        depend on the order in which concurrent probes reach the network.
        """
        if self.loss == 0.0:
            return False
        key = (source, what)
        self._draws[key] += 1
        text = f"{self.seed}|{self._fresh().isoformat()}|{source}|{what}|{self._draws[key]}"
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.loss

    @staticmethod
    def port_of(target: TargetSpec) -> int:
        return target.listen_port or (443 if target.scheme == "https" else 80)

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> MemorySocket:
        return MemorySocket(self, family, kind)

    def curfew_config(self) -> dict[str, Any]:
        """A curfew config (probe/config.py shape) that probes this network from every vantage
        (no test helper is served in memory: a helper vantage is probed from as any other)."""
        return scenario_config(self.scenario, self.dns_address, self.ca.ca_pem_path, self.port_of)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # DNS
    def datagram(
        self, source: str, destination: Address, data: bytes, reply: Callable[[bytes], None]
    ) -> None:
        if destination != self.dns_address:
            return  # nobody there: the datagram is lost
        loop = asyncio.get_running_loop()

        def arrive() -> None:
            if self.lost(source, f"dns:{data[2:].hex()}"):
                return
            response = self._answer(source, data)
            if response is not None:
                loop.call_later(LATENCY, reply, response)

        loop.call_later(LATENCY, arrive)

    # TCP
    async def connect(self, source: str, destination: Address) -> Endpoint:
        loop = asyncio.get_running_loop()
        target = self._targets.get(destination)
        vantage = self.scenario.vantage_at(source)
        if target is not None and self.decide(vantage, target).action in SYN_ACTIONS:
            await loop.create_future()  # the SYN is dropped: only the caller's timeout ends this
        await asyncio.sleep(2 * LATENCY)  # SYN, SYN-ACK
        if target is None:
            raise ConnectionRefusedError(111, "Connection refused")
        client, server = Endpoint.pair(loop)
        self._spawn(self._front(server, vantage, target, self.lost(source, f"tcp:{destination}")))
        return client

    async def _front(self, ep: Endpoint, vantage: VantageSpec | None, target: TargetSpec, lost: bool) -> None:
        """The censor in front of `target`, then the site: `probe.lab.censor.Front` in memory."""
        try:
            if lost:  # a flaky path, not the censor: reset before anything is said
                ep.abort()
                return
            await self._censor(ep, vantage, target)
        except (OSError, ssl.SSLError, EOFError):
            pass  # the client went away mid-exchange
        finally:
            ep.close()

    async def _censor(self, ep: Endpoint, vantage: VantageSpec | None, target: TargetSpec) -> None:
        early = self.decide(vantage, target).action
        if early == "tcp_reset":
            ep.abort()
            return
        if early in SYN_ACTIONS:
            await _hold(ep)
            return
        tls = target.scheme == "https"
        complete, name = await ep.peek(tls_server_name if tls else http_host)
        if not complete:
            return
        decision = self.decide(vantage, target, name)
        action, rule = decision.action, decision.rule
        if action in ("tcp_reset", "tls_reset"):
            ep.consume()
            ep.abort()
        elif action in ("tls_silence", *SYN_ACTIONS):
            await _hold(ep)
        elif action == "tls_mitm" and tls:
            server_name = name or target.hosts[0]
            await self._site(ep, target, self.rogue.server_context(server_name), None)
        elif action in ("http_blockpage", "http_redirect") and not tls and rule is not None:
            stream = _Plain(ep)
            if await _request_head(stream) is None:
                return
            if action == "http_blockpage":
                ep.write(blockpage_response(rule.status or 200))
            else:
                ep.write(redirect_response(rule.redirect_location, rule.status or 302))
        else:
            throttled = action in ("throttle", "congestion") and rule is not None
            rate = rule.rate_bps if throttled and rule is not None else None
            context = self._context(target) if tls else None
            await self._site(ep, target, context, rate)

    def _context(self, target: TargetSpec) -> ssl.SSLContext:
        context = self._contexts.get(target.name)
        if context is None:
            context = self.ca.server_context(target.name, tuple(target.hosts))
            self._contexts[target.name] = context
        return context

    async def _site(
        self, ep: Endpoint, target: TargetSpec, context: ssl.SSLContext | None, rate_bps: int | None
    ) -> None:
        """The origin: one request, its page or bulk object (at `rate_bps` if throttled), close."""
        stream: _Plain | _ServerTls = _Plain(ep) if context is None else _ServerTls(ep, context)
        if isinstance(stream, _ServerTls):
            await stream.handshake()
        request = await _request_head(stream)
        if request is None:
            return
        method, path = request
        common = [("Server", ORIGIN_SERVER), (ORIGIN_HEADER, target.name), ("Connection", "close")]
        if target.bulk and path.split("?", 1)[0] == target.bulk_path:
            size = target.bulk_bytes
            headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(size)), *common]
            stream.write(response_head(200, "OK", headers))
            if method != "HEAD":
                await _send_bulk(stream, size, rate_bps)
        else:
            body = self._pages.get(target.name)
            if body is None:  # the same bytes at every request (24 paragraphs built: ~40 us)
                body = self._pages[target.name] = page_body(target)
            headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *common,
            ]
            stream.write(response_head(200, "OK", headers) + (b"" if method == "HEAD" else body))
        stream.finish()


def _qname(wire: bytes) -> str | None:
    """The first question's name in a DNS query (lower case, no final dot); None if garbled.

    >>> _qname(bytes(12) + b"\\x03www\\x02kz\\x00\\x00\\x01\\x00\\x01")
    'www.kz'
    """
    labels: list[str] = []
    at = 12
    while at < len(wire):
        size = wire[at]
        if size == 0:
            return ".".join(labels).lower()
        if size > 63:
            return None
        labels.append(wire[at + 1 : at + 1 + size].decode("latin-1"))
        at += 1 + size
    return None


async def _send_bulk(stream: _Plain | _ServerTls, size: int, rate_bps: int | None) -> None:
    loop = asyncio.get_running_loop()
    chunk = _CHUNK if rate_bps is None else chunk_for(rate_bps)
    bucket = None if rate_bps is None else TokenBucket(rate_bps / 8, chunk, loop.time())
    sent = 0
    while sent < size and not stream.ep.closed:
        block = _BULK_BLOCK[: min(chunk, size - sent)]
        if bucket is not None:
            wait = bucket.delay(len(block), loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
        if stream.ep.closed:
            return
        stream.write(block)
        sent += len(block)


async def _hold(ep: Endpoint) -> None:
    """Read and discard everything, never answer, until the client goes away."""
    with contextlib.suppress(OSError):
        while await ep.read(_CHUNK):
            ep.consume()


class _Plain:
    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep

    async def read(self) -> bytes:
        return await self.ep.read(_CHUNK)

    def write(self, data: bytes) -> None:
        self.ep.write(data)

    def finish(self) -> None:
        pass


class _ServerTls:
    """A TLS server session over an endpoint, through memory BIOs (the lab's certificates)."""

    def __init__(self, ep: Endpoint, context: ssl.SSLContext) -> None:
        self.ep = ep
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._in, self._out, server_side=True)

    def _flush(self) -> None:
        pending = self._out.read()
        if pending:
            self.ep.write(pending)

    async def _fill(self) -> None:
        data = await self.ep.read(_CHUNK)
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if self._in.eof:
                    raise EOFError("closed during the handshake") from None
                await self._fill()

    async def read(self) -> bytes:
        while True:
            try:
                return self.obj.read(_CHUNK)
            except ssl.SSLWantReadError:
                self._flush()
                if self._in.eof:
                    return b""
                await self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def write(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def finish(self) -> None:
        with contextlib.suppress(ssl.SSLError):
            self.obj.unwrap()  # close_notify; the peer's is not awaited
        self._flush()


async def _request_head(stream: _Plain | _ServerTls) -> tuple[str, str] | None:
    """Read one request head; (method, path), or None for garbage or an early close."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = await stream.read()
        if not data or len(head) > _MAX_HEAD:
            return None
        head += data
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    return parts[0], parts[1]
