"""Resumable, verified, polite HTTP downloads.

- Resume: bytes go to ``<dest>.part``; a later attempt (or run) sends ``Range: bytes=<n>-``
  (RFC 9110 §14.2) and appends on ``206 Partial Content`` whose ``Content-Range`` starts at ``n``;
  a ``200`` means the server ignored the range and the part file restarts from zero.
- Verification: MD5 where the catalogue lists one, the size otherwise; only a verified file is renamed
  to ``dest`` (``os.replace``), so nothing unverified ever sits under the final name. A checksum
  mismatch deletes the part file and downloads once more, then fails.
- Retries: 429, 5xx and connection errors, exponential backoff with full jitter
  ("Exponential Backoff And Jitter", AWS Architecture Blog 2015), honouring ``Retry-After``
  (RFC 9110 §10.2.3, seconds or HTTP date).
- Authorization: redirects are followed by hand (``requests`` drops the header on a cross-host redirect,
  RFC 9110 §15.4); the header is sent only to hosts in ``auth_hosts``, never anywhere else. A 401 from an
  authorised host renews the token once.
- Politeness: at most :data:`MAX_CONNECTIONS` exchanges at once per process (CDSE quota: 4 concurrent
  connections per user, https://documentation.dataspace.copernicus.eu/Quotas.html).
- Progress: a bar (bytes, rate, ETA) on a terminal, plain log lines otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import queue
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from pipeline_lib.errors import FetchError, ProductError
from pipeline_lib.safe import open_product

__all__ = [
    "MAX_CONNECTIONS",
    "RetryPolicy",
    "AuthProvider",
    "Progress",
    "parse_retry_after",
    "backoff_delay",
    "file_md5",
    "verify_file",
    "make_session",
    "download_file",
    "netloc",
    "unpack_safe",
    "materialise",
]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 4
_CONNECTIONS = threading.BoundedSemaphore(MAX_CONNECTIONS)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class AuthProvider(Protocol):
    """Gives the Authorization header; ``refresh=True`` after the server rejected the current one."""

    def header(self, *, refresh: bool = False) -> dict[str, str]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 120.0
    max_redirects: int = 5


class _Retry(Exception):
    """A transient failure: try again after ``delay`` (None: the policy's backoff)."""

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


def netloc(url: str) -> str:
    """``host:port`` of a URL, lower-case, default ports made explicit."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{(parts.hostname or '').lower()}:{port}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(
    attempt: int, policy: RetryPolicy, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Delay before retry ``attempt`` (1-based): ``Retry-After`` if given, else full-jitter exponential backoff."""
    if retry_after is not None:
        return min(retry_after, policy.max_delay_s)
    cap = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
    return (rng or random).uniform(cap / 2, cap)


def file_md5(path: Path, block_bytes: int = 1 << 22) -> str:
    """Hex MD5 of a file."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(block_bytes):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, size: int, md5: str) -> str:
    """Empty string if ``path`` matches the expected size and MD5 (each checked when given), else why not."""
    if not path.is_file():
        return "missing"
    actual = path.stat().st_size
    if size and actual != size:
        return f"size {actual} B, catalogue says {size} B"
    if md5:
        digest = file_md5(path)
        if digest.lower() != md5.lower():
            return f"MD5 {digest}, catalogue says {md5.lower()}"
    return ""


def make_session(user_agent: str = "tirsit-pipeline", pool: int = MAX_CONNECTIONS) -> requests.Session:
    """A session with a connection pool no larger than the connection cap and no automatic retries."""
    s = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers["User-Agent"] = user_agent
    s.trust_env = False  # no ~/.netrc basic-auth injection by requests: we decide who gets credentials
    return s


class Progress:
    """A per-download progress display: a ``\\r`` bar on a terminal, plain log lines otherwise."""

    def __init__(
        self,
        name: str,
        total: int,
        *,
        stream: IO[str] | None = None,
        logger: logging.Logger | None = None,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.total = name, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.logger = logger or log
        self.interval_s = interval_s if not self.tty else 0.25
        self._clock = clock
        self.start = clock()
        self.done = 0
        self._start_done = 0
        self._last = self.start

    def begin(self, done: int, total: int) -> None:
        """(Re)start counting at ``done`` bytes of ``total`` (after a resume)."""
        self.done, self._start_done = done, done
        self.total = total or self.total
        self.start = self._last = self._clock()

    def update(self, n: int) -> None:
        self.done += n
        now = self._clock()
        if now - self._last >= self.interval_s:
            self._last = now
            self._emit(now, final=False)

    def line(self, now: float | None = None) -> str:
        """``name  42.0% 210.0/500.0 MB 85.3 MB/s ETA 0:00:03``."""
        now = self._clock() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = (self.done - self._start_done) / elapsed
        pct = f"{100.0 * self.done / self.total:5.1f}%" if self.total else "  ?  %"
        eta = "?"
        if self.total and rate > 0:
            secs = int(max(self.total - self.done, 0) / rate)
            eta = f"{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        total = f"{self.total / 1e6:.1f}" if self.total else "?"
        return f"{self.name} {pct} {self.done / 1e6:.1f}/{total} MB {rate / 1e6:.1f} MB/s ETA {eta}"

    def _emit(self, now: float, *, final: bool) -> None:
        text = self.line(now)
        if self.tty:
            width = 30
            frac = min(self.done / self.total, 1.0) if self.total else 0.0
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            self.stream.write(f"\r[{bar}] {text}" + ("\n" if final else ""))
            self.stream.flush()
        else:
            self.logger.info("download %s", text)

    def close(self) -> None:
        self._emit(self._clock(), final=True)


class _AsyncMd5:
    """MD5 computed on a helper thread (hashlib releases the GIL), so hashing overlaps network and disk I/O."""

    def __init__(self) -> None:
        self._h = hashlib.md5(usedforsecurity=False)
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._digest = ""
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while (b := self._q.get()) is not None:
            self._h.update(b)

    def update(self, b: bytes) -> None:
        self._q.put(b)

    def hexdigest(self) -> str:
        if not self._digest:
            self._q.put(None)
            self._t.join()
            self._digest = self._h.hexdigest()
        return self._digest


class _PartFile:
    """The ``.part`` file and the running MD5 of the bytes in it."""

    def __init__(self, path: Path, want_md5: bool) -> None:
        self.path = path
        self.want_md5 = want_md5
        self.hasher = _AsyncMd5() if want_md5 else None
        self.size = 0
        if path.is_file():
            self.size = path.stat().st_size
            if self.hasher is not None:
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 22):
                        self.hasher.update(chunk)

    def reset(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self.hasher is not None:
            self.hasher.hexdigest()  # stop the old thread
        self.hasher = _AsyncMd5() if self.want_md5 else None
        self.size = 0


def _content_range_start_total(value: str) -> tuple[int, int]:
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    if not m:
        return -1, 0
    return int(m.group(1)), int(m.group(2)) if m.group(2) != "*" else 0


def _exchange(
    session: requests.Session,
    url: str,
    part: _PartFile,
    *,
    auth: AuthProvider | None,
    auth_hosts: frozenset[str],
    policy: RetryPolicy,
    timeout_s: float,
    chunk_bytes: int,
    progress: Progress | None,
    expected_size: int,
) -> int:
    """One GET (following redirects by hand) appending to the part file; returns the total size the server stated."""
    refreshed = False
    current = url
    redirects = 0
    with _CONNECTIONS:
        while True:
            trusted = netloc(current) in auth_hosts
            resp = _get(session, current, part, auth if trusted else None, timeout_s)
            with contextlib.closing(resp):
                status = resp.status_code
                if status in (301, 302, 303, 307, 308):
                    redirects += 1
                    current = _redirect_target(
                        url,
                        current,
                        resp.headers.get("Location", ""),
                        too_many=redirects > policy.max_redirects,
                        with_auth=auth is not None,
                        auth_hosts=auth_hosts,
                    )
                    continue
                if status == 401 and auth is not None and trusted and not refreshed:
                    auth.header(refresh=True)
                    refreshed = True
                    continue
                _refuse_status(url, current, resp, untrusted=auth is not None and not trusted)
                if status == 416:
                    _, total = _content_range_start_total(resp.headers.get("Content-Range", ""))
                    return total or part.size  # nothing left to fetch: let verification decide
                total = _body_total(resp, part, current)
                if progress is not None:
                    progress.begin(part.size, total or expected_size)
                _stream_into(resp, part, chunk_bytes, progress)
                return total


def _get(
    session: requests.Session, current: str, part: _PartFile, auth: AuthProvider | None, timeout_s: float
) -> requests.Response:
    """The GET of ``current`` (headers only, body streamed), with ``auth``'s header and a Range past the part file."""
    headers = dict(auth.header(refresh=False)) if auth is not None else {}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
    try:
        return session.get(current, headers=headers, stream=True, allow_redirects=False, timeout=timeout_s)
    except _NETWORK_ERRORS as exc:
        raise _Retry(f"{type(exc).__name__} connecting to {netloc(current)}") from None


def _redirect_target(
    url: str, current: str, location: str, *, too_many: bool, with_auth: bool, auth_hosts: frozenset[str]
) -> str:
    """The URL a redirect from ``current`` leads to; FetchError without a Location, past the limit or off HTTP(S)."""
    if not location or too_many:
        raise FetchError(
            f"{url}: {'redirect without Location' if not location else 'too many redirects'}; report it to the data provider"
        )
    nxt = urljoin(current, location)
    if urlsplit(nxt).scheme not in ("http", "https"):
        raise FetchError(f"{url}: redirect to unsupported scheme {urlsplit(nxt).scheme!r}")
    if with_auth and netloc(nxt) not in auth_hosts:
        log.info(
            "redirected to %s, which is not a configured download host: following without credentials",
            netloc(nxt),
        )
    return nxt


def _refuse_status(url: str, current: str, resp: requests.Response, *, untrusted: bool) -> None:
    """Raise for a status with no body to keep: access refused, transient (``_Retry``) or unexpected."""
    status = resp.status_code
    if status in (401, 403):
        if untrusted:
            raise FetchError(
                f"{url}: redirected to {netloc(current)} which asks for credentials (HTTP {status}); "
                "credentials are only sent to the configured download hosts: add it to the download URLs if you trust it"
            )
        raise FetchError(
            f"{url}: HTTP {status}, access refused; check the credentials and that the account may download this product"
        )
    if status in RETRY_STATUS:
        raise _Retry(f"HTTP {status} from {netloc(current)}", parse_retry_after(resp.headers.get("Retry-After")))
    if status not in (200, 206, 416):
        raise FetchError(f"{url}: HTTP {status} from {netloc(current)}; check the product id and the download URL")


def _body_total(resp: requests.Response, part: _PartFile, current: str) -> int:
    """The total size a 200/206 response states, the part file reset when the body does not continue it."""
    if resp.status_code == 206:
        start, total = _content_range_start_total(resp.headers.get("Content-Range", ""))
        if start != part.size:
            part.reset()
            raise _Retry(f"server resumed at byte {start}, expected {part.size}")
        return total
    if part.size:
        log.info("%s: server ignored the Range request; restarting from byte 0", netloc(current))
        part.reset()
    return int(resp.headers.get("Content-Length") or 0)


def _stream_into(resp: requests.Response, part: _PartFile, chunk_bytes: int, progress: Progress | None) -> None:
    """Append the body to the part file, hashing as it goes; a broken body raises _Retry after keeping what arrived."""
    hasher = part.hasher
    with open(part.path, "ab", buffering=0) as fh:
        try:
            for chunk in _iter_body(resp, chunk_bytes):
                fh.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                part.size += len(chunk)
                if progress is not None:
                    progress.update(len(chunk))
        except _NETWORK_ERRORS as exc:
            raise _Retry(f"connection lost after {part.size} B ({type(exc).__name__})") from None


def _iter_body(resp: requests.Response, chunk_bytes: int) -> Iterable[bytes]:
    raw = resp.raw  # read1: whatever has arrived (<= chunk_bytes), so a reset loses nothing already received
    while True:
        chunk = raw.read1(chunk_bytes, decode_content=True)
        if not chunk:
            return
        yield chunk


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    session: requests.Session | None = None,
    expected_size: int = 0,
    md5: str = "",
    auth: AuthProvider | None = None,
    auth_hosts: Iterable[str] = (),
    policy: RetryPolicy | None = None,
    timeout_s: float = 60.0,
    chunk_bytes: int = 1 << 20,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``: resumable, retried, verified, atomic.

    ``auth_hosts`` are ``host:port`` strings (see :func:`netloc`) or URLs that may receive the
    Authorization header. Returns ``dest``. Raises :class:`FetchError` with a one-line cause.
    """
    dest = Path(dest)
    policy = policy or RetryPolicy()
    session = session or make_session()
    hosts = frozenset(h if re.match(r"^[^/]+:\d+$", h) else netloc(h) for h in auth_hosts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and not verify_file(dest, expected_size, md5) and (expected_size or md5):
        log.info("%s: already present and verified; nothing to download", dest.name)
        return dest
    part = _PartFile(dest.with_name(dest.name + ".part"), want_md5=bool(md5))
    if expected_size and part.size > expected_size:
        part.reset()

    def exchange() -> int:
        return _exchange(
            session,
            url,
            part,
            auth=auth,
            auth_hosts=hosts,
            policy=policy,
            timeout_s=timeout_s,
            chunk_bytes=chunk_bytes,
            progress=progress,
            expected_size=expected_size,
        )

    attempt = 0
    mismatches = 0
    while True:
        want, attempt = _fetch_with_retries(exchange, part, url, dest.name, expected_size, attempt, policy, sleep, rng)
        problem = _part_problem(part, want, md5)
        if not problem:
            break
        part.reset()
        mismatches += 1
        if mismatches > 1:
            raise FetchError(
                f"{url}: downloaded twice and still wrong ({problem}); the product may be corrupt on the server, try later"
            )
        log.warning("%s: %s; deleted, downloading once more", dest.name, problem)
    with open(part.path, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(part.path, dest)
    if progress is not None:
        progress.close()
    log.info("%s: %d B verified (%s)", dest.name, part.size, "md5" if md5 else "size")
    return dest


def _fetch_with_retries(
    exchange: Callable[[], int],
    part: _PartFile,
    url: str,
    name: str,
    expected_size: int,
    attempt: int,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    rng: random.Random | None,
) -> tuple[int, int]:
    """Request (resuming) until the part file holds the whole body: (bytes wanted, attempts used so far).

    Each failed request counts against ``policy.max_attempts`` (continuing from ``attempt``) and waits the
    backoff delay; a part file already holding ``expected_size`` bytes is verified without a request.
    """
    while True:
        try:
            # a previous run got every byte: verify without a request
            total = expected_size if expected_size and part.size == expected_size else exchange()
            want = expected_size or total
            if want and part.size < want:
                raise _Retry(f"body ended at {part.size} of {want} B")
            return want, attempt
        except _Retry as exc:
            attempt += 1
            if attempt >= policy.max_attempts:
                raise FetchError(
                    f"{url}: gave up after {attempt} attempts, last cause: {exc.cause}; retry later (the partial file is kept for resuming)"
                ) from None
            delay = backoff_delay(attempt, policy, exc.retry_after, rng)
            log.info("%s: %s; retry %d/%d in %.1f s", name, exc.cause, attempt, policy.max_attempts - 1, delay)
            sleep(delay)


def _part_problem(part: _PartFile, want: int, md5: str) -> str:
    """Why the complete part file is wrong (size, then MD5), or "" when it checks out."""
    if want and part.size != want:
        return f"size {part.size} B, expected {want} B"
    if md5 and part.hasher is not None and part.hasher.hexdigest().lower() != md5.lower():
        return f"MD5 {part.hasher.hexdigest()}, catalogue says {md5.lower()}"
    return ""


def unpack_safe(zip_path: Path, dest: Path) -> Path:
    """Unpack the ``*.SAFE`` folder of a product zip to ``dest`` atomically (temp folder, then rename).

    The zip is read through :func:`pipeline_lib.safe.open_product`, which refuses path escapes (zip-slip),
    links and zip bombs before anything is written; its ProductErrors become FetchErrors (a bad download).
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        with open_product(zip_path) as reader:
            if not reader.exists("manifest.safe"):
                raise FetchError(f"{zip_path}: no manifest.safe inside; the download is not a SAFE product")
            reader.extract(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the product folder gets the usual permissions
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except ProductError as exc:
        raise FetchError(str(exc)) from exc  # the same one line: a bad download is a fetch failure
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def materialise(fetch: Callable[[Path], Path], dest: Path) -> Path:
    """Run ``fetch`` to get the product zip; for a ``.SAFE`` destination, unpack it and drop the zip."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.suffix != ".SAFE":
        return fetch(dest)
    if (dest / "manifest.safe").is_file():
        log.info("%s: already unpacked; nothing to download", dest.name)
        return dest
    zip_path = dest.with_name(dest.stem + ".zip")
    fetch(zip_path)
    unpack_safe(zip_path, dest)
    zip_path.unlink()
    return dest
