"""Blockpage fingerprints: the bundled file loads, validates, and matches what it should."""

from __future__ import annotations

import pytest

from probe.analysis.fingerprints import (
    Fingerprint,
    FingerprintError,
    Fingerprints,
    default_fingerprints,
    load_fingerprints,
)

from .builders import http


def test_bundled_file_loads_and_has_the_lab_fingerprints() -> None:
    fps = default_fingerprints()
    blockpage = fps.get("lab_blockpage")
    redirect = fps.get("lab_warning_redirect")
    assert blockpage is not None and redirect is not None
    assert (blockpage.location, blockpage.pattern_type, blockpage.expected_countries) == (
        "body",
        "contains",
        ("ZZ",),
    )
    assert (redirect.location, redirect.pattern_type, redirect.pattern) == (
        "header.location",
        "prefix",
        "http://warning.lab/",
    )


@pytest.mark.parametrize(
    ("obs", "expected"),
    [
        (http(body_sample="<html><p>Access to this resource is restricted.</p>"), "lab_blockpage"),
        (http(status=302, headers=(("Location", "http://warning.lab/?u=x"),)), "lab_warning_redirect"),
        # Header names match case-insensitively, values as written.
        (http(status=302, headers=(("LOCATION", "http://warning.rt.ru/?id=17"),)), "ooni.ru_6"),
        (http(body_sample='<html><iframe src="http://10.10.34.34?type=Invalid"'), "ooni.ir_0"),
        (http(headers=(("Server", "Protected by WireFilter 8000"),)), "ooni.ae_0"),
        (http(body_sample="<html><title>Facebook</title>"), None),
        (http(status=302, headers=(("Location", "https://www.facebook.com/"),)), None),
        (http(body_sample=None), None),
    ],
)
def test_match_http(obs: object, expected: str | None) -> None:
    matched = default_fingerprints().match_http(obs)  # type: ignore[arg-type]
    assert (matched.name if matched else None) == expected


def test_match_dns_full_pattern_only_matches_the_whole_answer() -> None:
    fps = default_fingerprints()
    matched = fps.match_dns(("10.10.34.34",))
    assert matched is not None and matched.name == "ooni.ir_4"
    assert fps.match_dns(("10.10.34.3",)) is None
    assert fps.match_dns(("110.10.34.34",)) is None


@pytest.mark.parametrize(
    ("pattern_type", "pattern", "value", "expected"),
    [
        ("full", "abc", "abc", True),
        ("full", "abc", "abcd", False),
        ("prefix", "http://x/", "http://x/y", True),
        ("prefix", "http://x/", "https://x/", False),
        ("contains", "blocked", "you are blocked here", True),
        ("contains", "blocked", "Blocked", False),
        ("regexp", r"rkn\.gov\.ru/\d+", "see eais.rkn.gov.ru/42", True),
        ("regexp", r"^rkn", "eais.rkn", False),
    ],
)
def test_pattern_types(pattern_type: str, pattern: str, value: str, expected: bool) -> None:
    fp = Fingerprint.model_validate(
        {"name": "t", "scope": "isp", "location": "body", "pattern_type": pattern_type, "pattern": pattern}
    )
    assert fp.matches(value) is expected


def test_false_positive_scope_never_matches() -> None:
    fps = Fingerprints(
        [
            Fingerprint(
                name="fp_cdn_error", scope="fp", location="body", pattern_type="contains", pattern="Error"
            )
        ]
    )
    assert fps.match_http(http(body_sample="Error 1020")) is None


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "fingerprints: [{name: a, scope: isp, location: cookie, pattern_type: full, pattern: x}]",
            "fingerprints[0].location",
        ),
        (
            "fingerprints: [{name: a, scope: world, location: body, pattern_type: full, pattern: x}]",
            "fingerprints[0].scope",
        ),
        (
            "fingerprints: [{name: a, scope: isp, location: body, pattern_type: glob, pattern: x}]",
            "fingerprints[0].pattern_type",
        ),
        (
            "fingerprints: [{name: a, scope: isp, location: body, pattern_type: regexp, pattern: '('}]",
            "not a valid regular expression",
        ),
        (
            "fingerprints: [{name: a, scope: isp, location: body, pattern_type: full, pattern: x,"
            " expected_countries: [kz]}]",
            "country codes",
        ),
        (
            "fingerprints:\n - {name: a, scope: isp, location: body, pattern_type: full, pattern: x}\n"
            " - {name: a, scope: isp, location: body, pattern_type: full, pattern: y}",
            "duplicate",
        ),
        (
            "fingerprints: [{name: a, scope: isp, location: body, pattern_type: full, pattern: x, extra: 1}]",
            "fingerprints[0].extra",
        ),
        ("[1, 2]", "expected a mapping"),
        ("fingerprints: [", "not valid YAML"),
    ],
)
def test_bad_files_are_rejected_with_the_entry_named(yaml_text: str, message: str) -> None:
    with pytest.raises(FingerprintError, match=r"^test\.yaml: ") as info:
        load_fingerprints(yaml_text, source="test.yaml")
    assert message in str(info.value)


def test_a_body_seen_before_matches_the_same_and_the_memory_is_bounded() -> None:
    from probe.analysis.fingerprints import BODIES_KEPT

    fps = default_fingerprints()
    blockpage = http(body_sample="<html><p>Access to this resource is restricted.</p>")
    page = http(body_sample="<html><p>Welcome</p>")
    for _ in range(2):
        assert getattr(fps.match_http(blockpage), "name", None) == "lab_blockpage"
        assert fps.match_http(page) is None
    for i in range(BODIES_KEPT + 10):
        assert fps.match_http(http(body_sample=f"<p>page {i}</p>")) is None
    assert fps._body.find.cache_info().currsize <= BODIES_KEPT  # type: ignore[attr-defined]
    assert getattr(fps.match_http(blockpage), "name", None) == "lab_blockpage"
