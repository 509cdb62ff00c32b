"""Demo end to end locally vs through SLURM (DESIGN §8).

Starts a one-node SLURM with tests/slurm/start_slurm.sh (as root), then in two fresh
`git clone`s of the repository (as benchmarks/bench_demo.py) runs the region to its report
1. locally: `snakemake --cores N <target>`,
2. on SLURM: `snakemake --workflow-profile profiles/slurm <target>` (the profile as users get it),
one after the other, records each wall time and the number of sbatch submissions (the plugin's
"submitted with SLURM jobid" lines), stops the daemons it started (tests/slurm/stop_slurm.sh, by PID) and
prints a JSON line and a markdown row for BENCHMARKS.md.

Usage (root): python benchmarks/bench_slurm_demo.py [--region demo] [--cores 2] [--keep DIR]
The clones run their own code (PYTHONPATH = the clone) with this interpreter's venv first on PATH, which
sbatch exports to the jobs. Commit first: a clone holds only committed files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLURM_SCRIPTS = REPO / "tests" / "slurm"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
LOCAL_JOB = re.compile(r"^local(?:rule|checkpoint) \w+:$", re.M)  # the header Snakemake prints per local job


def _env(clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TIRSIT_SLURM_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(clone)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _clone(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    return dest


def _run(clone: Path, args: list[str], what: str, timeout: float) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=clone,
        capture_output=True,
        text=True,
        env=_env(clone),
        timeout=timeout,
    )
    wall = time.perf_counter() - t0
    log = r.stdout + r.stderr
    if r.returncode != 0:
        sys.stderr.write(log[-6000:])
        raise SystemExit(f"{what} failed ({r.returncode}) in {clone}")
    return wall, log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--region", default="demo")
    ap.add_argument("--cores", type=int, default=2, help="cores of the local run")
    ap.add_argument("--keep", type=Path, default=None, help="clone into DIR/local and DIR/slurm and keep them")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per run")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_slurm_demo.py: run as root (it writes /etc/slurm and starts munged/slurmctld/slurmd)")
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    base.mkdir(parents=True, exist_ok=True)
    target = "results/report.html" if args.region == "demo" else f"results/{args.region}/report.html"
    state = Path(tempfile.mkdtemp(prefix="slurm-bench-state-"))
    r = subprocess.run(["bash", str(SLURM_SCRIPTS / "start_slurm.sh"), str(state)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop_slurm.sh"), str(state)], check=False)
        raise SystemExit(f"start_slurm.sh failed ({r.returncode}); logs in {state}/log")
    try:
        node = subprocess.run(["sinfo", "-h", "-N", "-o", "%c CPUs %m MB %G"], capture_output=True, text=True)
        local_wall, _ = _run(_clone(base / "local"), ["--cores", str(args.cores), target], "local run", args.timeout)
        slurm_wall, log = _run(
            _clone(base / "slurm"), ["--workflow-profile", "profiles/slurm", target], "SLURM run", args.timeout
        )
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop_slurm.sh"), str(state)], check=False)
    submissions = len(SUBMITTED.findall(log))
    local_jobs = len(LOCAL_JOB.findall(log))
    result = {
        "region": args.region,
        "local_cores": args.cores,
        "local_wall_s": round(local_wall, 1),
        "slurm_wall_s": round(slurm_wall, 1),
        "sbatch_submissions": submissions,
        "local_rule_jobs_in_slurm_run": local_jobs,
        "slurm_node": node.stdout.strip(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
    }
    print(json.dumps(result))
    print(
        f"| {dt.date.today().isoformat()} | {platform.machine()} {os.cpu_count()} cpus | {args.region} | "
        f"{local_wall:.0f} s (`--cores {args.cores}`) | {slurm_wall:.0f} s (`--workflow-profile profiles/slurm`) | "
        f"{submissions} sbatch + {local_jobs} local |"
    )
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
