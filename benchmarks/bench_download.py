"""Download throughput vs curl on the loopback server, and the cost of resuming after a reset.

Usage: ``python benchmarks/bench_download.py [--mb 500] [--repeat 2]`` (from the repo root).
Serves one incompressible body with ``sendfile`` from ``tests.loopback.LoopbackServer`` and times, in
the same run: ``curl -o`` (the reference), :func:`pipeline_lib.fetch.http.download_file` with MD5
verification, the same with the connection reset at 50 % (resumed with Range), and resuming a
half-complete ``.part`` file. Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

# ruff: noqa: B023  (each lambda is called immediately by timed())
import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.fetch.http import RetryPolicy, download_file, make_session
from tests.loopback import LoopbackServer, cut_fault, file_reply


def make_body(path: Path, size: int) -> str:
    h = hashlib.md5(usedforsecurity=False)
    rng = random.Random(0)
    block = rng.randbytes(1 << 20)
    with open(path, "wb") as fh:
        left = size
        while left:
            b = block[: min(left, len(block))]
            b = bytes([left & 0xFF]) + b[1:]  # vary each MiB so the file is not periodic
            fh.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def timed(fn) -> float:  # type: ignore[no-untyped-def]  # called at once, so loop variables are bound
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "body.zip"
        md5 = make_body(src, size)
        policy = RetryPolicy(max_attempts=3, base_delay_s=0.0)
        with LoopbackServer() as srv:
            srv.route("GET", "/p/$value", lambda req: file_reply(src, req))
            url = f"{srv.url}/p/$value"
            session = make_session()
            rows: dict[str, list[float]] = {
                "curl": [],
                "curl + md5sum": [],
                "download_file (md5)": [],
                "download_file (size only)": [],
                "with reset at 50 %": [],
                "resume of a 50 % .part": [],
            }
            for _ in range(args.repeat):
                out = tmp / "curl.out"
                rows["curl"].append(timed(lambda: subprocess.run(["curl", "-sS", "-o", str(out), url], check=True)))
                rows["curl + md5sum"].append(
                    rows["curl"][-1]
                    + timed(lambda: subprocess.run(["md5sum", str(out)], check=True, capture_output=True))
                )
                out.unlink()
                dest = tmp / "ours.zip"
                rows["download_file (md5)"].append(
                    timed(lambda: download_file(url, dest, session=session, expected_size=size, md5=md5, policy=policy))
                )
                dest.unlink()
                rows["download_file (size only)"].append(
                    timed(lambda: download_file(url, dest, session=session, expected_size=size, policy=policy))
                )
                dest.unlink()
                srv.fault("GET", "/p/$value", cut_fault(size // 2, reset=True))
                rows["with reset at 50 %"].append(
                    timed(
                        lambda: download_file(
                            url, dest, session=session, expected_size=size, md5=md5, policy=policy, sleep=lambda s: None
                        )
                    )
                )
                dest.unlink()
                part = dest.with_name(dest.name + ".part")
                with open(src, "rb") as fi, open(part, "wb") as fo:
                    fo.write(fi.read(size // 2))
                rows["resume of a 50 % .part"].append(
                    timed(lambda: download_file(url, dest, session=session, expected_size=size, md5=md5, policy=policy))
                )
                dest.unlink()
    best = {k: min(v) for k, v in rows.items()}
    print(f"| case ({args.mb} MB body, loopback, best of {args.repeat}) | seconds | MB/s | vs curl |")
    print("|---|---|---|---|")
    for k, t in best.items():
        print(f"| {k} | {t:.2f} | {size / 1e6 / t:.0f} | {best['curl'] / t * 100:.0f} % |")
    print(f"\nall runs: { {k: [round(x, 2) for x in v] for k, v in rows.items()} }")
    print("(the reset run includes the 0.2 s the loopback server waits before sending the RST)")


if __name__ == "__main__":
    main()
