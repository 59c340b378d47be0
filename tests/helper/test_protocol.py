"""The TH wire format: goldens shaped like probe-cli's model parse, and emit the same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.helper.protocol import (
    FLAG_BOGON,
    FLAG_RESOLVED_BY_PROBE,
    FLAG_RESOLVED_BY_TH,
    FLAG_VALID_FOR_DOMAIN,
    ProtocolError,
    THHttpRequest,
    THRequest,
    THResponse,
    dumps,
    parse_request,
    parse_response,
)

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes().strip()


@pytest.mark.parametrize("name", ["response_oohelperd.json", "response_h3.json", "response_failures.json"])
def test_responses_round_trip_byte_for_byte(name: str) -> None:
    assert dumps(parse_response(golden(name))) == golden(name)


def test_request_round_trips_byte_for_byte() -> None:
    assert dumps(parse_request(golden("request_probe_cli.json"))) == golden("request_probe_cli.json")


def test_request_fields() -> None:
    req = parse_request(golden("request_probe_cli.json"))
    assert req.http_request == "https://www.example.com/"
    assert req.tcp_connect == ("93.184.216.34:443", "[2606:2800:220:1:248:1893:25c8:1946]:443")
    assert req.http_request_headers["Accept-Language"] == ("en-US;q=0.8,en;q=0.5",)
    assert req.x_quic_enabled is False


def test_oohelperd_response_fields() -> None:
    resp = parse_response(golden("response_oohelperd.json"))
    assert resp.dns.addrs == ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert resp.tcp_connect["93.184.216.34:443"].status is True
    assert resp.tcp_connect["[2606:2800:220:1:248:1893:25c8:1946]:443"].failure == "generic_timeout_error"
    assert resp.tls_handshake["93.184.216.34:443"].server_name == "www.example.com"
    assert resp.http_request.status_code == 200
    assert resp.http_request.headers["Etag"] == '"3147526947"'
    assert resp.http3_request is None
    assert (
        resp.ip_info["93.184.216.34"].flags
        == FLAG_RESOLVED_BY_PROBE | FLAG_RESOLVED_BY_TH | FLAG_VALID_FOR_DOMAIN
    )
    assert resp.ip_info["10.10.34.35"].flags == FLAG_RESOLVED_BY_PROBE | FLAG_BOGON
    assert resp.ip_info["93.184.216.34"].asn == 15133
    assert resp.valid_addresses() == frozenset({"93.184.216.34"})


def test_h3_response_keeps_quic_and_http3_and_go_html_escapes() -> None:
    resp = parse_response(golden("response_h3.json"))
    assert resp.quic_handshake["104.16.132.229:443"].status is True
    assert resp.http3_request is not None and resp.http3_request.body_length == 154309
    assert resp.http_request.title == "Cloudflare & <friends>"
    assert resp.http_request.discovered_h3_endpoint == "www.cloudflare.com:443"


def test_the_spec_example_parses_and_missing_fields_take_go_zero_values() -> None:
    resp = parse_response(golden("response_spec_example.json"))
    assert resp.tcp_connect["[2606:2800:220:1:248:1893:25c8:1946]:443"].failure == "invalid_socket"
    assert resp.tls_handshake == {} and resp.quic_handshake == {} and resp.ip_info == {}
    assert resp.http_request.discovered_h3_endpoint == ""
    # What Go's json.Marshal writes for the same record: omitempty maps left out, nil pointer null.
    emitted = dumps(resp)
    assert b'"tls_handshake"' not in emitted and b'"ip_info"' not in emitted
    assert b'"quic_handshake":{}' in emitted and b'"http3_request":null' in emitted


def test_unknown_fields_are_ignored() -> None:
    resp = parse_response(
        b'{"x_new":1,"dns":{"addrs":["192.0.2.1"],"x_asns":[1]},"http_request":{"status_code":200,"x":{}}}'
    )
    assert resp.dns.addrs == ("192.0.2.1",)
    assert resp.http_request.status_code == 200
    req = parse_request(b'{"http_request":"http://a.example/","x_future":[1,2]}')
    assert req == THRequest("http://a.example/")


def test_null_is_the_zero_value_as_in_go() -> None:
    resp = parse_response(b'{"tcp_connect":null,"http_request":{"failure":null,"headers":null},"dns":null}')
    assert resp == THResponse(http_request=THHttpRequest())
    assert parse_request(b'{"http_request":"u","tcp_connect":null}').tcp_connect == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"http_request": 5}', "http_request: expected a string, got a number"),
        (b'{"http_request": "u", "tcp_connect": "1.2.3.4:80"}', "tcp_connect: expected an array of strings"),
        (b'{"http_request": "u", "tcp_connect": [1]}', r"tcp_connect\[0\]: expected a string"),
        (b'{"http_request": "u", "http_request_headers": {"Accept": "x"}}', "http_request_headers.Accept"),
        (b'{"http_request": "u", "x_quic_enabled": 1}', "x_quic_enabled: expected a boolean"),
        (b"[]", "request: expected an object, got an array"),
        (b"{not json", "not JSON"),
    ],
)
def test_wrong_types_in_a_request_are_rejected_naming_the_field(text: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_request(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"tcp_connect": {"1.2.3.4:80": {"status": "yes"}}}', r"tcp_connect\.1\.2\.3\.4:80\.status"),
        (b'{"http_request": {"status_code": 200.5}}', "http_request.status_code: expected an integer"),
        (b'{"http_request": {"status_code": 1.0}}', "http_request.status_code: expected an integer"),
        (b'{"http_request": {"body_length": true}}', "http_request.body_length: expected an integer"),
        (b'{"http_request": {"headers": {"A": ["b"]}}}', "http_request.headers.A: expected a string"),
        (b'{"dns": {"failure": 3}}', "dns.failure: expected a string or null"),
        (b'{"ip_info": {"1.2.3.4": {"flags": "8"}}}', r"ip_info\.1\.2\.3\.4\.flags"),
        (b'{"ip_info": {"1.2.3.4": {"asn": 99999999999999999999}}}', "expected an integer"),
        (b'{"tls_handshake": []}', "tls_handshake: expected an object, got an array"),
        (b'"text"', "response: expected an object, got a string"),
    ],
)
def test_wrong_types_in_a_response_are_rejected_naming_the_field(text: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_response(text)


def test_a_built_request_emits_go_field_order() -> None:
    req = THRequest("https://x.example/", {"User-Agent": ("ua",)}, ("192.0.2.1:443",), True)
    assert dumps(req) == (
        b'{"http_request":"https://x.example/","http_request_headers":{"User-Agent":["ua"]},'
        b'"tcp_connect":["192.0.2.1:443"],"x_quic_enabled":true}'
    )
