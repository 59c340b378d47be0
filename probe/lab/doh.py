"""DNS over HTTPS for the lab (RFC 8484): the same answers and censor rules as the UDP server.

POST /dns-query with an application/dns-message body, or GET /dns-query?dns=<base64url>.
The client's source address picks the vantage, exactly as for plain DNS.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import h11

from probe.lab.dns_server import answer
from probe.lab.rules import Policy
from probe.lab.service import LabService

MAX_QUERY = 4096


class DohServer(LabService):
    def __init__(
        self, policy: Policy, now: Callable[[], dt.datetime], host: str, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, context)
        self.policy = policy
        self.now = now

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/dns-query"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = str(writer.get_extra_info("peername")[0])
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_request(conn, reader)
                if request is None:
                    return
                status, payload = self._respond(request, body, source)
                if status is None:
                    await asyncio.sleep(3600)  # dns_timeout / blackhole: never answer
                    return
                headers = [("Content-Type", "application/dns-message"), ("Content-Length", str(len(payload)))]
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                writer.write(conn.send(h11.Data(data=payload)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except h11.ProtocolError:
            pass  # a broken client

    def _respond(self, request: h11.Request, body: bytes, source: str) -> tuple[int | None, bytes]:
        target = urlsplit(request.target.decode("latin-1"))
        if target.path != "/dns-query":
            return 404, b""
        if request.method == b"GET":
            encoded = parse_qs(target.query).get("dns", [""])[0]
            try:
                wire = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except ValueError:
                return 400, b""
        elif request.method == b"POST":
            wire = body
        else:
            return 405, b""
        reply = answer(self.policy, self.now(), source, wire)
        if reply is None:
            return None, b""
        return 200, reply


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_QUERY:
                return None, b""
        elif isinstance(event, h11.EndOfMessage):
            return request, body
        else:
            return None, b""
