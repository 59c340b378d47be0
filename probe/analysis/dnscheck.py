"""DNS consistency, following OONI Web Connectivity, with guards against its false positives.

An answer set is *consistent* when any of its addresses is shown genuine:

1. it completed a TLS handshake, with SNI = the name, whose chain validates for the name
   (OONI's rule: only the real operator can present that chain), at the vantage or at the
   control (a helper, or a control vantage, connects to the vantage's addresses too: this is
   what keeps a geo-DNS address that the censor then blocks at TCP or TLS from being called
   DNS tampering), or
2. it overlaps the answers the control vantage got for the same name.

Geo-DNS and CDNs give different addresses in different places, so disjoint answers alone
are not tampering; and bogons (127/8, RFC 1918...) alone are not tampering either (the lab
runs on loopback), as long as one of the rules above vouches for them.

An answer set is *inconsistent* when no rule vouches for it and there is positive evidence
against it: it matches a DNS blocking fingerprint, or it is disjoint from the control
vantage's answers, or (with no control vantage) it is all bogons while the control targets
at the same vantage resolved to public addresses. Otherwise consistency is unknown (None).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal
from urllib.parse import urlsplit

from probe.analysis.fingerprints import Fingerprint, Fingerprints
from probe.model import Measurement

Consistency = Literal["consistent", "inconsistent"]

# Ranges no public name should resolve to (IANA special-purpose registries, OONI's bogon list).
_BOGON_NETWORKS: Final = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


# Cached: the same few addresses come back answer after answer (a vantage's targets; the CDN
# addresses of an OONI import), and the check walks 23 networks (~50 us) every time.
@lru_cache(maxsize=65536)
def is_bogon(address: str) -> bool:
    """Whether `address` is an IP that no public name should resolve to.

    >>> is_bogon("127.0.0.1"), is_bogon("10.10.34.34"), is_bogon("93.184.216.34")
    (True, True, False)

    A string that is not an IP (a CNAME in the answers) is not a bogon.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _BOGON_NETWORKS)


def target_host(m: Measurement) -> str:
    """The name the measurement resolved: the DNS query, else the URL's host."""
    if m.dns is not None and m.dns.query:
        return m.dns.query.lower().rstrip(".")
    return (urlsplit(m.url).hostname or "").lower()


def tls_validated(m: Measurement) -> frozenset[str]:
    """Addresses that completed a TLS handshake for the target's name with a valid chain."""
    host = target_host(m)
    return frozenset(
        obs.address
        for obs in m.tls
        if obs.failure is None and obs.valid is True and obs.server_name.lower().rstrip(".") == host
    )


def _validated_by(control: Measurement | None, host: str) -> frozenset[str]:
    if control is None or target_host(control) != host:
        return frozenset()
    return tls_validated(control)


@dataclass(frozen=True)
class DnsCheck:
    """The outcome of `check_dns`; `consistency` None means "cannot tell"."""

    consistency: Consistency | None
    reason: str
    answers: tuple[str, ...] = ()
    bogons: tuple[str, ...] = ()
    fingerprint: Fingerprint | None = None

    @property
    def all_bogons(self) -> bool:
        return bool(self.answers) and len(self.bogons) == len(self.answers)


def _resolved(m: Measurement) -> tuple[str, ...]:
    if m.dns is None or m.dns.failure is not None:
        return ()
    return m.dns.answers


def check_dns(
    m: Measurement,
    control_vantage: Measurement | None = None,
    controls: Sequence[Measurement] = (),
    fingerprints: Fingerprints | None = None,
) -> DnsCheck:
    """Judge whether the DNS answers `m` got are genuine.

    `control_vantage` is the same target measured from the control vantage; `controls` are the
    control targets measured at the same vantage (used only for the bogon rule when there is
    no control vantage). Returns consistency None when DNS failed, did not run, or nothing
    decides either way.
    """
    answers = _resolved(m)
    if not answers:
        return DnsCheck(None, "no DNS answers to check")
    bogons = tuple(a for a in answers if is_bogon(a))

    validated = sorted(tls_validated(m) & set(answers))
    if validated:
        return DnsCheck(
            "consistent",
            f"{validated[0]} presented a valid certificate chain for {target_host(m)}",
            answers,
            bogons,
        )
    # The control (a helper, or a control vantage that also tried the vantage's addresses)
    # validated one of our answers for the name: genuine, even if our own handshake with it
    # was then blocked. A failure on it is the censor's at TCP or TLS, not lying DNS.
    vouched = sorted(_validated_by(control_vantage, target_host(m)) & set(answers))
    if vouched:
        return DnsCheck(
            "consistent",
            f"{vouched[0]} presented a valid certificate chain for {target_host(m)} to the control",
            answers,
            bogons,
        )

    control_answers = _resolved(control_vantage) if control_vantage is not None else ()
    shared = sorted(set(answers) & set(control_answers))
    if shared:
        return DnsCheck("consistent", f"{shared[0]} is also what the control vantage got", answers, bogons)

    fp = fingerprints.match_dns(answers) if fingerprints is not None else None
    if fp is not None:
        return DnsCheck(
            "inconsistent", f"the answers match the DNS fingerprint {fp.name}", answers, bogons, fp
        )

    if control_answers:
        kind = "bogon answers" if len(bogons) == len(answers) else "answers"
        return DnsCheck(
            "inconsistent",
            f"{kind} {', '.join(answers)} are disjoint from the control vantage's and never "
            "validated over TLS",
            answers,
            bogons,
        )

    # No control vantage to compare with. Bogons still stand out when the control targets at
    # this very vantage got public addresses; in the lab, where every target sits on
    # loopback, the control targets get bogons too and no claim is made.
    if bogons and len(bogons) == len(answers):
        control_public = any(not is_bogon(a) for c in controls for a in _resolved(c))
        if control_public:
            return DnsCheck(
                "inconsistent",
                f"only bogon answers ({', '.join(bogons)}) while the control targets resolve to "
                "public addresses",
                answers,
                bogons,
            )
    return DnsCheck(
        None, "no control vantage answers and no valid TLS chain to vouch for the answers", answers, bogons
    )
