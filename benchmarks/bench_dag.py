"""Dry-run DAG build time for many regions (DESIGN §8): `snakemake -n results/report.html`.

For each N in --regions, a temporary copy of the workflow (Snakefile, workflow/, config/, profiles/, envs/)
gets N region files modelled on config/regions/ci-tiny.yaml (distinct slugs bench-000..., --dates dates
12 days apart) and a config file listing them all in `regions:`. Two figures per N (median of --repeat):

- cold: a fresh clone. The DAG stops at each region's `search` checkpoint (grid + search per region and
  the report jobs that wait on them): what `snakemake -n` shows before anything ran.
- seeded: every region's grid.json and scenes.csv present (the real grid/search of ci-tiny, with the scene
  table extended to all --dates by shifting its S1/S2 rows), so Snakemake resolves the checkpoint and
  builds the full per-date DAG (download, calibrate, speckle, terrain_correct, optical, ... per date).
  Run with `--rerun-triggers mtime`: the copied files have no Snakemake metadata records.

Usage: python benchmarks/bench_dag.py [--regions 1 20 100] [--dates 10] [--repeat 3] [--keep DIR]
Prints one JSON line per N; paste the figures into BENCHMARKS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib.fetch.base import read_scene_table, write_scene_table

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "envs", "pyproject.toml"]
TEMPLATE = "ci-tiny"


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def bench_dates(first: str, n: int) -> list[str]:
    """``n`` dates 12 days apart (the Sentinel-1 repeat cycle) from ``first``."""
    d0 = date.fromisoformat(first)
    return [(d0 + timedelta(days=12 * k)).isoformat() for k in range(n)]


def write_regions(work: Path, n_regions: int, n_dates: int) -> tuple[list[str], Path]:
    """N region files from the template and a config file listing them; returns (slugs, config path)."""
    regions_dir = work / "config" / "regions"
    template: dict[str, Any] = yaml.safe_load((regions_dir / f"{TEMPLATE}.yaml").read_text())
    first = str(template["dates"][0])
    slugs = [f"bench-{i:03d}" for i in range(n_regions)]
    for slug in slugs:
        region = dict(template, region=slug, description=f"DAG benchmark region {slug}")
        region["dates"] = bench_dates(first, n_dates)
        (regions_dir / f"{slug}.yaml").write_text(yaml.safe_dump(region, sort_keys=False))
    cfg = work / "bench-config.yaml"
    cfg.write_text(yaml.safe_dump({"regions": slugs}))
    return slugs, cfg


def seed_scene_tables(work: Path, slugs: list[str], n_dates: int, env: dict[str, str]) -> None:
    """Run the template's real grid + search, extend its scene table to all dates, copy to every region."""
    res = work / "results" / TEMPLATE
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", f"results/{TEMPLATE}/scenes.csv"],
        cwd=work,
        check=True,
        capture_output=True,
        env=env,
    )
    scenes = read_scene_table(res / "scenes.csv")
    first = min(s.date for s in scenes)
    base = [s for s in scenes if s.date == first]
    d0 = date.fromisoformat(first)
    extended = []
    for d in bench_dates(first, n_dates):
        shift = date.fromisoformat(d) - d0
        for s in base:
            old, new = d0.strftime("%Y%m%d"), date.fromisoformat(d).strftime("%Y%m%d")
            extended.append(
                dataclasses.replace(
                    s, date=d, sensing_time=s.sensing_time + shift, product_id=s.product_id.replace(old, new)
                )
            )
    t0 = time.time() - 3600
    for slug in slugs:
        out = work / "results" / slug
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(res / "grid.json", out / "grid.json")
        write_scene_table(extended, out / "scenes.csv")
        os.utime(out / "grid.json", (t0, t0))  # the table must be newer than the grid it was searched on
        os.utime(out / "scenes.csv", (t0 + 1, t0 + 1))


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    m = re.search(r"Job stats:\n(.*?)\n\s*total\s+\d+", output, re.S)
    counts: dict[str, int] = {}
    for line in m.group(1).splitlines() if m else []:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def time_dry_run(work: Path, cfg: Path, repeat: int, env: dict[str, str], *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "snakemake", "results/report.html", "-n", *extra, "--configfile", str(cfg)]
    times, out = [], ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        out = r.stdout + r.stderr
        if r.returncode != 0:
            last = [ln for ln in out.splitlines() if ln.strip()][-6:]
            return {"error": " | ".join(last)}
    counts = job_counts(out)
    return {"median_s": round(statistics.median(times), 2), "jobs": sum(counts.values()), "per_rule": counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regions", type=int, nargs="+", default=[1, 20, 100])
    ap.add_argument("--dates", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="build the temporary copies here and keep them")
    ap.add_argument("--cold-only", action="store_true", help="skip the seeded (post-search) dry run")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-dag-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    try:
        for n in args.regions:
            work = copy_workflow(root / f"n{n}")
            slugs, cfg = write_regions(work, n, args.dates)
            row: dict[str, Any] = {"regions": n, "dates": args.dates, "cold": time_dry_run(work, cfg, args.repeat, env)}
            if not args.cold_only:
                try:
                    seed_scene_tables(work, slugs, args.dates, env)
                    # The copied tables carry no Snakemake metadata (code/params records), so judge them by mtime only.
                    row["seeded"] = time_dry_run(work, cfg, args.repeat, env, "--rerun-triggers", "mtime")
                except subprocess.CalledProcessError as exc:
                    row["seeded"] = {"error": f"seeding failed: {(exc.stderr or b'').decode()[-400:]}"}
            row["machine"] = f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
            print(json.dumps(row), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
