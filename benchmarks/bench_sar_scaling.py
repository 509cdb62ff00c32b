"""How the native Sentinel-1 chain scales from one core to two: rounds of :mod:`bench_sar_chain`, interleaved.

Each round runs the whole chain (calibrate → speckle → terrain_correct, each step a fresh process, inputs
settled) once pinned to CPUs 0 and 1 with 2 threads and once pinned to CPU 0 with 1 thread; the order
alternates (2 1, 1 2, 2 1, …) so that a drift of the host's speed or of the page cache does not favour one
side. The speed-up is reported per round (1-core chain / 2-core chain) and as the ratio of the means, with
the CPU reference of every step (:func:`bench_sar_chain.cpu_reference`) to show how fast the host ran.

Run from the repository root, on an otherwise idle machine::

    PYTHONPATH=. python benchmarks/bench_sar_scaling.py --dest /tmp/sp_fullscene --work /tmp/scaling [--rounds 4]
        [--drop-caches] [--crop N]

Writes ``scaling.json`` in the work folder. Each round of a whole scene takes a few minutes and about
10 GB of disk for the intermediate NetCDFs (one set per thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

CHAIN = Path(__file__).resolve().parent / "bench_sar_chain.py"

#: CPUs each side is pinned to
CPUS = {2: {0, 1}, 1: {0}}


def run_chain(threads: int, dest: Path, work: Path, crop: int, drop_caches: bool) -> list[dict[str, Any]]:
    """One chain at ``threads`` threads, pinned to :data:`CPUS`; its per-step results."""
    cmd = [sys.executable, str(CHAIN), "--dest", str(dest), "--work", str(work), "--threads", str(threads)]
    cmd += ["--crop", str(crop), "--settle"] + (["--drop-caches"] if drop_caches else [])
    cpus = CPUS[threads]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, preexec_fn=lambda: os.sched_setaffinity(0, cpus)
    )
    if proc.returncode != 0:
        sys.exit(f"chain at {threads} thread(s) failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: list[dict[str, Any]] = json.loads((work / "results.json").read_text())
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, required=True, help="folder of the full-size GRD (built if absent)")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--crop", type=int, default=0, help="central N×N px of the scene grid (0 = whole scene)")
    ap.add_argument("--drop-caches", action="store_true", help="empty the page cache before each step (root)")
    a = ap.parse_args(argv)
    if not set().union(*CPUS.values()) <= os.sched_getaffinity(0):
        sys.exit(f"bench_sar_scaling: needs CPUs {sorted(set().union(*CPUS.values()))}")
    rounds: list[dict[str, Any]] = []
    for r in range(a.rounds):
        chains: dict[int, list[dict[str, Any]]] = {}
        for threads in (2, 1) if r % 2 == 0 else (1, 2):
            chains[threads] = run_chain(threads, a.dest, a.work / f"t{threads}", a.crop, a.drop_caches)
        total = {t: sum(s["wall_s"] for s in steps) for t, steps in chains.items()}
        rounds.append({"round": r + 1, "chains": chains, "total_s": total, "speedup": total[1] / total[2]})
        steps = " ".join(f"{s['step']} {chains[2][i]['wall_s']:.1f}/{s['wall_s']:.1f}" for i, s in enumerate(chains[1]))
        refs = " ".join(f"{s['cpu_reference_s']:.2f}" for t in (2, 1) for s in chains[t])
        print(
            f"round {r + 1}: 2 cores {total[2]:.1f} s, 1 core {total[1]:.1f} s, {total[1] / total[2]:.2f}×  "
            f"({steps}; CPU reference {refs} s)",
            flush=True,
        )
    mean = {t: statistics.fmean(r["total_s"][t] for r in rounds) for t in (2, 1)}
    summary = {
        "rounds": rounds,
        "mean_s": mean,
        "speedup_of_means": mean[1] / mean[2],
        "speedup_per_round": [r["speedup"] for r in rounds],
    }
    print(
        f"means: 2 cores {mean[2]:.1f} s, 1 core {mean[1]:.1f} s, {summary['speedup_of_means']:.2f}× "
        f"(per round {min(summary['speedup_per_round']):.2f}–{max(summary['speedup_per_round']):.2f}×)"
    )
    a.work.mkdir(parents=True, exist_ok=True)
    (a.work / "scaling.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
