"""The bundled file holds every row of ooni/blocking-fingerprints, and its rows mean what they say:
known blockpages, redirects and DNS answers match; a known false positive (scope fp) and a benign
injection (injb) never make a page blocked; a vague word (vbw) yields to anything specific."""

from __future__ import annotations

import re
from collections import Counter

from probe.analysis.fingerprints import NOT_EVIDENCE, default_fingerprints
from probe.analysis.verdict import analyze

from .builders import control, http, measurement

LAB = {"url": "http://site.lab/", "host": "site.lab"}
LAB_CONTROL = control(answers=("127.0.0.2",))


def test_every_upstream_row_loads() -> None:
    fps = default_fingerprints()
    by_location = Counter("dns" if fp.location == "dns" else "http" for fp in fps)
    # 1686 HTTP rows and 139 DNS rows upstream (commit 4ad5abef), minus cl.dns_br_localhost,
    # plus the two lab_* rows (both HTTP).
    assert by_location == {"http": 1686 + 2, "dns": 138}
    assert {fp.scope for fp in fps} == {"nat", "isp", "prod", "inst", "vbw", "prov", "fp", "injb"}
    assert fps.get("cl.dns_br_localhost") is None
    # Upstream reuses a few names for different patterns: both rows are kept, the second renamed.
    assert fps.get("cp.e_unk_id_blocked") is not None and fps.get("cp.e_unk_id_blocked.2") is not None
    for fp in fps:
        if fp.pattern_type == "regexp":
            re.compile(fp.pattern)


def test_a_russian_rkn_blockpage_matches() -> None:
    body = "<html><body><p>Доступ к сайту ограничен в соответствии с Федеральными законами</p></body></html>"
    matched = default_fingerprints().match_http(http(body_sample=body))
    assert matched is not None and matched.name == "ooni.ru_0" and matched.expected_countries == ("RU",)


def test_an_iranian_10_10_34_34_answer_matches() -> None:
    matched = default_fingerprints().match_dns(("10.10.34.34",))
    assert matched is not None and (matched.name, matched.scope) == ("ooni.ir_4", "nat")
    ipv6 = default_fingerprints().match_dns(("d0::11",))
    assert ipv6 is not None and ipv6.name == "ooni.ir_ipv6_1"


def test_a_turkish_blockpage_and_poisoned_answer_match() -> None:
    fps = default_fingerprints()
    page = fps.match_http(http(body_sample="<title>Telekomünikasyon İletişim Başkanlığı</title>"))
    assert page is not None and page.name == "ooni.tr_0"
    answer = fps.match_dns(("8.8.8.8", "195.175.254.2"))
    assert answer is not None and answer.name == "ooni.tr_6"


def test_a_kazakh_blockpage_matches() -> None:
    body = "<p>Ресурста ақпараттық қауіпсіздікке төнетін қауіп-қатер бар</p>"
    matched = default_fingerprints().match_http(http(body_sample=body))
    assert matched is not None and matched.name == "cp.f_gen_ru_8_satellite"


def test_a_cname_answer_matches_in_full_only() -> None:
    fps = default_fingerprints()
    matched = fps.match_dns(("trustpositif.kominfo.go.id",))
    assert matched is not None and matched.name == "ooni.id_95"
    assert fps.match_dns(("www.trustpositif.kominfo.go.id",)) is None


def test_a_known_false_positive_page_is_not_blocked() -> None:
    fps = default_fingerprints()
    nginx = "<html><body><p><em>Thank you for using nginx.</em></p></body></html>"
    assert fps.get("cp.fp_x_fpru_nginx") is not None
    assert fps.match_http(http(body_sample=nginx)) is None
    m = measurement(**LAB, answers=("127.0.0.1",), http_obs=http(LAB["url"], body_sample=nginx))
    result = analyze(m, controls=[LAB_CONTROL], fingerprints=fps)
    assert result.verdict != "http_blocked" and result.fingerprint is None


def test_a_false_positive_vetoes_a_vague_word_on_the_same_page() -> None:
    fps = default_fingerprints()
    vague_only = "<h1>Access Denied</h1>"
    matched = fps.match_http(http(body_sample=vague_only))
    assert matched is not None and matched.scope == "vbw"
    # "503 Service Unavailable" is a known false positive (cp.fp_x_generic_503_4): a vague
    # "Access Denied" on that page is the server's error, not a censor's.
    assert fps.match_http(http(body_sample=vague_only + "<p>503 Service Unavailable</p>")) is None


def test_a_specific_fingerprint_wins_over_a_vague_word_and_a_false_positive() -> None:
    body = "<h1>Доступ ограничен</h1><p>404 Not Found</p><a href='http://eais.rkn.gov.ru/'>"
    matched = default_fingerprints().match_http(http(body_sample=body))
    assert matched is not None and matched.name == "ooni.ru_5"


def test_a_benign_injection_is_never_evidence() -> None:
    fps = default_fingerprints()
    router = fps.get("cl.injb_routerupdate")
    assert router is not None and router.scope in NOT_EVIDENCE and not router.is_evidence
    assert fps.match_http(http(body_sample='<iframe src="/main/fwUpInfoBlock.htm">')) is None


def test_header_rows_match_their_header_only() -> None:
    fps = default_fingerprints()
    matched = fps.match_http(http(headers=(("Server", "Olfeo/2"),)))
    assert matched is not None and matched.name == "ooni.fr_2"
    assert fps.match_http(http(headers=(("Via", "Olfeo/2"),))) is None
