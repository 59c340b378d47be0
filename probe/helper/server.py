"""`curfew helper`: the Web Connectivity test helper as a service (POST / with a THRequest).

Every refusal gets a clear HTTP status, a counter increment and one log line of key=value
pairs, e.g. ``event=helper-refused client=198.51.100.7 status=403 reason=private_target detail='10.0.0.1'``:

| status | reason | when |
|---|---|---|
| 400 | bad_json, bad_request, bad_url, bad_http | not a THRequest; not an http(s) URL; broken HTTP |
| 401 | unauthorized | a token is configured and the request does not carry it |
| 403 | private_target | the URL's host is loopback/private/link-local/bogon (without --allow-private) |
| 404, 405 | not_found, method_not_allowed | anything but POST / |
| 408 | header_timeout, body_timeout | the client is too slow to send its request |
| 413 | request_too_large, too_many_addresses | body over the cap; more `tcp_connect` entries than allowed |
| 429 | rate_limited | the client's address is over its rate (logged once per burst) |
| 431 | header_too_large | a request head over 16 KiB |
| 503 | overloaded, too_many_connections | every measurement slot or connection is taken |
| 504 | deadline | the measurement outlived the request's deadline |

Addresses the helper resolved or the probe sent that are bogons are not refused: they are
reported in `ip_info` (flag 4) and never connected to, as oohelperd does.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from probe.config import Vantage, parse_resolver
from probe.helper.client import read_token
from probe.helper.guard import RateLimiter, address_filter, check_url, client_key, token_matches
from probe.helper.httpserver import Head, HttpServer, Limits, Response
from probe.helper.measure import answer
from probe.helper.protocol import ProtocolError, dumps, parse_request
from probe.helper.settings import HelperFile, parse_listen
from probe.vantage import VantageNetwork, tls_contexts

log = logging.getLogger("probe.helper")

OUTCOMES: Final = (
    "ok",
    "bad_json",
    "bad_request",
    "bad_url",
    "bad_http",
    "unauthorized",
    "private_target",
    "not_found",
    "method_not_allowed",
    "header_timeout",
    "body_timeout",
    "request_too_large",
    "too_many_addresses",
    "rate_limited",
    "header_too_large",
    "overloaded",
    "too_many_connections",
    "deadline",
    "error",
)
SLOT_WAIT: Final = 0.5
"""Seconds a request waits for a free measurement slot before it is answered 503."""
DURATION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


class HelperMetrics:
    """The helper's own registry: requests by outcome, measurement duration, requests in flight."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "curfew_helper_requests",
            "Requests to the test helper, by outcome (ok or the refusal's reason).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # every series exists from the start, at 0
            self.requests.labels(outcome)
        self.duration = Histogram(
            "curfew_helper_request_duration_seconds",
            "Seconds from a complete request to its answer, for requests that were measured.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "curfew_helper_requests_in_flight", "Requests being measured now.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _json(status: int, body: bytes) -> Response:
    return Response(status, body, "application/json")


def helper_network(settings: HelperFile) -> VantageNetwork:
    """The helper's own network, built the way a vantage's is (resolver, source address, trust)."""
    cfg = settings.helper
    vantage = Vantage(name="helper", resolver=cfg.resolver, source_address=cfg.source_address)
    ca_bundle = cfg.ca_bundle if cfg.ca_bundle is not None else settings.tls.ca_bundle
    kind, host, port = parse_resolver(vantage.resolver)
    validating, permissive = tls_contexts(ca_bundle)
    return VantageNetwork(
        name=vantage.name,
        source_address=vantage.source_address,
        resolver_kind=kind,
        resolver_host=host,
        resolver_port=port,
        proxy=None,
        ca_bundle=str(ca_bundle) if ca_bundle else None,
        validating=validating,
        permissive=permissive,
    )


class HelperService:
    """The TH protocol over HttpServer's Handler interface: guard, measure, answer, count."""

    def __init__(
        self,
        settings: HelperFile,
        metrics: HelperMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = settings.helper
        self.settings = settings
        self.metrics = metrics if metrics is not None else HelperMetrics()
        self._token = read_token(cfg.token_file) if cfg.token_file is not None else None
        self._limiter = RateLimiter(cfg.rate, cfg.burst)
        self._slots = asyncio.Semaphore(cfg.max_concurrency)
        self._net = helper_network(settings)
        self._allow = address_filter(cfg.allow_private)
        self._monotonic = monotonic

    def _refused(
        self, client: str, status: int, reason: str, detail: str = "", log_it: bool = True
    ) -> Response:
        self.metrics.requests.labels(reason).inc()
        if log_it:
            extra = f" detail={detail!r}" if detail else ""
            log.warning("event=helper-refused client=%s status=%d reason=%s%s", client, status, reason, extra)
        return Response(status, f"{reason}{': ' + detail if detail else ''}\n".encode())

    def on_refused(self, client: str, status: int, reason: str) -> None:
        self._refused(client, status, reason)

    async def on_head(self, head: Head) -> Response | None:
        allowed, first = self._limiter.allow(client_key(head.client), self._monotonic())
        if not allowed:
            r = self._refused(head.client, 429, "rate_limited", log_it=first)
            return Response(r.status, r.body, headers=(("Retry-After", "1"),))
        if head.path != "/":
            return self._refused(head.client, 404, "not_found", head.path[:64])
        if head.method != "POST":
            r = self._refused(head.client, 405, "method_not_allowed", head.method[:16])
            return Response(r.status, r.body, headers=(("Allow", "POST"),))
        if self._token is not None and not token_matches(head.headers.get("authorization"), self._token):
            r = self._refused(head.client, 401, "unauthorized")
            return Response(r.status, r.body, headers=(("WWW-Authenticate", "Bearer"),))
        return None

    async def on_request(self, head: Head, body: bytes) -> Response:
        cfg = self.settings.helper
        try:
            request = parse_request(body)
        except ProtocolError as exc:
            reason = "bad_json" if str(exc).startswith("not JSON") else "bad_request"
            return self._refused(head.client, 400, reason, str(exc)[:200])
        refusal = check_url(request.http_request, cfg.allow_private)
        if refusal is not None:
            status = 403 if refusal[0] == "private_target" else 400
            return self._refused(head.client, status, refusal[0], refusal[1][:200])
        if len(request.tcp_connect) > cfg.max_addresses:
            detail = f"{len(request.tcp_connect)} > {cfg.max_addresses}"
            return self._refused(head.client, 413, "too_many_addresses", detail)
        try:
            await asyncio.wait_for(self._slots.acquire(), SLOT_WAIT)
        except TimeoutError:
            return self._refused(head.client, 503, "overloaded")
        start = self._monotonic()
        self.metrics.in_flight.inc()
        try:
            # The measurement keeps its own deadline; this one is the backstop for a bug.
            async with asyncio.timeout(cfg.request_timeout + 5.0):
                response = await answer(
                    request,
                    self._net,
                    self.settings.probe,
                    allow_address=self._allow,
                    max_redirects=cfg.max_redirects,
                    deadline=cfg.request_timeout,
                )
        except TimeoutError:
            return self._refused(head.client, 504, "deadline")
        except Exception:
            log.exception("event=helper-error client=%s url=%r", head.client, request.http_request[:200])
            self.metrics.requests.labels("error").inc()
            return Response(500, b"internal error\n")
        finally:
            self.metrics.in_flight.dec()
            self._slots.release()
            self.metrics.duration.observe(self._monotonic() - start)
        self.metrics.requests.labels("ok").inc()
        return _json(200, dumps(response))


class MetricsHandler:
    """GET /metrics of the helper's registry, on its own (usually loopback) listener."""

    def __init__(self, metrics: HelperMetrics) -> None:
        self.metrics = metrics

    async def on_head(self, head: Head) -> Response | None:
        if head.method not in ("GET", "HEAD"):
            return Response(405, b"only GET\n", headers=(("Allow", "GET"),))
        if head.path != "/metrics":
            return Response(404, b"not found\n")
        return None

    async def on_request(self, head: Head, body: bytes) -> Response:
        return Response(200, self.metrics.render(), CONTENT_TYPE_LATEST)

    def on_refused(self, client: str, status: int, reason: str) -> None:
        log.info("event=helper-metrics-refused client=%s status=%d reason=%s", client, status, reason)


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


@dataclass
class RunningHelper:
    service: HelperService
    server: HttpServer
    metrics_server: HttpServer | None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        scheme = "https" if self.service.settings.helper.tls_cert is not None else "http"
        host = self.server.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.server.port}/"

    async def close(self) -> None:
        await self.server.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()


async def serve_helper(settings: HelperFile) -> RunningHelper:
    """Start the helper (and its metrics endpoint, if configured); `close()` stops both."""
    cfg = settings.helper
    service = HelperService(settings)
    limits = Limits(
        max_connections=cfg.max_connections,
        max_per_client=cfg.max_connections_per_client,
        max_body=cfg.max_request_bytes,
        header_timeout=cfg.header_timeout,
        body_timeout=cfg.body_timeout,
    )
    tls = (
        server_tls(cfg.tls_cert, cfg.tls_key)
        if cfg.tls_cert is not None and cfg.tls_key is not None
        else None
    )
    server = HttpServer(service, limits, tls, client_key)
    await server.start(*parse_listen(cfg.listen))
    metrics_server = None
    if cfg.metrics_listen is not None:
        metrics_server = HttpServer(MetricsHandler(service.metrics), Limits(max_connections=16, max_body=0))
        try:
            await metrics_server.start(*parse_listen(cfg.metrics_listen))
        except BaseException:
            await server.close()
            raise
    return RunningHelper(service, server, metrics_server)
