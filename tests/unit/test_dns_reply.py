"""`read_reply` remembers replies by everything but their ID, and checks the ID every time."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from probe.layers import dns as dns_layer
from probe.layers.dns import REPLIES_KEPT, REPLY_KEPT_BYTES, Reply, read_reply


def answer(query: dns.message.Message, *addresses: str, qid: int | None = None) -> bytes:
    reply = dns.message.make_response(query)
    if addresses:
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", *addresses))
    if qid is not None:
        reply.id = qid
    return reply.to_wire()


def fresh(name: str = "www.site.test") -> tuple[dns.message.Message, bytes]:
    return dns_layer._fresh_query(name, dns.rdatatype.A)


def test_a_reply_seen_again_reads_the_same() -> None:
    query, wire = fresh()
    data = answer(query, "127.0.5.5", "127.0.5.6")
    first = read_reply(query, wire, data)
    again, wire_again = fresh()  # another ID, the same reply otherwise
    second = read_reply(again, wire_again, wire_again[:2] + data[2:])
    assert first == second
    assert first.rcode == "NOERROR" and sorted(first.addresses) == ["127.0.5.5", "127.0.5.6"]


def test_a_remembered_reply_with_another_id_is_refused() -> None:
    query, wire = fresh()
    read_reply(query, wire, answer(query, "127.0.5.5"))  # remembered
    other = (query.id + 1) % 65536
    with pytest.raises(dns.query.BadResponse):
        read_reply(query, wire, answer(query, "127.0.5.5", qid=other))


def test_a_reply_to_another_question_is_refused() -> None:
    query, wire = fresh("www.site.test")
    elsewhere, _ = fresh("www.other.test")
    data = answer(elsewhere, "127.0.5.5", qid=query.id)
    for _ in range(2):  # never remembered: refused both times
        with pytest.raises(dns.query.BadResponse):
            read_reply(query, wire, data)


def test_no_answer_and_nxdomain() -> None:
    query, wire = fresh()
    assert read_reply(query, wire, answer(query)) == Reply("NOERROR", ())
    nx = dns.message.make_response(query)
    nx.set_rcode(dns.rcode.NXDOMAIN)
    assert read_reply(query, wire, nx.to_wire()) == Reply("NXDOMAIN", ())


def test_the_memory_is_bounded() -> None:
    query, wire = fresh()
    for i in range(REPLIES_KEPT + 10):
        address = f"127.0.{i // 256}.{i % 256}"
        assert read_reply(query, wire, answer(query, address)).addresses == (address,)
    assert len(dns_layer._replies) <= REPLIES_KEPT


def test_a_large_reply_is_read_but_not_remembered() -> None:
    query, wire = fresh("big.site.test")
    addresses = [f"127.1.{i // 256}.{i % 256}" for i in range(200)]  # ~3.2 KB on the wire
    data = answer(query, *addresses)
    assert len(data) > REPLY_KEPT_BYTES
    dns_layer._replies.clear()
    assert sorted(read_reply(query, wire, data).addresses) == sorted(addresses)
    assert dns_layer._replies == {}
