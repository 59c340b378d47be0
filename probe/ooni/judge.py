"""curfew's verdict on an imported OONI measurement.

`probe.analysis.verdict.analyze` decides, with the test helper's view as the control vantage.
Two things OONI's data gives that curfew's own probes get differently:

- a control target: curfew measures control targets at the vantage to prove the vantage itself
  works. An OONI probe proved it by reaching the test helper in the same run; when the helper
  answered (no ``control_failure``), that reachability is the control target (`reachability`).
- the redirect chain: `parse` puts the chain's outcome in the measurement's HTTP step, so a
  blocked next hop is judged as that hop's failure against the helper's fetch of the whole
  chain, and a chain that breaks for the helper too is the site's own (target_down, or
  inconclusive when it breaks differently), never censorship. The reason names the hop.

And one guard against a false positive of OONI's classic analysis that curfew's HTTP comparison
shares on plain-HTTP sites: a server-side challenge (a CAPTCHA or bot check from the site's
own CDN) differs from the helper's page without any censor in the path (`server_side`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from probe.analysis.dnscheck import is_bogon
from probe.analysis.fingerprints import Fingerprint, Fingerprints, default_fingerprints
from probe.analysis.helper_answer import with_valid_addresses
from probe.analysis.replay import measurement_from_dict
from probe.analysis.verdict import analyze
from probe.helper.control import control_measurement
from probe.helper.protocol import ProtocolError, THResponse
from probe.model import Analysis, ControlRecord, HttpObservation, Measurement
from probe.ooni.parse import CONTROL_VANTAGE, Imported

_CHALLENGE_HEADERS: Final = (
    ("cf-mitigated", re.compile(r"challenge", re.I)),
    ("cf-chl-bypass", re.compile(r".")),
    ("x-amzn-waf-action", re.compile(r"captcha|challenge", re.I)),
    ("x-datadome", re.compile(r".")),
    ("x-sucuri-block", re.compile(r".")),
)
_CHALLENGE_BODY: Final = re.compile(
    r"g-recaptcha|h-captcha|hcaptcha\.com|cf-chl-|challenge-platform|/cdn-cgi/challenge|"
    r"Attention Required! \| Cloudflare|captcha-delivery\.com|ddos-guard|"
    r"Please complete the security check|<title>Just a moment\.\.\.</title>|cf-browser-verification|"
    r"jschl_vc|_cf_chl_opt|"
    # The CDN's own refusal to serve the country (server-side geo-blocking, ts-017's known
    # limitation): Akamai's reference page, CloudFront's and Cloudflare's access-denied pages.
    r"errors\.edgesuite\.net|The request could not be satisfied|used Cloudflare to restrict access",
    re.I,
)


def server_side(http: HttpObservation | None) -> str | None:
    """What marks `http` as the site's own bot check, CAPTCHA or geo-block page, or None.

    >>> server_side(HttpObservation("http://x/", None, 0, 0, status=403,
    ...     body_sample='<div class="g-recaptcha"></div>'))
    'a CAPTCHA in the page (g-recaptcha)'
    """
    if http is None or http.status is None:
        return None
    for name, pattern in _CHALLENGE_HEADERS:
        value = http.header(name)
        if value is not None and pattern.search(value):
            return f"the {name} header"
    if http.body_sample:
        found = _CHALLENGE_BODY.search(http.body_sample)
        if found:
            return f"a CAPTCHA in the page ({found.group(0)})"
    return None


def reachability(imported: Imported) -> Measurement:
    """The probe's exchange with the test helper, as a control target that succeeded."""
    m = imported.measurement
    return Measurement(
        vantage=m.vantage,
        target=CONTROL_VANTAGE,
        url="https://test-helper.ooni.invalid/",
        started_at=m.started_at,
        runtime=0.0,
        http=HttpObservation("https://test-helper.ooni.invalid/", None, 0.0, 0.0, status=200),
        uid="0" * 32,
    )


def control_record(imported: Imported) -> ControlRecord:
    """What the store keeps of the control: the helper's answer (OONI's `control`) or why there
    was none (`control_failure`), and which helper answered."""
    response = imported.th_response.to_json() if imported.th_response is not None else None
    failure = imported.control_failure
    if response is None and failure is None:
        failure = "unknown_failure: the control could not be read"
    return ControlRecord(
        source=f"helper:{imported.test_helper or 'ooni'}", response=response, failure=failure
    )


def redirected_to_blockpage(
    chain: tuple[str, ...], fingerprints: Fingerprints
) -> tuple[str, Fingerprint] | None:
    """The first hop of the chain that a known censor's redirect sent the probe to, and its
    fingerprint. The probe followed the ISP's 302 (warning.rt.ru, fz139.ttk.ru...), so the
    chain's final response is the warning page itself, which need not carry blockpage text nor
    differ from the site's page in the headers OONI compares: the redirect is the evidence. A
    hop's URL is the Location the previous hop answered, resolved against it."""
    for url in chain[1:]:
        fp = fingerprints.match_header("location", url)
        if fp is not None:
            return url, fp
    return None


def _vague(fingerprints: Fingerprints, name: str) -> bool:
    fp = fingerprints.get(name)
    return fp is not None and fp.scope == "vbw"


