"""Asking the configured test helpers for a measurement's control, per vantage.

The config gives a top-level `helpers:` list and a vantage may override it; vantages with the
same list share one `HelperClient` (one connection pool). A helper that is slow, dead or
answers garbage never raises out of `HelperPool.ask`: the answer then has no response, the
failed attempts are counted in `ControlFailures` (exported as
``curfew_control_failures_total{helper,reason}``) and logged, and the verdict goes on without
a control. The whole exchange, failover included, is bounded by ``probe.timeouts.helper``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import replace

from probe.config import Config, Helper, ProbeSettings
from probe.control import dns_endpoints
from probe.helper.client import REASONS, HelperAnswer, HelperClient, HelperEndpoint
from probe.helper.protocol import THRequest
from probe.model import DnsObservation, Measurement

log = logging.getLogger("curfew.helpers")

# What the probe itself sends (probe.layers.http), so the helper fetches the page the same way.
_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"
_ACCEPT_LANGUAGE = "en-US,en;q=0.5"


class ControlFailures:
    """Failed helper exchanges by (helper label, reason), since start; the metric's source."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def declare(self, helpers: Iterable[str]) -> None:
        """Make every (helper, reason) series exist at 0, as Prometheus would have it."""
        for helper in helpers:
            for reason in REASONS:
                self.counts.setdefault((helper, reason), 0)

    def add(self, helper: str, reason: str) -> None:
        self.counts[(helper, reason)] = self.counts.get((helper, reason), 0) + 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        return dict(self.counts)


def _endpoint(h: Helper) -> HelperEndpoint:
    return HelperEndpoint(h.url, token_file=h.token_file)


def th_request(url: str, dns: DnsObservation | None, settings: ProbeSettings) -> THRequest:
    """The THRequest for a probe of `url` that resolved `dns`: the URL, the probe's request
    headers and the endpoints it resolved."""
    headers = {
        "User-Agent": (settings.user_agent,),
        "Accept": (_ACCEPT,),
        "Accept-Language": (_ACCEPT_LANGUAGE,),
    }
    return THRequest(
        http_request=url, http_request_headers=headers, tcp_connect=tuple(dns_endpoints(url, dns))
    )


class HelperPool:
    """The helpers of every vantage of one config, with their clients."""

    def __init__(self, config: Config, failures: ControlFailures | None = None) -> None:
        self.config = config
        self.failures = failures if failures is not None else ControlFailures()
        self._clients: dict[tuple[HelperEndpoint, ...], HelperClient] = {}
        self._by_vantage: dict[str, HelperClient] = {}
        self._closing: asyncio.Future[None] | None = None
        for vantage in config.vantages:
            helpers = tuple(_endpoint(h) for h in config.helpers_for(vantage))
            if not helpers:
                continue
            client = self._clients.get(helpers)
            if client is None:
                client = HelperClient(
                    helpers, timeout=config.probe.timeouts.helper, ca_bundle=config.tls.ca_bundle
                )
                self._clients[helpers] = client
                self.failures.declare(h.label for h in helpers)
            self._by_vantage[vantage.name] = client

    def wanted(self, m: Measurement) -> bool:
        """Whether `m` gets its control from a helper: a non-control target at a vantage with helpers."""
        return self.wanted_for(m.vantage, m.target)

    def wanted_for(self, vantage: str, target: str) -> bool:
        if vantage not in self._by_vantage:
            return False
        return not any(t.control for t in self.config.targets if t.name == target)

    async def ask(self, m: Measurement) -> HelperAnswer | None:
        """The helpers' answer for `m` (None when `m` gets no helper control), helpers named by
        URL; never raises on a helper's failure: the answer then has no response and says why."""
        return await self.ask_for(m.vantage, m.target, m.url, m.dns)

    async def ask_for(
        self, vantage: str, target: str, url: str, dns: DnsObservation | None
    ) -> HelperAnswer | None:
        """`ask` as soon as the probe of (`vantage`, `target`) resolved `dns`, before it connects."""
        if not self.wanted_for(vantage, target):
            return None
        client = self._by_vantage[vantage]
        request = th_request(url, dns, self.config.probe)
        answer = await client.ask(request, deadline=self.config.probe.timeouts.helper)
        for attempt in answer.attempts:
            self.failures.add(attempt.helper, attempt.reason)
            log.warning(
                "event=control-failure vantage=%s target=%s helper=%s reason=%s detail=%s",
                vantage,
                target,
                attempt.helper,
                attempt.reason,
                attempt.detail.replace(" ", "_")[:200],
            )
        # From here on a helper is named by its URL (what OONI's `test_helpers` records);
        # the metric above keeps the host, a small fixed set.
        urls = {h.label: h.url for h in client.helpers}
        return HelperAnswer(
            answer.response,
            urls.get(answer.helper, answer.helper) if answer.helper is not None else None,
            tuple(replace(a, helper=urls.get(a.helper, a.helper)) for a in answer.attempts),
        )

    @property
    def closed(self) -> bool:
        """Whether its clients are closed (`aclose`, or `close_later`'s delay has passed)."""
        return not self._clients and (self._closing is None or self._closing.done())

    async def aclose(self) -> None:
        closing = self._closing
        if closing is not None and not closing.done() and closing is not asyncio.current_task():
            closing.cancel()  # closed now, not later
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()
        self._by_vantage.clear()

    def close_later(self, delay: float) -> None:
        """Close the clients after `delay` seconds (asks in flight on a replaced pool finish first)."""
        if not self._clients:
            return

        async def later() -> None:
            await asyncio.sleep(delay)
            await self.aclose()

        self._closing = asyncio.ensure_future(later())
