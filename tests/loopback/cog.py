"""COGs over loopback HTTP with byte-range requests (RFC 9110 §14), counting the bytes sent per file.

``CogHost(srv).add("/cogs/B04.tif", path)`` serves a file for GET and HEAD, honouring
``Range: bytes=a-b`` (and ``a-``) with 206 and ``Content-Range``; ``sent[path]`` is the number of body
bytes sent. ``require_query`` makes a path answer 403 unless a query check passes (expired signatures).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from tests.loopback import LoopbackServer, Reply, Request

__all__ = ["CogHost"]


class CogHost:
    def __init__(self, srv: LoopbackServer) -> None:
        self.srv = srv
        self.sent: dict[str, int] = defaultdict(int)
        self.ranges: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.Lock()

    def add(
        self, url_path: str, file: Path, require_query: Callable[[dict[str, list[str]]], bool] | None = None
    ) -> str:
        """Serve ``file`` at ``url_path``; returns its URL."""

        def fn(req: Request) -> Reply:
            if require_query is not None and not require_query(req.query):
                return Reply(403, {"Content-Type": "text/plain"}, b"signature expired")
            size = file.stat().st_size
            headers = {"Content-Type": "image/tiff", "Accept-Ranges": "bytes"}
            rng = req.headers.get("range", "")
            start, end, status = 0, size - 1, 200
            if rng.startswith("bytes="):
                a, _, b = rng[6:].split(",")[0].partition("-")
                start = int(a)
                end = min(int(b), size - 1) if b else size - 1
                if start >= size:
                    return Reply(416, {"Content-Range": f"bytes */{size}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            length = end - start + 1
            if req.method == "GET":
                with self._lock:
                    self.sent[url_path] += length
                    self.ranges[url_path].append(rng or "all")
            return Reply(status, headers, file=file, offset=start, length=length)

        self.srv.route("GET", url_path, fn)
        self.srv.route("HEAD", url_path, fn)
        return f"{self.srv.url}{url_path}"
