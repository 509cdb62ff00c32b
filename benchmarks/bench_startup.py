"""Start-up cost of every rule's script: a fresh Python importing what the script imports (DESIGN §8).

For each ``workflow/scripts/*.py`` the imports are read from the script's syntax tree (every branch but
the SNAP backend's, which is gpt's own process), and a fresh interpreter runs just those imports; the
process wall time is the job's fixed cost before its first pixel, less Snakemake's own. For the three
Sentinel-1 steps the process then also calls its numba kernels once on a tiny input, which loads them
from the on-disk cache (``NUMBA_CACHE_DIR``; compiled there on the first round) — that is part of the
fixed cost too. ``python -c pass`` is measured as the floor. Rounds are interleaved (script 1, 2, …, 1,
2, …) so that a change in machine load hits every script alike; the median per script is reported.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_startup.py [--rounds 5] [--scripts calibrate,speckle] [--importtime]

``--importtime`` also prints, per script, the ten modules with the largest cumulative import time
(``python -X importtime``). Prints a table and writes ``benchmarks/runs/startup.json``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
#: imports not made by the native chain's jobs (the SNAP backend runs gpt in its own process)
SKIP = {"pipeline_lib.sar.snap"}
#: one tiny call of each step's numba kernels (cache load), after the imports
WARM = {
    "calibrate": "",
    "speckle": (
        "import numpy as np; from pipeline_lib.sar.speckle import lee_sigma; "
        "lee_sigma(np.ones((16, 16), np.float32), SpeckleParams(7, 3, 0.9, None), 4.4)"
    ),
    "terrain_correct": (
        "import numpy as np; "
        "from pipeline_lib.sar.terrain import _ground_range_bounds, _lattice_ranges, _terrain_tile_kernel; "
        "z = np.zeros((1, 2, 2)); t = np.zeros((2, 4)); "
        "r = _lattice_ranges(z, z, np.zeros(1), 32.0, 0, 2, 0, 2, 0.0, 0.0); "
        "_ground_range_bounds(*r, np.arange(2.0), np.zeros(2), t, 0.0); "
        "lookup = (z, z, np.zeros(1), 32.0, 0, 0, np.zeros((1, 1)), np.arange(2.0), np.zeros(2), np.zeros((2, 2)), "
        "10.0, t, 0.0); "
        "_terrain_tile_kernel(lookup, np.ones((2, 4, 4), np.float32), 0.0, 0.0, np.empty((2, 2, 2), np.float32), "
        "np.empty((0, 0)), np.empty((0, 0)))"
    ),
}


def script_imports(path: Path) -> list[str]:
    """The import statements of a rule script, as source lines (all branches, SNAP's excepted)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module not in SKIP:
            names = ", ".join(a.name for a in node.names)
            out.append(f"from {node.module} import {names}")
        elif isinstance(node, ast.Import):
            out.extend(f"import {a.name}" for a in node.names if a.name not in SKIP)
    return out


def program(name: str, repo: Path = REPO) -> str:
    lines = script_imports(repo / "workflow" / "scripts" / f"{name}.py")
    warm = WARM.get(name, "")
    return "\n".join([*lines, warm])


def run_once(code: str, env: dict[str, str], importtime: bool = False, repo: Path = REPO) -> tuple[float, str]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code]
    env = {**env, "PYTHONPATH": str(repo) + os.pathsep + env.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {code!r}\n{proc.stderr[-2000:]}")
    return wall, proc.stderr


def top_imports(stderr: str, n: int = 10) -> list[tuple[str, float]]:
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, mod = line.split("|", 2)
            try:
                rows.append((mod.strip(), int(cum.strip()) / 1e6))
            except ValueError:
                continue
    return sorted(rows, key=lambda r: -r[1])[:n]


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scripts", default="", help="comma-separated script names (default: all)")
    ap.add_argument("--importtime", action="store_true")
    ap.add_argument(
        "--baseline", type=Path, default=None, help="another checkout (e.g. a git worktree of main), interleaved"
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "runs" / "startup.json")
    a = ap.parse_args(argv)
    names = a.scripts.split(",") if a.scripts else sorted(p.stem for p in SCRIPTS.glob("*.py"))
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="numba-cache-"))
    codes: dict[str, tuple[str, Path]] = {"(python -c pass)": ("pass", REPO)}
    for n in names:
        codes[n] = (program(n), REPO)
        if a.baseline is not None:
            codes[f"{n} (baseline)"] = (program(n, a.baseline), a.baseline)
    for code, repo in codes.values():  # warm-up: page cache, numba cache compiled once
        run_once(code, env, repo=repo)
    times: dict[str, list[float]] = {k: [] for k in codes}
    for _ in range(a.rounds):
        for k, (code, repo) in codes.items():
            times[k].append(run_once(code, env, repo=repo)[0])
    load = os.getloadavg()[0]
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    print(f"{'script':28s} {'median s':>9s} {'min s':>7s} {'max s':>7s}   (1-min load {load:.1f})")
    for k, v in times.items():
        print(f"{k:28s} {med[k]:9.3f} {min(v):7.3f} {max(v):7.3f}")
    if a.importtime:
        for k in names:
            print(f"\n{k}: largest cumulative imports (s)")
            for mod, s in top_imports(run_once(codes[k][0], env, importtime=True)[1]):
                print(f"  {s:6.3f}  {mod}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"median_s": med, "rounds": a.rounds, "load_1m": load}, indent=2) + "\n")
    return med


if __name__ == "__main__":
    main()
