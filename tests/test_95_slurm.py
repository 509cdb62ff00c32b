"""The workflow on a real one-node SLURM (issue 6, parts 3 and 4).

tests/slurm/start_slurm.sh installs Debian's slurm-wlm and munge when missing, writes /etc/slurm/slurm.conf
with one node and one fake GPU (gres gpu:1 on /dev/null) and starts munged, slurmctld and slurmd, recording
their PIDs; a finalizer stops exactly those PIDs (tests/slurm/stop_slurm.sh). The recipe is ../shared/SLURM.md.
Snakemake runs with `--workflow-profile profiles/slurm` (snakemake-executor-plugin-slurm, squeue status).

- A small workflow of our own (local rules, a checkpoint, per-item jobs, a `gpu: 1` job) checks the profile's
  mechanics: every non-local job goes through sbatch and completes in SLURM, local rules run on the host, the
  GPU job gets the fake GPU; a job made to fail makes the run exit non-zero naming its log, and the rerun
  after the fix submits only the missing job.
- The ci-tiny region runs through SLURM to its report; every non-local job must have a SLURM job id and
  the rasters, stacks and metrics must equal those of a local `--cores 2` run.

Needs root (daemons, /etc/slurm). Elsewhere it skips with that reason; under CI=true it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import IN_CI, REPO
from workflow_utils import make_workdir

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SLURM_SCRIPTS = REPO / "tests" / "slurm"
# CI-friendly polling; everything else comes from profiles/slurm/config.yaml.
SLURM_ARGS = ("--workflow-profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "3")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
JOB_HEADER = re.compile(r"^(local)?(rule|checkpoint) (\w+):\n((?:    .*\n)+)", re.M)


def _require_root() -> None:
    if os.geteuid() != 0:
        reason = "the SLURM test must run as root (it writes /etc/slurm and starts munged/slurmctld/slurmd)"
        if IN_CI:
            pytest.fail(f"{reason}, but CI=true; run .ci/run as root")
        pytest.skip(f"{reason}; .ci/run runs it as root")
    if not (Path("/usr/bin/apt-get").exists() or Path("/usr/sbin/slurmctld").exists()):
        reason = "neither slurm-wlm nor apt-get (to install it) is available"
        if IN_CI:
            pytest.fail(f"{reason} under CI=true")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running one-node SLURM with a fresh state directory; daemons stopped by PID afterwards."""
    _require_root()
    state = tmp_path_factory.mktemp("slurm-state")
    try:
        r = subprocess.run(
            ["bash", str(SLURM_SCRIPTS / "start_slurm.sh"), str(state)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if r.returncode != 0:
            logs = "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in sorted((state / "log").glob("*.log")))
            pytest.fail(f"start_slurm.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}{logs}")
        yield state
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop_slurm.sh"), str(state)], timeout=60, check=False)


def _env() -> dict[str, str]:
    """Environment for Snakemake and its SLURM jobs (sbatch exports it): this venv first, the repo importable."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONHASHSEED", "0")
    for key in [k for k in env if k.startswith(("SLURM_", "TIRSIT_SLURM_"))]:
        del env[key]
    return env


def _snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def _ok(r: subprocess.CompletedProcess[str], what: str) -> str:
    log = r.stdout + r.stderr
    if r.returncode != 0:
        raise AssertionError(f"{what} failed ({r.returncode}):\n{log[-8000:]}")
    return log


def _jobs(log: str) -> dict[int, tuple[str, bool]]:
    """{snakemake job id: (rule, declared local)} for every job Snakemake started, from its log."""
    jobs: dict[int, tuple[str, bool]] = {}
    for m in JOB_HEADER.finditer(log):
        jid = re.search(r"^    jobid: (\d+)$", m.group(4), re.M)
        if jid:
            jobs[int(jid.group(1))] = (m.group(3), m.group(1) == "local")
    return jobs


def _submissions(log: str) -> list[tuple[int, str]]:
    """[(snakemake job id, SLURM job id)] from the plugin's 'submitted with SLURM jobid' lines (retries repeat ids)."""
    return [(int(m.group(1)), m.group(2)) for m in SUBMITTED.finditer(log)]


def _slurm_states(ids: list[str]) -> dict[str, str]:
    """SLURM's own record of the jobs (kept MinJobAge=300 s after they end; no accounting needed)."""
    r = subprocess.run(
        ["squeue", "--states=all", "--noheader", "-o", "%i|%T", "-j", ",".join(ids)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return dict(line.split("|", 1) for line in r.stdout.split())


def _assert_remote_jobs_went_through_sbatch(log: str) -> dict[str, list[str]]:
    """Every non-local job has a SLURM job id that SLURM ran to COMPLETED; no local job was submitted.

    Returns {rule: [SLURM job ids]} of the submitted jobs.
    """
    jobs, subs = _jobs(log), dict(_submissions(log))
    remote = {j for j, (_, local) in jobs.items() if not local}
    local = {j for j, (_, is_local) in jobs.items() if is_local}
    assert remote, f"no non-local job started:\n{log[-3000:]}"
    assert set(subs) == remote, (
        f"non-local jobs without a SLURM job id: {sorted(jobs[j][0] for j in remote - set(subs))}; "
        f"submitted but not non-local: {sorted(set(subs) - remote)}"
    )
    assert not local & set(subs)
    states = _slurm_states(list(subs.values()))
    assert {states.get(s) for s in subs.values()} == {"COMPLETED"}, states
    by_rule: dict[str, list[str]] = {}
    for j, sid in subs.items():
        by_rule.setdefault(jobs[j][0], []).append(sid)
    return by_rule


TOY_SNAKEFILE = r"""
# Throwaway workflow exercising profiles/slurm: local rules, a checkpoint, per-item jobs, a GPU job.
import json
from pathlib import Path


localrules: setup, report


rule report:
    input: lambda wc: expand("out/proc/{i}.txt", i=items()), "out/model.json"
    output: "out/report.txt"
    run:
        Path(output[0]).write_text("".join(Path(p).read_text() for p in input))


rule setup:
    output: "out/setup.txt"
    shell: "echo job=${{SLURM_JOB_ID:-none}} > {output}"


checkpoint search:
    input: "out/setup.txt"
    output: "out/items.json"
    localrule: True
    run:
        Path(output[0]).write_text(json.dumps([1, 2, 3]))


def items():
    return json.loads(Path(checkpoints.search.get().output[0]).read_text())


rule proc:
    input: "out/items.json"
    output: "out/proc/{i}.txt"
    log: "logs/proc/{i}.log"
    threads: 1
    resources: mem_mb=500
    shell: "echo item={wildcards.i} job=${{SLURM_JOB_ID:-none}} > {output} 2> {log}"


rule train:
    input: lambda wc: expand("out/proc/{i}.txt", i=items())
    output: "out/model.json"
    log: "logs/train.log"
    resources: gpu=1
    # FAIL_TRAIN (not an input, so removing it changes nothing upstream) makes the job fail on purpose.
    shell:
        "if [ -e FAIL_TRAIN ]; then echo 'train: FAIL_TRAIN is present' > {log}; exit 3; fi; "
        "echo '{{\"cuda\": \"'${{CUDA_VISIBLE_DEVICES:-}}'\", \"job\": \"'${{SLURM_JOB_ID:-none}}'\"}}' > {output} 2> {log}"
"""


def test_profile_mechanics_failure_and_rerun(slurm: Path, tmp_path: Path) -> None:
    work = make_workdir(tmp_path / "toy")
    (work / "Snakefile").write_text(TOY_SNAKEFILE)
    (work / "FAIL_TRAIN").write_text("")

    # 1. train fails on SLURM: non-zero exit naming the job's log and its SLURM log (no retry, to save time).
    r = _snakemake(work, *SLURM_ARGS, "--retries", "0", "out/report.txt")
    log = r.stdout + r.stderr
    assert r.returncode != 0, log[-3000:]
    assert "Error in rule train" in log and "logs/train.log" in log, log[-3000:]
    assert (work / "logs" / "train.log").read_text().startswith("train: FAIL_TRAIN is present")
    jobs, subs = _jobs(log), _submissions(log)
    train_subs = [sid for j, sid in subs if jobs[j][0] == "train"]
    assert len(train_subs) == 1
    slurm_log = work / ".snakemake" / "slurm_logs" / "rule_train" / f"{train_subs[0]}.log"
    assert slurm_log.is_file() and str(slurm_log) in log, "the failed job's SLURM log is kept and named"
    assert not (work / "out" / "model.json").exists()
    procs = sorted((work / "out" / "proc").glob("*.txt"))
    assert [p.name for p in procs] == ["1.txt", "2.txt", "3.txt"]
    proc_mtimes = {p.name: p.stat().st_mtime_ns for p in procs}
    proc_subs = sorted(sid for j, sid in subs if jobs[j][0] == "proc")
    assert sorted(p.read_text().split("job=")[1].strip() for p in procs) == proc_subs, "written inside SLURM"
    assert {j for j, (_, local) in jobs.items() if not local} == {j for j, _ in subs}, (
        "every non-local job was submitted"
    )
    states = _slurm_states(train_subs + proc_subs)
    assert [states[s] for s in train_subs] == ["FAILED"]
    assert all(states[s] == "COMPLETED" for s in proc_subs)
    assert (work / "out" / "setup.txt").read_text().strip() == "job=none", "a local rule ran on the host"

    # 2. Fix and rerun: only the missing job (train) is submitted, then the local report runs.
    (work / "FAIL_TRAIN").unlink()
    log = _ok(_snakemake(work, *SLURM_ARGS, "out/report.txt"), "rerun after the fix")
    by_rule = _assert_remote_jobs_went_through_sbatch(log)
    assert {rule: len(ids) for rule, ids in by_rule.items()} == {"train": 1}
    assert {p.name: p.stat().st_mtime_ns for p in procs} == proc_mtimes
    model = json.loads((work / "out" / "model.json").read_text())
    assert model == {"cuda": "0", "job": by_rule["train"][0]}, "the GPU job ran in SLURM with the fake GPU"
    assert (work / "out" / "report.txt").read_text().count("item=") == 3


def _tifs(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.glob("results/ci-tiny/s[12]/*.tif"))


def test_ci_tiny_through_slurm_equals_local(slurm: Path, tmp_path: Path) -> None:
    local_dir = make_workdir(tmp_path / "local")
    cluster_dir = make_workdir(tmp_path / "slurm")
    target = "results/ci-tiny/report.html"
    # The local reference runs beside the SLURM run (the SLURM run mostly waits on squeue).
    local = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", target],
        cwd=local_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        log = _ok(_snakemake(cluster_dir, *SLURM_ARGS, target), "ci-tiny through profiles/slurm")
    finally:
        local_log, _ = local.communicate(timeout=600)
    assert local.returncode == 0, f"local ci-tiny run failed ({local.returncode}):\n{local_log[-8000:]}"
    assert (cluster_dir / target).is_file()

    by_rule = _assert_remote_jobs_went_through_sbatch(log)
    local_rules = {rule for rule, is_local in _jobs(log).values() if is_local}
    assert local_rules <= {"grid", "search", "metrics", "region_report", "index_report"}, local_rules
    assert {"calibrate", "optical"} <= set(by_rule), by_rule

    tifs = _tifs(cluster_dir)
    assert tifs and tifs == _tifs(local_dir)
    assert {p.parent.name for p in tifs} == {"s1", "s2"}
    for rel in tifs:
        with rasterio.open(cluster_dir / rel) as a, rasterio.open(local_dir / rel) as b:
            assert (a.crs, a.transform, a.shape, a.count) == (b.crs, b.transform, b.shape, b.count), rel
            np.testing.assert_array_equal(a.read(), b.read(), err_msg=str(rel))

    stacks = sorted(p.relative_to(cluster_dir) for p in cluster_dir.glob("results/ci-tiny/stacks/*.nc"))
    assert stacks == sorted(p.relative_to(local_dir) for p in local_dir.glob("results/ci-tiny/stacks/*.nc"))
    assert stacks, "ci-tiny defines one experiment, so one stack"
    for rel in stacks:
        with xr.open_dataset(cluster_dir / rel) as a, xr.open_dataset(local_dir / rel) as b:
            xr.testing.assert_equal(a.load(), b.load())

    metrics = sorted(p.relative_to(cluster_dir) for p in cluster_dir.glob("results/ci-tiny/metrics/*.json"))
    assert metrics == sorted(p.relative_to(local_dir) for p in local_dir.glob("results/ci-tiny/metrics/*.json"))
    for rel in metrics:
        assert json.loads((cluster_dir / rel).read_text()) == json.loads((local_dir / rel).read_text()), rel
