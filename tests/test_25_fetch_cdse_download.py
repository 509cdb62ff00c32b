"""CDSE downloads on loopback with the issue's fault list: retries, resume, verification, tokens, redirects, secrets."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline_lib.errors import FetchError
from pipeline_lib.fetch.base import Scene
from pipeline_lib.fetch.cdse import CdseSource, parse_product
from pipeline_lib.fetch.credentials import Credentials
from pipeline_lib.fetch.http import Progress, RetryPolicy
from tests.loopback import LoopbackServer, corrupt_fault, cut_fault, redirect_fault, status_fault, truncate_fault
from tests.loopback.cdse import ODATA, PASSWORD, USER, FakeCdse, body_bytes

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "cdse"))
import derive  # noqa: E402

FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=30)
BODY = body_bytes(300_000)


def scene_for(body: bytes, record: int = 0, md5: bool = True) -> Scene:
    """A real derived record whose size/checksum are replaced by those of the body we serve (we cannot serve the real product)."""
    s = parse_product(derive.derive_records(FIXTURES)[record])
    return dataclasses.replace(s, size_bytes=len(body), checksum=f"md5:{hashlib.md5(body).hexdigest()}" if md5 else "")


def pid_of(scene: Scene) -> str:
    return scene.uri.split("Products(")[1].split(")")[0]


@pytest.fixture
def world():
    scene = scene_for(BODY)
    with LoopbackServer() as srv:
        fake = FakeCdse(srv, products={pid_of(scene): BODY}).install()
        sleeps: list[float] = []
        src = CdseSource(
            catalogue_url=fake.catalogue_url,
            token_url=fake.token_url,
            download_url=srv.url + ODATA,
            credentials=Credentials(USER, PASSWORD),
            policy=FAST,
            sleep=sleeps.append,
        )
        yield srv, fake, src, scene, sleeps


def value_path(scene: Scene) -> str:
    return f"{ODATA}/Products({pid_of(scene)})/$value"


def assert_clean(dest: Path) -> None:
    assert not list(dest.parent.glob("*.part")), "no partial file may remain beside the product"


def test_download_verified_atomic_and_rerun_downloads_nothing(world, tmp_path: Path) -> None:
    srv, fake, src, scene, _ = world
    dest = tmp_path / "raw" / f"{scene.product_id}.zip"
    assert src.download(scene, dest) == dest
    assert dest.read_bytes() == BODY
    assert_clean(dest)
    assert fake.grants == ["password"]
    n = len(srv.seen(value_path(scene)))
    src.download(scene, dest)  # re-run: verified in place, no request
    assert len(srv.seen(value_path(scene))) == n


def test_503_twice_then_success_and_429_retry_after(world, tmp_path: Path) -> None:
    srv, fake, src, scene, sleeps = world
    srv.fault("GET", value_path(scene), status_fault(503), status_fault(503))
    src.download(scene, tmp_path / "a.zip")
    assert len(sleeps) == 2 and all(0 < s <= 0.02 for s in sleeps)  # jittered exponential backoff
    srv.fault("GET", value_path(scene), status_fault(429, {"Retry-After": "9"}))
    src.download(scene, tmp_path / "b.zip")
    assert sleeps[-1] == 9.0
    assert (tmp_path / "b.zip").read_bytes() == BODY


def test_connection_reset_resumes_from_byte_reached(world, tmp_path: Path) -> None:
    srv, fake, src, scene, _ = world
    srv.fault("GET", value_path(scene), cut_fault(120_000, reset=True))
    dest = tmp_path / "p.zip"
    src.download(scene, dest)
    gets = srv.seen(value_path(scene), "GET")
    assert "range" not in gets[0].headers
    start = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 120_000
    assert dest.read_bytes() == BODY
    assert_clean(dest)


def test_truncated_body_resumes_exactly(world, tmp_path: Path) -> None:
    srv, fake, src, scene, _ = world
    srv.fault("GET", value_path(scene), truncate_fault(100_000))
    dest = tmp_path / "t.zip"
    src.download(scene, dest)
    assert srv.seen(value_path(scene), "GET")[1].headers["range"] == "bytes=100000-"
    assert dest.read_bytes() == BODY


def test_checksum_mismatch_retried_once_then_fails(world, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    srv, fake, src, scene, _ = world
    srv.fault("GET", value_path(scene), corrupt_fault(5))
    dest = tmp_path / "c.zip"
    src.download(scene, dest)
    assert dest.read_bytes() == BODY
    srv.fault("GET", value_path(scene), corrupt_fault(5), corrupt_fault(77))
    dest2 = tmp_path / "c2.zip"
    with pytest.raises(FetchError) as exc:
        src.download(scene, dest2)
    msg = str(exc.value)
    assert "MD5" in msg and "\n" not in msg
    assert not dest2.exists()
    assert_clean(dest2)


def test_size_only_verification_when_no_checksum(world, tmp_path: Path) -> None:
    srv, fake, src, _, _ = world
    scene = scene_for(BODY, md5=False)
    srv.fault(
        "GET", value_path(scene), truncate_fault(1000), truncate_fault(1000), truncate_fault(1000), truncate_fault(1000)
    )
    with pytest.raises(FetchError, match="body ended at"):
        src.download(scene, tmp_path / "s.zip")
    assert not (tmp_path / "s.zip").exists()
    assert (tmp_path / "s.zip.part").stat().st_size == 4000  # 4 attempts x 1000 B, kept (unverified name) for resuming
    src.download(scene, tmp_path / "s.zip")
    assert (tmp_path / "s.zip").read_bytes() == BODY
    assert srv.seen(value_path(scene), "GET")[-1].headers["range"] == "bytes=4000-"


def test_expired_token_mid_run_refreshes(world, tmp_path: Path) -> None:
    srv, fake, src, scene, _ = world
    src.download(scene, tmp_path / "1.zip")
    fake.expire_all()  # the server no longer accepts the token it issued
    src.download(scene, tmp_path / "2.zip")
    assert fake.grants == ["password", "refresh_token"]
    assert (tmp_path / "2.zip").read_bytes() == BODY


def test_token_refreshed_before_expiry(world, tmp_path: Path) -> None:
    srv, fake, src, scene, _ = world
    fake.expires_in = 30  # shorter than the 60 s safety margin: every use renews first
    src.download(scene, tmp_path / "1.zip")
    src.download(scene, tmp_path / "2.zip")
    assert fake.grants == ["password", "refresh_token"]


def test_redirect_to_other_host_never_gets_the_token(world, tmp_path: Path) -> None:
    srv, fake, src, scene, _ = world
    # Another host (same loopback server, named localhost) serving the product without auth (a presigned URL).
    srv.route(
        "GET",
        "/presigned/p.zip",
        lambda req: __import__("tests.loopback", fromlist=["file_reply"]).file_reply(BODY, req),
    )
    srv.fault("GET", value_path(scene), redirect_fault(f"{srv.alt_url}/presigned/p.zip"))
    src.download(scene, tmp_path / "r.zip")
    assert (tmp_path / "r.zip").read_bytes() == BODY
    other = [r for r in srv.requests if r.host.startswith("localhost")]
    assert other and all("authorization" not in r.headers for r in other)
    assert srv.seen(value_path(scene))[0].headers["authorization"].startswith("Bearer ")
    # A redirect to a foreign host that wants credentials: fail in one line, still no token sent there.
    srv.fault("GET", value_path(scene), redirect_fault(f"{srv.alt_url}{value_path(scene)}"))
    with pytest.raises(FetchError) as exc:
        src.download(scene, tmp_path / "r2.zip")
    assert f"localhost:{srv.port}" in str(exc.value) and "\n" not in str(exc.value)
    assert all("authorization" not in r.headers for r in srv.requests if r.host.startswith("localhost"))


def test_redirect_to_allowed_host_keeps_authorization(world, tmp_path: Path) -> None:
    srv, fake, src, scene, _ = world
    src.allowed_hosts = (f"localhost:{srv.port}",)
    srv.fault("GET", value_path(scene), redirect_fault(f"{srv.alt_url}{value_path(scene)}", 301))
    src.download(scene, tmp_path / "z.zip")
    hops = [r for r in srv.requests if r.host.startswith("localhost")]
    assert hops and hops[0].headers["authorization"].startswith("Bearer ")


def test_wrong_password_one_line_without_secret(tmp_path: Path) -> None:
    scene = scene_for(BODY)
    with LoopbackServer() as srv:
        fake = FakeCdse(srv, products={pid_of(scene): BODY}).install()
        src = CdseSource(
            token_url=fake.token_url,
            download_url=srv.url + ODATA,
            credentials=Credentials(USER, "wrong-" + PASSWORD),
            policy=FAST,
            sleep=lambda s: None,
        )
        with pytest.raises(FetchError) as exc:
            src.download(scene, tmp_path / "w.zip")
    msg = str(exc.value)
    assert "Invalid user credentials" in msg and PASSWORD not in msg and "\n" not in msg


def safe_zip(extra: dict[str, bytes] | None = None) -> bytes:
    manifest = (FIXTURES / "cdse-odata" / "download" / "mock" / "sentinel_1" / "manifest.safe").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("S1A_TEST.SAFE/manifest.safe", manifest)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_safe_destination_unpacked_and_zip_slip_refused(tmp_path: Path) -> None:
    good, evil = safe_zip(), safe_zip({"../../evil.txt": b"x"})
    s_good, s_evil = scene_for(good, 0), scene_for(evil, 1)
    with LoopbackServer() as srv:
        fake = FakeCdse(srv, products={pid_of(s_good): good, pid_of(s_evil): evil}).install()
        src = CdseSource(
            token_url=fake.token_url,
            download_url=srv.url + ODATA,
            credentials=Credentials(USER, PASSWORD),
            policy=FAST,
            sleep=lambda s: None,
        )
        dest = src.download(s_good, tmp_path / "raw" / f"{s_good.product_id}.SAFE")
        assert (dest / "manifest.safe").read_bytes().startswith(b"<?xml")
        assert not list((tmp_path / "raw").glob("*.zip"))
        with pytest.raises(FetchError, match="escapes the product folder"):
            src.download(s_evil, tmp_path / "raw" / f"{s_evil.product_id}.SAFE")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "raw" / f"{s_evil.product_id}.SAFE").exists()


def test_progress_bar_on_tty_and_lines_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    t = iter([0.0, 1.0, 1.1, 2.0])
    stream = Tty()
    p = Progress("P", 100_000_000, stream=stream, clock=lambda: next(t))
    p.update(50_000_000)
    p.update(25_000_000)
    p.close()
    out = stream.getvalue()
    assert out.startswith("\r[") and "50.0/100.0 MB 50.0 MB/s ETA 0:00:01" in out and out.endswith("\n")
    caplog.set_level(logging.INFO)
    p2 = Progress("Q", 10_000_000, stream=io.StringIO(), clock=iter([0.0, 20.0, 20.0]).__next__, interval_s=10)
    p2.update(5_000_000)
    assert "Q  50.0% 5.0/10.0 MB 0.2 MB/s ETA 0:00:20" in caplog.text and "\r" not in caplog.text


def test_no_secret_in_any_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    scene = scene_for(BODY)
    errors: list[str] = []
    with LoopbackServer() as srv:
        fake = FakeCdse(srv, products={pid_of(scene): BODY}).install()
        src = CdseSource(
            token_url=fake.token_url,
            download_url=srv.url + ODATA,
            credentials=Credentials(USER, PASSWORD),
            policy=FAST,
            sleep=lambda s: None,
            progress_stream=sys.stderr,
        )
        srv.fault("GET", value_path(scene), status_fault(401), cut_fault(1000))
        src.download(scene, tmp_path / "ok.zip")
        srv.fault("GET", value_path(scene), redirect_fault(f"{srv.alt_url}{value_path(scene)}"))
        try:
            src.download(scene, tmp_path / "bad.zip")
        except FetchError as exc:
            errors.append(str(exc))
        errors.append(repr(src) + repr(src._auth()) + repr(Credentials(USER, PASSWORD)))
    out = capsys.readouterr()
    secrets = [PASSWORD, *fake.issued, "SECRET-REFRESH", "SECRET-ACCESS"]
    texts = [caplog.text, out.out, out.err, *errors]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(fake.issued) >= 2
    for s in secrets:
        assert all(s not in t for t in texts), f"secret leaked: {s[:6]}..."
