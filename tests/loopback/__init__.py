"""A loopback HTTP server for the fetch tests: replays recorded responses and injects faults.

Routes map ``(method, path)`` to a function of the request returning a :class:`Reply`. Faults are
queued per route and consumed one request at a time: each is a function ``(request, reply) -> Reply``
that may replace or alter the normal reply (status codes, ``Retry-After``, cut connections, resets,
corrupted bytes, redirects, malformed JSON). Every request is recorded (method, host, path, query,
headers) so tests can check what the client sent — and to whom.

``load_cassette`` reads the vcrpy YAML cassettes recorded by sentinelsat's tests; ``serve_cassette``
replays them with the recorded host rewritten to this server (the only transformation).
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

__all__ = ["Reply", "Request", "LoopbackServer", "file_reply", "load_cassette", "serve_cassette"]


@dataclass(frozen=True)
class Request:
    method: str
    host: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: Path | None = None  # body from a file region (sendfile), for large bodies
    offset: int = 0
    length: int | None = None
    cut_after: int | None = None  # close the connection after this many body bytes
    reset: bool = False  # close with RST (SO_LINGER 0) instead of FIN


def file_reply(data: bytes | Path, request: Request, extra_headers: dict[str, str] | None = None) -> Reply:
    """200 or 206 for a byte body, honouring a ``Range: bytes=n-`` header (416 when n is past the end)."""
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    headers = {"Content-Type": "application/zip", "Accept-Ranges": "bytes", **(extra_headers or {})}
    rng = request.headers.get("range", "")
    start = 0
    status = 200
    if rng.startswith("bytes="):
        start = int(rng[6:].split("-")[0])
        if start >= size:
            return Reply(416, {"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    if isinstance(data, Path):
        return Reply(status, headers, file=data, offset=start, length=size - start)
    return Reply(status, headers, body=data[start:])


Route = Callable[[Request], Reply]
Fault = Callable[[Request, Reply], Reply]


class LoopbackServer:
    """``with LoopbackServer() as srv: srv.route("GET", "/x", fn); srv.url`` — threads, HTTP/1.1 keep-alive."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.faults: dict[tuple[str, str], list[Fault]] = defaultdict(list)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    method=self.command,
                    host=self.headers.get("Host", ""),
                    path=parts.path,
                    query=parse_qs(parts.query),
                    raw_query=parts.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = outer._dispatch(req)
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                size = reply.length if reply.file is not None and reply.length is not None else len(reply.body)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if self.command == "HEAD":
                    return
                limit = size if reply.cut_after is None else min(size, reply.cut_after)
                if reply.file is not None:
                    self.wfile.flush()
                    with open(reply.file, "rb") as fh:
                        sent = 0
                        while sent < limit:
                            n = os.sendfile(self.connection.fileno(), fh.fileno(), reply.offset + sent, limit - sent)
                            if n == 0:
                                break
                            sent += n
                else:
                    self.wfile.write(reply.body[:limit])
                if reply.cut_after is not None:
                    self.wfile.flush()
                    if reply.reset:
                        time.sleep(0.2)  # let the client consume what was sent before the RST drops buffers
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True

            do_GET = do_POST = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.alt_url = f"http://localhost:{self.port}"  # same server, another host name (for cross-host redirects)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def route(self, method: str, path: str, fn: Route) -> None:
        self.routes[(method, path)] = fn

    def fault(self, method: str, path: str, *faults: Fault) -> None:
        self.faults[(method, path)].extend(faults)

    def _dispatch(self, req: Request) -> Reply:
        with self._lock:
            self.requests.append(req)
            queue = self.faults.get((req.method, req.path))
            fault = queue.pop(0) if queue else None
        fn = self.routes.get((req.method, req.path))
        if fn is None and req.method == "HEAD":
            fn = self.routes.get(("GET", req.path))
        reply = fn(req) if fn is not None else Reply(404, {"Content-Type": "text/plain"}, b"no route")
        return fault(req, reply) if fault is not None else reply

    def seen(self, path: str, method: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# Faults -----------------------------------------------------------------------------------------


def status_fault(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Fault:
    return lambda req, reply: Reply(status, headers or {}, body)


def cut_fault(after: int, *, reset: bool = True) -> Fault:
    """Send ``after`` body bytes of the normal reply, then drop the connection (RST by default)."""
    return lambda req, reply: replace(reply, cut_after=after, reset=reset)


def truncate_fault(after: int) -> Fault:
    """A reply whose body and Content-Length stop at ``after`` bytes: looks complete to HTTP, is not."""

    def apply(req: Request, reply: Reply) -> Reply:
        if reply.file is not None:
            return replace(reply, length=min(after, reply.length or after))
        return replace(reply, body=reply.body[:after])

    return apply


def corrupt_fault(at: int) -> Fault:
    """Flip one byte of the body at offset ``at`` (a checksum mismatch with the right size)."""

    def apply(req: Request, reply: Reply) -> Reply:
        b = bytearray(reply.body)
        b[at] ^= 0xFF
        return replace(reply, body=bytes(b))

    return apply


def redirect_fault(location: str, status: int = 302) -> Fault:
    return lambda req, reply: Reply(status, {"Location": location})


# Cassettes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interaction:
    method: str
    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    body_recorded: bool


def load_cassette(path: Path) -> list[Interaction]:
    """The request/response pairs of a vcrpy YAML cassette (bodies as bytes, gzip left as recorded)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for it in data["interactions"]:
        resp = it["response"]
        raw = resp.get("body") or {}
        recorded = "string" in raw
        body = raw.get("string", b"")
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {k: (v[0] if isinstance(v, list) else str(v)) for k, v in (resp.get("headers") or {}).items()}
        out.append(
            Interaction(
                it["request"]["method"], it["request"]["uri"], int(resp["status"]["code"]), headers, body, recorded
            )
        )
    return out


def rewrite_body(body: bytes, headers: dict[str, str], old: str, new: str) -> bytes:
    """Replace the recorded base URL by the loopback one inside a (possibly gzipped) body."""
    gz = headers.get("content-encoding", "").lower() == "gzip"
    text = gzip.decompress(body) if gz else body
    text = text.replace(old.encode(), new.encode())
    return gzip.compress(text, mtime=0) if gz else text


def serve_cassette(
    srv: LoopbackServer,
    interactions: list[Interaction],
    recorded_base: str,
    new_base: str,
    *,
    body_for: Callable[[Interaction, Request], Reply] | None = None,
) -> dict[tuple[str, str], list[Interaction]]:
    """Route every recorded (method, path) to its recorded responses, replayed in order (the last repeats).

    Bodies that were not recorded (vcr stores ``{}`` for streamed downloads) come from ``body_for``.
    """
    by_route: dict[tuple[str, str], list[Interaction]] = defaultdict(list)
    for it in interactions:
        path = urlsplit(it.url.replace(recorded_base, new_base)).path
        by_route[(it.method, path)].append(it)

    def handler(items: list[Interaction]) -> Route:
        counter = iter(range(10**9))

        def fn(req: Request) -> Reply:
            it = items[min(next(counter), len(items) - 1)]
            if not it.body_recorded and body_for is not None:
                return body_for(it, req)
            headers = {k: v for k, v in it.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
            return Reply(it.status, headers, rewrite_body(it.body, it.headers, recorded_base, new_base))

        return fn

    for key, items in by_route.items():
        srv.route(key[0], key[1], handler(items))
    return by_route


def iter_chunks(data: bytes, n: int) -> Iterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i : i + n]
