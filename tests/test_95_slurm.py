"""The workflow on a real one-node SLURM (DESIGN §8), in one ci-tiny run with a failure in it.

tests/slurm/start_slurm.sh installs Debian's slurm-wlm and munge when missing, writes /etc/slurm/slurm.conf
with one node and one fake GPU (gres gpu:1 on /dev/null) and starts munged, slurmctld and slurmd, recording
their PIDs; a finalizer stops exactly those PIDs (tests/slurm/stop_slurm.sh). The recipe is in tests/slurm/start_slurm.sh.
Snakemake runs with `--workflow-profile profiles/slurm` (snakemake-executor-plugin-slurm, squeue status).

The ci-tiny region reads its products from a local folder (`fetch: local`, the demo generator's products:
the same images the demo source serves), so one product can be damaged the way disks and networks damage
them, with no change to the pipeline:

1. First submission, `--keep-going`: the B11 band of the 2022-01-28 S2 product is zeros. Every job not
   declared local goes through sbatch (its SLURM job id is in Snakemake's log); the `optical` job of that
   date fails inside SLURM (ProductError naming the band); Snakemake exits non-zero naming the rule's log
   and the job's SLURM log; everything that does not depend on that job completes in SLURM.
2. The band is restored (product folder and downloaded copy) and the same command is rerun: only the
   missing jobs are submitted: the failed `optical` and its downstream (offsets, stack, train on the fake
   GPU, predictions, evaluation), no job that completed in the first run; nothing it wrote is touched.
3. The rasters, stacks and metrics equal those of a local `--cores 2` run of the same region and products
   (run beside it), and every COG has a current STAC sidecar.

Needs root (daemons, /etc/slurm). Elsewhere it skips with that reason; under CI=true it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from conftest import IN_CI, REPO
from workflow_utils import make_workdir

from pipeline_lib.demo import generate_demo_products
from pipeline_lib.stac import sidecar_is_current

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SLURM_SCRIPTS = REPO / "tests" / "slurm"
# CI-friendly polling; everything else comes from profiles/slurm/config.yaml.
SLURM_ARGS = ("--workflow-profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "3")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
JOB_HEADER = re.compile(r"^(local)?(rule|checkpoint) (\w+):\n((?:    .*\n)+)", re.M)
LOCAL_RULES = {"grid", "search", "metrics", "region_report", "index_report"}
BAD_DATE = "2022-01-28"
# Every non-local rule downstream of one date's S2 image (offsets compares all dates; the stack reads them all).
DOWNSTREAM_OF_OPTICAL = {"optical", "offsets", "stack", "train", "predict", "predict_plain", "select", "evaluate"}


class Job(NamedTuple):
    rule: str
    local: bool
    wildcards: str
    outputs: list[str]


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


def _jobs(log: str) -> dict[int, Job]:
    """{snakemake job id: Job} for every job Snakemake started, from the job headers of its log."""
    jobs: dict[int, Job] = {}
    for m in JOB_HEADER.finditer(log):
        body = m.group(4)
        jid = re.search(r"^    jobid: (\d+)$", body, re.M)
        if jid:
            wc = re.search(r"^    wildcards: (.*)$", body, re.M)
            out = re.search(r"^    output: (.*)$", body, re.M)
            outputs = [o.strip() for o in out.group(1).split(",")] if out else []
            jobs[int(jid.group(1))] = Job(m.group(3), m.group(1) == "local", wc.group(1) if wc else "", outputs)
    return jobs


def _submissions(log: str) -> list[tuple[int, str, str]]:
    """[(snakemake job id, SLURM job id, SLURM log)] from the plugin's 'submitted with SLURM jobid' lines."""
    return [(int(m.group(1)), m.group(2), m.group(3)) for m in SUBMITTED.finditer(log)]


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


