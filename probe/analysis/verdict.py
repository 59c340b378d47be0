"""From one measurement and its comparisons to a verdict: how (or whether) the target is blocked.

`analyze` is pure: it reads observations and returns an `Analysis`; it opens no socket and
reads no clock. The decision order and the false-positive guards are described in
docs/verdicts.md; in short:

0. a measurement that failed on the probe's own machine (`local_failure: ...`) is never judged
   blocked or down (inconclusive), and such controls are left out;
1. vantage_down: the target and every control target fail, and the resolver fails too;
2. target_down: the control vantage fails the same way;
3. dns_blocked by inconsistent answers (these explain any later failure);
4. inconclusive when the control vantage failed differently, or nothing tells a vantage
   problem from a block;
5. the failing step at the vantage, with the controls fine: dns_blocked, tcp_blocked
   (including an idle connection reset), tls_blocked, tls_mitm, http_blocked (http-failure);
6. the response: http_blocked by fingerprint, redirect or http-diff (plain HTTP only);
7. throttled: >= 10x slower than the control targets (and the baseline, when given);
8. ok.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from probe import failures as F
from probe.analysis.dnscheck import DnsCheck, check_dns
from probe.analysis.fingerprints import Fingerprints, default_fingerprints
from probe.analysis.httpdiff import compare_http, redirect_host
from probe.analysis.local import local_failure
from probe.model import Analysis, Measurement, Operation

THROTTLING_FACTOR: Final = 10.0
"""A target this many times slower than the controls (dd-007) is throttled."""
THROTTLING_CEILING_BPS: Final = 5_000_000.0
"""...and only if it is slow in absolute terms. Policers seen in the wild hold a flat rate far
below this (Russia/Twitter 2021: 130-150 kbit/s); a target at tens of Mbit/s next to a faster
control is a busy machine or a far CDN, not a censor (seen in the lab under CPU contention)."""

_CONNECTIVITY: Final[tuple[Operation, ...]] = ("dns", "tcp_connect", "tls_handshake", "http_request")


def failing_step(m: Measurement) -> tuple[Operation | None, str | None]:
    """The first step, in probe order, that failed, and its OONI failure string.

    A step with several addresses fails only if it failed on every one. A TLS handshake that
    completed with a chain that does not validate counts as a tls_handshake failure named by
    its validation failure. Returns ``(None, None)`` when every step that ran succeeded.
    """
    if m.dns is not None:
        if m.dns.failure is not None:
            return "dns", m.dns.failure
        if not m.dns.answers and m.dns.engine != "proxy":  # through a proxy, DNS is the proxy's
            return "dns", F.DNS_NO_ANSWER
    if m.tcp and all(obs.failure is not None for obs in m.tcp):
        return "tcp_connect", m.tcp[0].failure
    if m.tls:
        completed = [obs for obs in m.tls if obs.failure is None]
        if not completed:
            return "tls_handshake", m.tls[0].failure
        if all(obs.valid is False for obs in completed):
            return "tls_handshake", completed[0].validation_failure or F.SSL_INVALID_CERTIFICATE
    if m.http is not None and m.http.failure is not None:
        return "http_request", m.http.failure
    if m.throughput is not None and m.throughput.failure is not None:
        return "throughput", m.throughput.failure
    return None, None


def connectivity_failure(m: Measurement) -> tuple[Operation | None, str | None]:
    """Like `failing_step`, but a slow or cut bulk download does not make a vantage "fail"."""
    op, failure = failing_step(m)
    return (op, failure) if op in _CONNECTIVITY else (None, None)


def same_failure(a: tuple[Operation | None, str | None], b: tuple[Operation | None, str | None]) -> bool:
    """Whether two (operation, failure) pairs fail the same way: same step, same family."""
    return a[0] is not None and a[0] == b[0] and _family(a[1]) == _family(b[1])


def _family(failure: str | None) -> str:
    """Group failures that mean the same thing, so "fails the same way" tolerates noise."""
    if failure in (F.DNS_NXDOMAIN, F.DNS_NO_ANSWER):
        return "no_such_name"
    if failure in (F.DNS_SERVFAIL, F.DNS_REFUSED):
        return "resolver_error"
    if failure in (F.CONNECTION_RESET, F.EOF_ERROR):
        return "reset"
    if failure in (F.HOST_UNREACHABLE, F.NETWORK_UNREACHABLE):
        return "unreachable"
    if failure is not None and failure.startswith("unknown_failure"):
        return "unknown"
    return failure or "none"


def vantage_wide(
    op: Operation | None, failure: str | None, controls: Sequence[Measurement], consistency: str | None
) -> Analysis | None:
    """`vantage_down` (or `inconclusive`) when the target failed and so did every control target.

    A shutdown of the vantage looks like a block of everything: it is claimed only with
    control targets to show it, and only when name resolution died too; every control target
    failing while the resolver still answered is a vantage-wide problem of unknown kind.
    Returns None when the target succeeded or some control target did.
    """
    if op is None or not controls:
        return None
    control_failures = [connectivity_failure(c) for c in controls]
    if any(c_op is None for c_op, _ in control_failures):
        return None
    if op == "dns" or any(c_op == "dns" for c_op, _ in control_failures):
        return Analysis(
            "vantage_down",
            op,
            failure,
            f"the target ({op}: {failure}) and all {len(controls)} control targets failed, "
            "and name resolution failed: the vantage is cut off",
            accessible=False,
            dns_consistency=consistency,
        )
    return Analysis(
        "inconclusive",
        op,
        failure,
        f"the target ({op}: {failure}) and every control target failed while the resolver "
        "still answered: a vantage-wide problem, not a block of this target",
        dns_consistency=consistency,
    )


def _is_https(m: Measurement) -> bool:
    return urlsplit(m.url).scheme == "https"


def analyze(
    m: Measurement,
    *,
    controls: Sequence[Measurement] = (),
    control_vantage: Measurement | None = None,
    fingerprints: Fingerprints | None = None,
    baseline_bps: float | None = None,
) -> Analysis:
    """Decide the verdict for measurement `m`.

    `controls`: the control targets measured at the same vantage in the same round.
    `control_vantage`: the same target measured from a control vantage, if any.
    `fingerprints`: blockpage fingerprints (default: the bundled set).
    `baseline_bps`: the target's usual throughput at this vantage, if known.
    """
    fps = fingerprints if fingerprints is not None else default_fingerprints()
    # 0. The probe's own machine failed (no descriptor, no memory): nothing was measured, and a
    #    control that failed so vouches for nothing (docs/verdicts.md, "The daemon's own failures").
    own = local_failure(m)
    if own is not None:
        return Analysis(
            "inconclusive",
            own[0],
            own[1],
            f"the probe's own machine failed at {own[0]} ({own[1]}): not a measurement of the network",
        )
    controls = [c for c in controls if local_failure(c) is None]
    if control_vantage is not None and local_failure(control_vantage) is not None:
        control_vantage = None
    dns = check_dns(m, control_vantage, controls, fps)
    op, failure = connectivity_failure(m)

    # 1. A shutdown of the vantage looks like a block of everything; claim it only with
    #    control targets to show it, and only when name resolution died too.
    wide = vantage_wide(op, failure, controls, dns.consistency)
    if wide is not None:
        return wide

    # 2. The control vantage failing the same way means the target is down, not censored.
    cv_op, cv_failure = connectivity_failure(control_vantage) if control_vantage else (None, None)
    if same_failure((op, failure), (cv_op, cv_failure)):
        return Analysis(
            "target_down",
            op,
            failure,
            f"the control vantage fails the same way ({op}: {cv_failure}): the target is down",
            accessible=False,
            dns_consistency=dns.consistency,
        )

    # 3. An intercepting chain is interception whatever DNS said: a tampered answer that leads
    #    to a rogue certificate is how the interceptor got in the path (geo-DNS answers that
    #    could not be vouched for would otherwise hide the July 2019 interception).
    #    Only a chain minted for the name by an unknown authority: a blockpage server's
    #    certificate for another name (ssl_invalid_hostname) is DNS tampering.
    if op == "tls_handshake" and dns.consistency == "inconsistent" and failure == "ssl_unknown_authority":
        mitm = _tls_mitm(m, op, failure, control_vantage, dns)
        if mitm is not None:
            return mitm

    # 4. Lying DNS explains whatever happens next (a loopback answer gives connection_refused).
    if dns.consistency == "inconsistent" and _dns_explains_outcome(m, op, dns, control_vantage, fps):
        return _dns_tampering(m, dns, fps)

    if op is not None:
        # 5. A failure we cannot pin on the target at this vantage.
        if cv_op is not None:
            return Analysis(
                "inconclusive",
                op,
                failure,
                f"the target failed at {op} ({failure}) and the control vantage failed differently "
                f"({cv_op}: {cv_failure})",
                dns_consistency=dns.consistency,
            )
        mitm = _tls_mitm(m, op, failure, control_vantage, dns)
        if mitm is not None:
            return mitm
        if not controls:
            return Analysis(
                "inconclusive",
                op,
                failure,
                f"the target failed at {op} ({failure}) and no control target was measured to tell "
                "a vantage problem from a block",
                dns_consistency=dns.consistency,
            )
        # 6. Step 1 returned when every control failed, so one succeeded: the vantage works
        #    and the failing step is the block.
        return _step_block(m, op, failure, dns)

    # 7. The target answered: is the answer the real one?
    http_block, http_diff = _http_block(m, control_vantage, fps, dns)
    if http_block is not None:
        return http_block

    # 8. Throttling: slow only for the target, compared with controls at the same moment.
    return _throughput(m, controls, baseline_bps, dns, http_diff)


def _dns_explains_outcome(
    m: Measurement,
    op: Operation | None,
    dns: DnsCheck,
    control_vantage: Measurement | None,
    fps: Fingerprints,
) -> bool:
    """Whether inconsistent answers amount to a block rather than an unusual CDN node.

    Like OONI, disjoint answers are blamed only when something else is wrong: a later step
    failed, the answers are bogons or a known blocking address, or the page that came back is a
    blockpage or differs from the control vantage's. A plain-HTTP page fetched from a
    different (geo-DNS) address that matches the control's page is not a block.
    """
    if op is not None or dns.bogons or dns.fingerprint is not None:
        return True
    if m.http is None or m.http.status is None:
        return True  # nothing fetched to show the address serves the real site
    if fps.match_http(m.http) is not None:
        return True
    control_http = control_vantage.http if control_vantage is not None else None
    if control_http is None or control_http.status is None:
        return True  # no page to compare with: the answers stay unexplained
    return compare_http(m.http, control_http).http_diff is not False


def _dns_tampering(m: Measurement, dns: DnsCheck, fps: Fingerprints) -> Analysis:
    # dns_bogon_error only when every answer is a bogon: a mixed set may just carry a stray
    # private address, and the failure names what was seen, not a guess.
    failure = F.DNS_BOGON if dns.all_bogons else None
    fingerprint = dns.fingerprint.name if dns.fingerprint else None
    if fingerprint is None and m.http is not None and m.http.failure is None:
        matched = fps.match_http(m.http)
        fingerprint = matched.name if matched else None
    return Analysis(
        "dns_blocked",
        "dns",
        failure,
        f"DNS answers for {m.target} are not genuine: {dns.reason}",
        blocking="dns",
        accessible=False,
        dns_consistency="inconsistent",
        fingerprint=fingerprint,
    )


def _tls_mitm(
    m: Measurement,
    op: Operation,
    failure: str | None,
    control_vantage: Measurement | None,
    dns: DnsCheck,
) -> Analysis | None:
    """Interception: a handshake that completes with a chain that does not validate."""
    if op != "tls_handshake" or not any(obs.failure is None for obs in m.tls):
        return None
    rogue = m.tls_issuer or "an unknown issuer"
    if control_vantage is not None and control_vantage.tls:
        control_valid = any(obs.failure is None and obs.valid is True for obs in control_vantage.tls)
        if not control_valid:
            return None  # the control vantage did not see a valid chain either: not proven
        issuer = control_vantage.tls_issuer  # a helper's answer says valid, not who issued it
        evidence = "the control got a valid chain" + (f" from {issuer}" if issuer else "")
    else:
        evidence = "no control vantage chain to compare"
    return Analysis(
        "tls_mitm",
        "tls_handshake",
        failure,
        f"the TLS chain for {m.target} does not validate ({failure}); issuer {rogue!r}; {evidence}",
        blocking="tls",
        accessible=False,
        dns_consistency=dns.consistency,
    )


def _step_block(m: Measurement, op: Operation, failure: str | None, dns: DnsCheck) -> Analysis:
    """The target failed at `op` while a control target at the same vantage succeeded."""
    consistency = dns.consistency
    if op == "dns":
        if m.dns is not None and m.dns.engine == "proxy":
            return Analysis(
                "inconclusive",
                op,
                failure,
                f"name resolution failed at the proxy ({failure}); the proxy's resolver is not the vantage's",
                dns_consistency=consistency,
            )
        return Analysis(
            "dns_blocked",
            op,
            failure,
            f"resolving {m.target} failed ({failure}) while the control targets resolved",
            blocking="dns",
            accessible=False,
            dns_consistency=consistency,
        )
    if op in ("tls_handshake", "http_request") and any(obs.idle_reset for obs in m.tcp):
        # The idle connection was reset before a byte was sent: the block keys on the address.
        return Analysis(
            "tcp_blocked",
            "tcp_connect",
            F.CONNECTION_RESET,
            f"an idle connection to {m.target} was reset ({op} failed: {failure}): the address is blocked",
            blocking="tcp_ip",
            accessible=False,
            dns_consistency=consistency,
        )
    if op == "tcp_connect":
        return Analysis(
            "tcp_blocked",
            op,
            failure,
            f"TCP connect failed on every address of {m.target} ({failure}) "
            "while the control targets connected",
            blocking="tcp_ip",
            accessible=False,
            dns_consistency=consistency,
        )
    if op == "tls_handshake":
        return Analysis(
            "tls_blocked",
            op,
            failure,
            f"the TLS handshake with {m.target} failed on every address ({failure}) after TCP connected",
            blocking="tls",
            accessible=False,
            dns_consistency=consistency,
        )
    return Analysis(
        "http_blocked",
        op,
        failure,
        f"the HTTP request to {m.target} failed ({failure}) after the connection was established",
        blocking="http-failure",
        accessible=False,
        dns_consistency=consistency,
    )


def _http_block(
    m: Measurement, control_vantage: Measurement | None, fps: Fingerprints, dns: DnsCheck
) -> tuple[Analysis | None, bool | None]:
    """A response that is a blockpage, a warning redirect or (plain HTTP) differs from the control.

    Returns the blocking analysis, or None and the http-diff outcome (None when not compared).
    """
    if m.http is None or m.http.status is None:
        return None, None
    matched = fps.match_http(m.http)
    if matched is not None:
        return Analysis(
            "http_blocked",
            "http_request",
            None,
            f"the response for {m.target} matches the blockpage fingerprint "
            f"{matched.name} ({matched.location})",
            blocking="http-diff",
            accessible=False,
            dns_consistency=dns.consistency,
            fingerprint=matched.name,
        ), None
    control_http = control_vantage.http if control_vantage is not None else None
    if control_http is None or control_http.status is None:
        return None, None  # no control response: a diff cannot be claimed
    if _is_https(m):
        # The TLS chain authenticated the server: any difference is the server's own doing.
        return None, None
    got, expected = redirect_host(m.http), redirect_host(control_http)
    if got is not None and got != expected:
        return Analysis(
            "http_blocked",
            "http_request",
            None,
            f"the response for {m.target} redirects to {got} while the control vantage got "
            f"{'a redirect to ' + expected if expected else 'no redirect'}",
            blocking="http-diff",
            accessible=False,
            dns_consistency=dns.consistency,
            http_diff=True,
        ), True
    comparison = compare_http(m.http, control_http)
    if comparison.http_diff:
        return Analysis(
            "http_blocked",
            "http_request",
            None,
            f"the response for {m.target} (status {m.http.status}) differs from the control vantage's "
            f"(status {control_http.status}) in status, length, headers and title",
            blocking="http-diff",
            accessible=False,
            dns_consistency=dns.consistency,
            http_diff=True,
        ), True
    return None, comparison.http_diff


def _rate(m: Measurement) -> float | None:
    """The target's bulk rate in bit/s; a download that stalled with nothing received is 0."""
    tp = m.throughput
    if tp is None:
        return None
    if tp.bps is not None:
        return tp.bps
    return 0.0 if tp.t > tp.t0 else None


