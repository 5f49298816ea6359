"""Clients that hold connections without using them: idle sockets, headers or bodies sent
a byte at a time, websockets that never initialise or stop reading, and more connections
than the process allows. Each is cut off by its documented timeout or limit, and the
server keeps nothing of them.

The API here runs with one-second timeouts; the attacks themselves are slow on purpose
(a byte every few hundred milliseconds), which is the only waiting these tests do."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.hostile.conftest import Api, start_api, stop_api
from tests.hostile.test_ws_frames import closed_with, receive, subscribe
from tests.hostile.test_ws_frames import socket as ws_socket
from tests.support import WAIT

TIMEOUT = 1.0
MAX_CONNECTIONS = 12


@pytest.fixture(scope="module")
def strict(module_database: str, redis_url: str, hostile_schema: Path) -> Iterator[Api]:
    api = start_api(module_database, redis_url, hostile_schema, http_header_timeout=TIMEOUT,
                    http_body_timeout=TIMEOUT, ws_init_timeout=TIMEOUT, ws_send_timeout=TIMEOUT,
                    max_connections=MAX_CONNECTIONS)
    yield api
    stop_api(api)


def tcp(api: Api) -> socket.socket:
    host, port = api.base_url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=WAIT)
    return connection


def closed_by_server(connection: socket.socket, drip: bytes = b"", every: float = 0.3) -> float:
    """Send ``drip`` a byte at a time until the server closes; seconds it took."""
    started = time.monotonic()
    connection.settimeout(every)
    sent = 0
    while time.monotonic() - started < WAIT:
        try:
            if connection.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        if sent < len(drip):
            try:
                connection.send(drip[sent:sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
            sent += 1
    raise AssertionError(f"the server kept the connection for {WAIT}s")


def test_an_idle_connection_is_closed(strict: Api) -> None:
    with tcp(strict) as connection:
        assert closed_by_server(connection) < WAIT


def test_headers_sent_a_byte_at_a_time_are_cut_off(strict: Api) -> None:
    headers = b"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\n" + b"x-slow: " + b"a" * 200 + b"\r\n\r\n"
    with tcp(strict) as connection:
        assert closed_by_server(connection, headers) < WAIT


def test_headers_after_a_kept_alive_request_are_cut_off_too(strict: Api) -> None:
    body = b'{"query": "{ __typename }"}'
    request = (b"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
               b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with tcp(strict) as connection:
        connection.sendall(request)
        answer = b""
        while b'"__typename":"Query"' not in answer:
            chunk = connection.recv(65536)
            assert chunk, answer
            answer += chunk
        next_headers = b"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\n" + b"y" * 200
        assert closed_by_server(connection, next_headers) < WAIT


def test_a_body_sent_a_byte_at_a_time_gets_408(strict: Api) -> None:
    before = strict.state()
    body = b'{"query": "mutation { emitEvent(type: \\"Slow.body\\") { eventId } }"}'
    head = (b"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
    with tcp(strict) as connection:
        connection.sendall(head)
        connection.settimeout(0.3)
        answer = b""
        started = time.monotonic()
        for byte in body:
            try:
                connection.send(bytes([byte]))
                answer += connection.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break
        assert time.monotonic() - started < WAIT
        connection.settimeout(WAIT)
        while answer and b"REQUEST_TIMEOUT" not in answer:  # the body may follow the head
            more = connection.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"REQUEST_TIMEOUT" in answer
    assert strict.state() == before


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_a_websocket_that_never_initialises_is_closed_4408(strict: Api, protocol: str) -> None:
    with ws_socket(strict, protocol, init=False) as ws:
        assert closed_with(ws) == (4408, "Connection initialisation timeout")


def _raw_websocket(api: Api) -> socket.socket:
    """A websocket opened by hand on a socket with a tiny receive buffer: a client that can
    stop reading for real (a library would keep reading into its own queue)."""
    host, port = api.base_url.removeprefix("http://").split(":")
    connection = socket.socket()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection.settimeout(WAIT)
    connection.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    connection.sendall(
        f"GET /graphql HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n".encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += connection.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return connection


def _frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    return header + mask + masked


def test_a_websocket_that_stops_reading_is_cut_off_and_forgotten(strict: Api) -> None:
    blob = {"blob": "x" * 20_000}
    for n in range(60):
        strict.data("mutation($input: GaugeInput!, $id: ID) { createGauge(id: $id, input: $input) "
                    "{ id } }", {"id": f"big-{n}", "input": {"name": f"big-{n}", "meta": blob}})
    connection = _raw_websocket(strict)
    try:
        connection.sendall(_frame(orjson.dumps({"type": "connection_init"}).decode()))
        query = 'subscription { gauges(where: {name: {beginsWith: "big-"}}) { op documents { meta } } }'
        for n in range(20):  # each snapshot is 1.2 MB: far more than the socket buffers hold
            connection.sendall(_frame(subscribe(str(n), {"query": query})))
        # Never read. The server must give up on us within its send timeout.
        deadline = time.monotonic() + WAIT
        while True:
            health = strict.http.get("/healthz").json()
            if health["websockets"] == 0 and health["subscriptions"] == 0:
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.1)  # another process's state: polled, with a deadline
    finally:
        connection.close()
    assert strict.healthy()


def test_connections_over_the_limit_are_refused(strict: Api) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(MAX_CONNECTIONS):
            stack.enter_context(connect(strict.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")],
                                        compression=None, open_timeout=WAIT))
        with pytest.raises(InvalidStatus) as refused, connect(
                strict.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=WAIT):
            pass
        assert refused.value.response.status_code == 503
        assert strict.http.get("/healthz").status_code == 503  # HTTP too: the process is full
    # room again
    with ws_socket(strict, "graphql-transport-ws") as ws:
        ws.send(subscribe("1", {"query": "{ __typename }"}))
        assert receive(ws)["payload"] == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(("prefix", "accept"), [
    ("sse", b"text/event-stream"),
    ("multipart", b'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'),
], ids=["server-sent-events", "multipart"])
def test_a_streamed_subscription_that_is_not_read_is_cut_off_and_forgotten(
        strict: Api, prefix: str, accept: bytes) -> None:
    blob = {"blob": "x" * 20_000}
    for n in range(400):  # 8 MB: more than the kernel's socket buffers hold on loopback
        strict.data("mutation($input: GaugeInput!, $id: ID) { createGauge(id: $id, input: $input) "
                    "{ id } }", {"id": f"{prefix}-{n}", "input": {"name": f"{prefix}-{n}", "meta": blob}})
    body = orjson.dumps({"query": f'subscription {{ gauges(where: {{name: {{beginsWith: "{prefix}-"}}}}) '
                                  '{ op documents { meta } } }'})
    connection = tcp(strict)
    try:  # a snapshot never read
        host = strict.base_url.removeprefix("http://").encode()
        connection.sendall(b"POST /graphql HTTP/1.1\r\nhost: " + host + b"\r\naccept: " + accept + b"\r\n"
                           b"content-type: application/json\r\ncontent-length: "
                           + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + WAIT
        seen_open = False
        while True:
            subscriptions = strict.http.get("/healthz").json()["subscriptions"]
            seen_open = seen_open or subscriptions > 0
            if seen_open and subscriptions == 0:
                break
            assert time.monotonic() < deadline, f"{subscriptions} subscriptions still held"
            time.sleep(0.1)  # another process's state: polled, with a deadline
    finally:
        connection.close()
    assert strict.healthy()
