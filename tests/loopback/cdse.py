"""CDSE endpoints on the loopback server: Keycloak token grant, OData pages replay, product bodies.

The token endpoint implements the two grants the client uses (RFC 6749 §4.3 password, §6 refresh);
tokens can be revoked to simulate expiry mid-run. ``$value`` answers 401 without a valid bearer token,
like CDSE, and serves ranges.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.loopback import LoopbackServer, Reply, Request, file_reply

USER = "tirsit.user@example.org"
PASSWORD = "s3cret-Pa55word-XYZ"  # grepped for in every output
TOKEN_PATH = "/auth/realms/CDSE/protocol/openid-connect/token"
ODATA = "/odata/v1"


@dataclass
class FakeCdse:
    srv: LoopbackServer
    pages: list[dict[str, Any]] = field(default_factory=list)
    products: dict[str, bytes] = field(default_factory=dict)
    expires_in: int = 600
    valid: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)
    _n: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> FakeCdse:
        self.srv.route("POST", TOKEN_PATH, self.token)
        self.srv.route("GET", f"{ODATA}/Products", self.search)
        for pid in self.products:
            self.srv.route("GET", f"{ODATA}/Products({pid})/$value", self.value(pid))
        return self

    @property
    def token_url(self) -> str:
        return self.srv.url + TOKEN_PATH

    @property
    def catalogue_url(self) -> str:
        return self.srv.url + ODATA

    def token(self, req: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        grant = form.get("grant_type", "")
        with self._lock:
            self.grants.append(grant)
            ok = form.get("client_id") == "cdse-public" and (
                (grant == "password" and form.get("username") == USER and form.get("password") == PASSWORD)
                or (grant == "refresh_token" and form.get("refresh_token", "").startswith("ref-"))
            )
            if not ok:
                return Reply(
                    401,
                    {"Content-Type": "application/json"},
                    b'{"error":"invalid_grant","error_description":"Invalid user credentials"}',
                )
            n = next(self._n)
            tok = f"tok{n}-eyJhbGciOiJSUzI1NiJ9.SECRET-ACCESS-TOKEN-{n}"
            self.valid.add(tok)
            self.issued.append(tok)
        body = {
            "access_token": tok,
            "expires_in": self.expires_in,
            "refresh_expires_in": 3600,
            "refresh_token": f"ref-{n}-SECRET-REFRESH",
            "token_type": "Bearer",
        }
        return Reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def expire_all(self) -> None:
        with self._lock:
            self.valid.clear()

    def search(self, req: Request) -> Reply:
        skip = int(req.query.get("$skip", ["0"])[0])
        size = len(self.pages[0]["value"]) if self.pages and self.pages[0]["value"] else 1
        k = skip // size
        page = self.pages[k] if k < len(self.pages) else {"value": []}
        return Reply(200, {"Content-Type": "application/json"}, json.dumps(page).encode())

    def authorised(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.valid

    def value(self, pid: str):  # type: ignore[no-untyped-def]
        def fn(req: Request) -> Reply:
            if not self.authorised(req):
                return Reply(401, {"Content-Type": "application/json"}, b'{"detail":"Expired signature!"}')
            return file_reply(self.products[pid], req)

        return fn


def body_bytes(n: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (incompressible, like a zip)."""
    out = bytearray()
    block = hashlib.sha256(f"seed{seed}".encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])