def _throughput(
    m: Measurement,
    controls: Sequence[Measurement],
    baseline_bps: float | None,
    dns: DnsCheck,
    http_diff: bool | None,
) -> Analysis:
    """Throttled or ok, from the bulk download compared with the control targets'."""
    ok_reason = f"every step for {m.target} succeeded"
    tp = m.throughput
    if tp is None:
        return _ok(ok_reason, dns, http_diff)
    if tp.failure is not None and tp.failure != F.GENERIC_TIMEOUT:
        # A reset or EOF mid-download is not a rate; it is a different (unclassified) block.
        return Analysis(
            "inconclusive",
            "throughput",
            tp.failure,
            f"the page for {m.target} loaded but the bulk download failed ({tp.failure})",
            accessible=True,
            dns_consistency=dns.consistency,
        )
    rate = _rate(m)
    control_rates = [r for c in controls if c.throughput is not None and (r := _rate(c))]
    if rate is None or not control_rates:
        return _ok(ok_reason + " (no control throughput to compare)", dns, http_diff)
    control_rate = statistics.median(control_rates)
    ratio = rate / control_rate
    slower_than_controls = rate * THROTTLING_FACTOR <= control_rate and rate <= THROTTLING_CEILING_BPS
    slower_than_baseline = baseline_bps is None or rate * THROTTLING_FACTOR <= baseline_bps
    if slower_than_controls and slower_than_baseline:
        slowdown = f"{1 / ratio:.0f}x slower" if ratio > 0 else "stalled, far slower"
        cut = " and the download timed out" if tp.failure == F.GENERIC_TIMEOUT or not tp.complete else ""
        return Analysis(
            "throttled",
            "throughput",
            tp.failure,
            f"the bulk download of {m.target} ran at {rate / 1000:.0f} kbit/s, {slowdown} "
            f"than the control targets ({control_rate / 1000:.0f} kbit/s){cut}",
            blocking="throttling",
            accessible=True,
            dns_consistency=dns.consistency,
            throughput_ratio=ratio,
        )
    if rate * THROTTLING_FACTOR <= control_rate and rate > THROTTLING_CEILING_BPS:
        why = f"slower than the control targets but still {rate / 1e6:.0f} Mbit/s: not a policer's rate"
    elif slower_than_controls:
        why = f"slower than the control targets but within {THROTTLING_FACTOR:.0f}x of its baseline"
    else:
        why = f"throughput within {THROTTLING_FACTOR:.0f}x of the control targets (ratio {ratio:.2f})"
    return _ok(f"{ok_reason}; {why}", dns, http_diff, ratio)


def _ok(reason: str, dns: DnsCheck, http_diff: bool | None, ratio: float | None = None) -> Analysis:
    return Analysis(
        "ok",
        None,
        None,
        reason,
        accessible=True,
        dns_consistency=dns.consistency,
        http_diff=http_diff,
        throughput_ratio=ratio,
    )
