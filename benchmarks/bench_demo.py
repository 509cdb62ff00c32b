"""End-to-end demo benchmark: wall time and peak RSS of `snakemake --cores N results/report.html`
from a fresh clone, plus the no-op re-run (`snakemake -n`) time.

Usage: python benchmarks/bench_demo.py [--cores 2] [--region demo] [--keep DIR]
Prints one JSON line; paste the figures into BENCHMARKS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--region", default="demo")
    ap.add_argument("--keep", type=Path, default=None, help="clone here and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    if work.exists():
        shutil.rmtree(work)
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    target = "results/report.html" if args.region == "demo" else f"results/{args.region}/report.html"
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), target]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-5000:])
        raise SystemExit(r.returncode)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # largest single child process
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-n", target], cwd=work, capture_output=True, check=True)
    noop = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "region": args.region,
                "cores": args.cores,
                "wall_s": round(wall, 1),
                "peak_rss_mb_largest_process": round(peak_kb / 1024, 1),
                "noop_dry_run_s": round(noop, 2),
                "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
            }
        )
    )
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