def judge(imported: Imported, fingerprints: Fingerprints | None = None) -> Analysis:
    """The verdict on one imported measurement (pure)."""
    m = imported.measurement
    if imported.curfew_controls is not None:
        controls = imported.curfew_controls  # curfew's own control targets, exported with it
    else:
        controls = (reachability(imported),) if imported.control is not None else ()
    fps = fingerprints if fingerprints is not None else default_fingerprints()
    analysis = analyze(m, controls=controls, control_vantage=imported.control, fingerprints=fps)
    redirected = redirected_to_blockpage(imported.chain, fps)
    if (
        redirected is not None
        and analysis.verdict in ("ok", "http_blocked")
        # A redirect to a known censor's page names the censor better than a vague word
        # ("Доступ ограничен", scope vbw) on the page it led to.
        and (analysis.fingerprint is None or _vague(fps, analysis.fingerprint))
        and analysis.failure is None
    ):
        url, fp = redirected
        return replace(
            analysis,
            verdict="http_blocked",
            operation="http_request",
            failure=None,
            reason=f"the response for {m.target} redirects to {url}, which matches the blockpage "
            f"fingerprint {fp.name} ({fp.location})",
            blocking="http-diff",
            accessible=False,
            fingerprint=fp.name,
        )
    if (
        analysis.verdict == "dns_blocked"
        and analysis.failure is None
        and analysis.fingerprint is None
        and m.dns is not None
        and not any(is_bogon(a) for a in m.dns.answers)
        and (marker := server_side(m.http) or m.labels.get("ooni_server_side")) is not None
    ):
        # Disjoint answers were blamed because the page differed from the helper's; but the page
        # is the site's own CDN's bot check or refusal, which no censor's server serves: the
        # address is the site's (a geo-DNS node that challenged this network), not a lie.
        return Analysis(
            "ok",
            None,
            None,
            f"the answers for {m.target} differ from the test helper's, but the address served the "
            f"site's own bot check or refusal ({marker}), not a censor's page: a CDN node, not tampering",
            accessible=True,
            dns_consistency=analysis.dns_consistency,
            http_diff=analysis.http_diff,
        )
    if (
        analysis.verdict == "http_blocked"
        # A vague word ("Access Denied", scope vbw) on the site's own CDN refusal is no censor's.
        and (analysis.fingerprint is None or _vague(fps, analysis.fingerprint))
        and analysis.failure is None
    ):
        # The page itself is not kept on an "ok" row: the marker travels in the labels, so a
        # judgement from stored data (rejudge_stored) finds it again.
        marker = server_side(m.http) or m.labels.get("ooni_server_side")
        if marker is not None:
            return Analysis(
                "ok",
                None,
                None,
                f"the site answered {m.target} with its own bot check or refusal ({marker}), "
                "not a censor's page: the network delivered it",
                accessible=True,
                dns_consistency=analysis.dns_consistency,
                http_diff=analysis.http_diff,
            )
    hop = imported.chain_failed_hop
    if hop is not None and hop > 0 and analysis.operation == "http_request":
        url = imported.chain[hop]
        if analysis.verdict in ("target_down", "inconclusive"):
            note = f"; the site's own redirect to {url} (hop {hop}) fails for the test helper too"
        else:
            note = f"; the redirect's next hop {url} (hop {hop}) failed while the test helper followed it"
        return replace(analysis, reason=analysis.reason + note)
    return analysis


def rejudge_stored(observations: Mapping[str, Any], fingerprints: Fingerprints | None = None) -> Analysis:
    """The verdict for an imported measurement, judged again from its stored `observations`
    (`curfew analyze --rebuild --rejudge`): the test helper's answer kept as its `control`, the
    redirect chain and OONI's identity kept in its labels, and the same rules as on import."""
    m = measurement_from_dict(observations)
    labels = m.labels
    th = None
    control = None
    response = observations.get("control")
    if isinstance(response, Mapping):
        try:
            th = THResponse.from_json(response)
        except ProtocolError:
            th = None
        else:
            control = with_valid_addresses(
                control_measurement(
                    th, m.url, vantage=CONTROL_VANTAGE, target=m.target, started_at=m.started_at
                ),
                th.valid_addresses(),
            )
    chain = tuple(labels["ooni_redirect_chain"].split(" -> ")) if labels.get("ooni_redirect_chain") else ()
    failed_hop = None
    if m.http is not None and m.http.failure is not None:
        failed_hop = chain.index(m.http.url) if m.http.url in chain else 0
    cc, _, asn = m.vantage.partition("-")
    imported = Imported(
        measurement=m,
        control=control,
        th_response=th,
        control_failure=observations.get("control_failure"),
        test_helper=None,
        measurement_uid=labels.get("ooni_measurement_uid"),
        input=labels.get("ooni_input", m.url),
        report_id=labels.get("ooni_report_id"),
        probe_cc=cc,
        probe_asn=asn,
        probe_network_name=None,
        ooni_blocking=None,
        ooni_accessible=None,
        chain=chain,
        chain_failed_hop=failed_hop,
    )
    return judge(imported, fingerprints)


def is_imported(observations: Mapping[str, Any]) -> bool:
    """Whether stored `observations` came from an OONI import (its labels say so)."""
    labels = observations.get("labels")
    return isinstance(labels, Mapping) and labels.get("source") == "ooni"