def _check_submissions(log: str) -> tuple[dict[int, Job], dict[int, str]]:
    """Every non-local job Snakemake started has a SLURM job id in its log; no local job was submitted.

    Returns (jobs, {snakemake job id: SLURM job id}).
    """
    jobs = _jobs(log)
    subs = {j: sid for j, sid, _ in _submissions(log)}
    remote = {j for j, job in jobs.items() if not job.local}
    assert remote, f"no non-local job started:\n{log[-3000:]}"
    assert set(subs) == remote, (
        f"non-local jobs without a SLURM job id: {sorted(jobs[j].rule for j in remote - set(subs))}; "
        f"submitted but not non-local: {sorted(set(subs) - remote)}"
    )
    assert {job.rule for job in jobs.values() if job.local} <= LOCAL_RULES
    return jobs, subs


def _snapshot(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _region(work: Path, products: Path) -> None:
    """ci-tiny as shipped, reading its products from ``products`` (fetch: local) instead of the demo source."""
    region = yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text())
    region["fetch"] = {"source": "local", "local_dir": str(products)}
    (work / "config/regions/ci-tiny.yaml").write_text(yaml.safe_dump(region, sort_keys=False))


def _tifs(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.glob("results/ci-tiny/s[12]/*.tif"))


def test_ci_tiny_on_slurm_failure_rerun_equals_local(slurm: Path, tmp_path: Path) -> None:
    dates = [
        date.fromisoformat(str(d)) for d in yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text())["dates"]
    ]
    pristine = tmp_path / "products"
    generate_demo_products(pristine, dates, size_px=128, seed=0)
    damaged = tmp_path / "products-slurm"
    shutil.copytree(pristine, damaged)
    local_dir, cluster_dir = make_workdir(tmp_path / "local"), make_workdir(tmp_path / "slurm")
    _region(local_dir, pristine)
    _region(cluster_dir, damaged)
    band = "*{}T*.SAFE/GRANULE/*/IMG_DATA/R20m/*_B11_20m.jp2".format(BAD_DATE.replace("-", ""))
    good_b11 = next(pristine.glob(f"S2*_MSIL2A_{band}"))
    bad_b11 = damaged / good_b11.relative_to(pristine)
    bad_b11.write_bytes(b"\0" * bad_b11.stat().st_size)  # same size, unreadable
    target = "results/ci-tiny/report.html"

    # The local reference runs beside the SLURM runs (those mostly wait on squeue).
    local = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", target],
        cwd=local_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        # 1. First submission: the optical job of BAD_DATE fails in SLURM; no retry (it would fail again).
        r = _snakemake(cluster_dir, *SLURM_ARGS, "--retries", "0", "--keep-going", target)
        log1 = r.stdout + r.stderr
        assert r.returncode != 0, log1[-3000:]
        jobs1, subs1 = _check_submissions(log1)
        failed = [j for j, job in jobs1.items() if job.rule == "optical" and f"date={BAD_DATE}" in job.wildcards]
        assert len(failed) == 1, jobs1
        failed_sid = subs1[failed[0]]
        states = _slurm_states(list(subs1.values()))
        assert states[failed_sid] == "FAILED", states
        assert {s for sid, s in states.items() if sid != failed_sid} == {"COMPLETED"}, states
        rule_log = f"logs/ci-tiny/optical/{BAD_DATE}.log"
        assert "Error in rule optical" in log1 and rule_log in log1, log1[-3000:]
        slurm_logs = list((cluster_dir / ".snakemake" / "slurm_logs").rglob(f"{failed_sid}.log"))
        assert len(slurm_logs) == 1 and str(slurm_logs[0]) in log1, "the failed job's SLURM log is kept and named"
        why = (cluster_dir / rule_log).read_text() + slurm_logs[0].read_text()
        assert "ProductError" in why and bad_b11.name in why, why[-2000:]
        results = cluster_dir / "results" / "ci-tiny"
        assert not (results / "s2" / f"{BAD_DATE}.tif").exists()
        assert len(list((results / "s1").glob("*.tif"))) == len(dates), "keep-going: the S1 chain completed"
        assert len(list((results / "s2").glob("*.tif"))) == len(dates) - 1

        # 2. Fix: the user restores the band in their product folder. The product's fingerprint (a parameter
        # of its download) changes, so its download reruns and re-links the repaired product.
        raw_product = next((results / "raw").glob(f"S2*_MSIL2A_{band}")).parents[4].name
        shutil.copyfile(good_b11, bad_b11)
        before = _snapshot(cluster_dir / "results")
        log2 = _ok(_snakemake(cluster_dir, *SLURM_ARGS, target), "rerun after the fix")
        jobs2, subs2 = _check_submissions(log2)
        assert {_slurm_states(list(subs2.values()))[s] for s in subs2.values()} == {"COMPLETED"}
        remote2 = [jobs2[j] for j in subs2]
        downloads = [job for job in remote2 if job.rule == "download_safe"]
        assert len(downloads) == 1 and raw_product.removesuffix(".SAFE") in downloads[0].wildcards, downloads
        # Only what was missing: no output of a resubmitted job existed (but the re-linked product), nothing
        # else written before was touched.
        relinked = f"ci-tiny/raw/{raw_product}/"
        assert not [
            o
            for job in remote2
            if job.rule != "download_safe"
            for o in job.outputs
            if o.removeprefix("results/") in before
        ]
        after = _snapshot(cluster_dir / "results")
        kept = {k: v for k, v in before.items() if not k.startswith(relinked)}
        assert {k: after.get(k) for k in kept} == kept, "a file of the first run was rewritten"
        per_rule = {rule: sum(job.rule == rule for job in remote2) for rule in {job.rule for job in remote2}}
        assert set(per_rule) <= DOWNSTREAM_OF_OPTICAL | {"download_safe"}, per_rule
        assert {"optical", "offsets", "stack", "train", "evaluate"} <= set(per_rule), per_rule
        assert [job.wildcards for job in remote2 if job.rule == "optical"] == [f"region=ci-tiny, date={BAD_DATE}"]
        assert len(subs2) == len(remote2) == sum(per_rule.values())
        print(f"\nrerun after the fix: {len(subs2)} sbatch submissions (re-link, failed job + downstream): {per_rule}")
        # The GPU rule got SLURM's (fake) GPU.
        train_sid = next(subs2[j] for j in subs2 if jobs2[j].rule == "train")
        show = subprocess.run(["scontrol", "show", "job", train_sid], capture_output=True, text=True, timeout=30)
        assert re.search(r"gres[:/]gpu[:=]1", show.stdout), show.stdout
    finally:
        local_log, _ = local.communicate(timeout=900)
    assert local.returncode == 0, f"local ci-tiny run failed ({local.returncode}):\n{local_log[-8000:]}"
    assert (cluster_dir / target).is_file()

    # 3. The SLURM results equal the local ones.
    tifs = _tifs(cluster_dir)
    assert tifs and tifs == _tifs(local_dir)
    assert {p.parent.name for p in tifs} == {"s1", "s2"}
    for rel in tifs:
        with rasterio.open(cluster_dir / rel) as a, rasterio.open(local_dir / rel) as b:
            assert (a.crs, a.transform, a.shape, a.count) == (b.crs, b.transform, b.shape, b.count), rel
            np.testing.assert_array_equal(a.read(), b.read(), err_msg=str(rel))
    cogs = sorted(cluster_dir.glob("results/ci-tiny/**/*.tif"))
    assert [p for p in cogs if not sidecar_is_current(p)] == [], "every COG has a current STAC sidecar"

    stacks = sorted(p.relative_to(cluster_dir) for p in cluster_dir.glob("results/ci-tiny/stacks/*.nc"))
    assert stacks == sorted(p.relative_to(local_dir) for p in local_dir.glob("results/ci-tiny/stacks/*.nc"))
    assert stacks, "ci-tiny defines one experiment, so one stack"
    for rel in stacks:
        with xr.open_dataset(cluster_dir / rel) as a, xr.open_dataset(local_dir / rel) as b:
            xr.testing.assert_equal(a.load(), b.load())

    metrics = sorted(p.relative_to(cluster_dir) for p in cluster_dir.glob("results/ci-tiny/metrics/*.json"))
    assert metrics == sorted(p.relative_to(local_dir) for p in local_dir.glob("results/ci-tiny/metrics/*.json"))
    assert metrics
    for rel in metrics:
        assert json.loads((cluster_dir / rel).read_text()) == json.loads((local_dir / rel).read_text()), rel
