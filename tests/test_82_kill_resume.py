"""Kill-and-resume (DESIGN §9): SIGKILL mid-write at four stages, rerun, byte-identical results.

One ci-tiny workflow copy is driven through four crashes in a row, each at a deterministic point —
not a timing race: ``PIPELINE_FAULT_KILL`` (the test hook of :mod:`pipeline_lib.io`) names the
output being written, and the writer SIGKILLs its whole process group (Snakemake, started in a new
session, and all its jobs: a crashed node) after the temporary is complete and fsynced, just before
the rename. Stages, in DAG order:

1. download — the demo product folder of the S1 2022-01-04 scene, built in a temporary sibling
   folder, before its rename (``pipeline_lib.fetch.demo``);
2. terrain correction — ``s1/2022-01-04.tif``;
3. training — the *second* ``tirsit.pt.partial`` checkpoint (``PIPELINE_FAULT_SKIP=1``), so the
   first one exists and the rerun resumes from it;
4. the region report — ``report.html``.

After each crash the test records that it really was mid-write (Snakemake died by SIGKILL, the
final file absent, the complete temporary beside it, the output marked in
``.snakemake/incomplete``); then ``snakemake --unlock`` and a rerun with ``--rerun-incomplete``
(armed with the next kill point). The last rerun must complete, leave no temporary or
``.partial`` file, and give results identical to the session's one uninterrupted run
(``ci_tiny_baseline``, same settings): every file byte-identical except the report (equal once the
generation stamp and the runtimes are masked) and the checkpoint (state dicts compared bit for
bit; the file bytes are reported). ``pytest -s`` prints the timings for RELIABILITY.md.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from workflow_utils import (
    CI_TINY_RESUMABLE_TRAIN,
    CI_TINY_TARGET,
    TEMP_NAME,
    digests,
    make_ci_tiny_workdir,
    normalise_report,
    raster_files,
    snakemake,
    temp_leftovers,
)

from pipeline_lib.model.train import load_checkpoint

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

REGION = "results/ci-tiny"
S1_DATE = "2022-01-04"
CKPT = "models/sar2vis/tirsit.pt"


@dataclass(frozen=True)
class KillPoint:
    stage: str
    glob: str  # PIPELINE_FAULT_KILL, matched against the absolute destination path
    output: str  # the rule output (relative to results/ci-tiny) left incomplete by the kill
    written: str  # the file being renamed into place when the kill hits (relative to results/ci-tiny)
    skip: int = 0  # PIPELINE_FAULT_SKIP


KILLS = (
    KillPoint("download", f"*/{REGION}/raw/S1B_IW_GRDH_1SDV_{S1_DATE.replace('-', '')}T*.SAFE", "raw/{s1}", "raw/{s1}"),
    KillPoint("terrain", f"*/{REGION}/s1/{S1_DATE}.tif", f"s1/{S1_DATE}.tif", f"s1/{S1_DATE}.tif"),
    KillPoint("train", f"*/{REGION}/{CKPT}.partial", CKPT, f"{CKPT}.partial", skip=1),
    KillPoint("report", f"*/{REGION}/report.html", "report.html", "report.html"),
)


@dataclass
class Crash:
    """What one armed run did and left behind, recorded before the rerun."""

    returncode: int
    seconds: float
    written_exists: bool
    output_exists: bool
    temps: list[Path]
    incomplete: set[str]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chain:
    work: Path
    baseline: Path
    crashes: dict[str, Crash]
    final_seconds: float
    leftovers_after_rerun: dict[str, list[str]]
    s1: str  # the S1 product whose download was killed


def _stale(dest: Path) -> list[Path]:
    """Temporaries of ``dest`` beside it (the names pipeline_lib.io.remove_stale_temps would remove)."""
    pat = re.compile(rf"\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}\.part")
    return sorted(p for p in dest.parent.glob(".*") if pat.match(p.name)) if dest.parent.is_dir() else []


def _incomplete(work: Path) -> set[str]:
    """Outputs Snakemake marked incomplete (.snakemake/incomplete/<urlsafe b64 of the path, split>)."""
    root = work / ".snakemake" / "incomplete"
    keys = set()
    for p in root.rglob("*") if root.is_dir() else []:
        if p.is_file() and not p.name.startswith("@") and p.name != "migration_underway":
            parts = [q.lstrip("@") for q in p.relative_to(root).parts]
            keys.add(base64.urlsafe_b64decode("".join(parts)).decode())
    return keys


def _armed_run(work: Path, kill: KillPoint, timeout: int = 900) -> tuple[int, float]:
    """Snakemake with the kill point armed, as its own process group; (return code, seconds)."""
    env = dict(os.environ, PYTHONHASHSEED="0", PIPELINE_FAULT_KILL=kill.glob, PIPELINE_FAULT_SKIP=str(kill.skip))
    # one download at a time: a second download finishing its rename just before the kill would leave a
    # complete product folder that Snakemake still marks incomplete and, being a directory that exists, does
    # not rerun (seen once in CI); the kill point is deterministic, this keeps what runs beside it so too
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "downloads=1", "--rerun-incomplete"]
    cmd.append(CI_TINY_TARGET)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"armed run for {kill.stage} did not finish in {timeout} s")
    seconds = time.perf_counter() - t0
    if proc.returncode != -signal.SIGKILL:
        pytest.fail(
            f"kill point {kill.stage} ({kill.glob}) never fired: snakemake exited {proc.returncode}\n{out[-3000:]}"
        )
    return proc.returncode, seconds


def _record(work: Path, baseline: Path, kill: KillPoint, s1: str, rc: int, seconds: float) -> Crash:
    res, base = work / REGION, baseline / REGION
    written = res / kill.written.format(s1=s1)
    temps = _stale(written)
    crash = Crash(
        returncode=rc,
        seconds=seconds,
        written_exists=written.exists(),
        output_exists=(res / kill.output.format(s1=s1)).exists(),
        temps=temps,
        incomplete=_incomplete(work),
    )
    if not temps:
        return crash
    tmp = temps[0]
    if kill.stage == "download":  # the complete product folder waiting to be renamed
        crash.extra["complete"] = digests(tmp / s1) == {
            k: v for k, v in digests(base / "raw" / s1).items() if k != ".snakemake_timestamp"
        }
    elif kill.stage == "terrain":
        crash.extra["complete"] = tmp.read_bytes() == (base / kill.written).read_bytes()
    elif kill.stage == "train":
        crash.extra["epoch_partial"] = int(load_checkpoint(written)["epoch"])
        crash.extra["epoch_temp"] = int(load_checkpoint(tmp)["epoch"])
        crash.extra["complete"] = True
    elif kill.stage == "report":
        crash.extra["complete"] = tmp.read_text(encoding="utf-8").endswith("</html>\n")
    return crash


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, ci_tiny_baseline: Path) -> Chain:
    base = ci_tiny_baseline
    base_log = (base / "logs/ci-tiny/train/sar2vis/tirsit.log").read_text(encoding="utf-8")
    n_ckpt = base_log.count("checkpoint: wrote")
    assert n_ckpt >= 2, f"the baseline wrote {n_ckpt} partial checkpoints; the train kill needs >= 2 ({base_log})"
    (s1,) = [p.name for p in (base / REGION / "raw").glob(f"S1B_*_{S1_DATE.replace('-', '')}T*.SAFE")]
    work = make_ci_tiny_workdir(tmp_path_factory.mktemp("kill-resume") / "wf")
    crashes: dict[str, Crash] = {}
    after: dict[str, list[str]] = {}
    previous: KillPoint | None = None
    for kill in KILLS:
        rc, seconds = _armed_run(work, kill)
        if previous is not None:  # this rerun got past the previous kill point: what is left of that crash?
            after[previous.stage] = [p.name for p in _stale(work / REGION / previous.written.format(s1=s1))]
        crashes[kill.stage] = _record(work, base, kill, s1, rc, seconds)
        snakemake(work, "--unlock")
        previous = kill
    t0 = time.perf_counter()
    snakemake(work, "--cores", "2", "--rerun-incomplete", CI_TINY_TARGET, timeout=900)
    final_seconds = time.perf_counter() - t0
    assert previous is not None
    after[previous.stage] = [p.name for p in _stale(work / REGION / previous.written)]
    return Chain(work, base, crashes, final_seconds, after, s1)


@pytest.mark.parametrize("kill", KILLS, ids=[k.stage for k in KILLS])
def test_crash_was_mid_write(chain: Chain, kill: KillPoint) -> None:
    """Each armed run died by SIGKILL with the output not in place and its complete temporary beside it."""
    c = chain.crashes[kill.stage]
    print(f"\nKILL|{kill.stage}|rc={c.returncode}|{c.seconds:.1f} s|temps={[p.name for p in c.temps]}|{c.extra}")
    assert c.returncode == -signal.SIGKILL
    assert not c.output_exists, f"{kill.output} is in place although the kill hit before its rename"
    assert len(c.temps) >= 1, f"no temporary of {kill.written} left: the kill did not hit mid-write"
    assert c.extra.get("complete") is True, c.extra
    out = f"{REGION}/{kill.output.format(s1=chain.s1)}"
    assert out in c.incomplete, (out, sorted(c.incomplete))
    if kill.stage == "train":  # the kill hit the 2nd checkpoint: the 1st is there to resume from
        every = CI_TINY_RESUMABLE_TRAIN["checkpoint_every"]
        assert c.written_exists and c.extra["epoch_partial"] == every and c.extra["epoch_temp"] == 2 * every
    else:
        assert not c.written_exists


def test_rerun_completes_without_leftovers(chain: Chain) -> None:
    """Every rerun removed the dead writer's temporary; the finished run has no temp or .partial file."""
    print(f"\nKILL|final rerun|{chain.final_seconds:.1f} s|left after each rerun: {chain.leftovers_after_rerun}")
    res = chain.work / REGION
    assert (res / "report.html").is_file() and (chain.work / CI_TINY_TARGET).is_file()
    assert set(chain.leftovers_after_rerun) == {k.stage for k in KILLS}
    assert all(not v for v in chain.leftovers_after_rerun.values()), chain.leftovers_after_rerun
    assert temp_leftovers(chain.work / "results") == []
    assert not _incomplete(chain.work), sorted(_incomplete(chain.work))
    r = snakemake(chain.work, "-n", "--cores", "2", CI_TINY_TARGET)
    assert "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]


def test_training_resumed_from_partial_checkpoint(chain: Chain) -> None:
    """The rerun after the train kill (its log is the last train log: later runs had nothing to train)."""
    log = (chain.work / "logs/ci-tiny/train/sar2vis/tirsit.log").read_text(encoding="utf-8")
    every = CI_TINY_RESUMABLE_TRAIN["checkpoint_every"]
    assert re.search(rf"resuming tirsit from \S+tirsit\.pt\.partial at epoch {every}, step \d+", log), log


def test_results_byte_identical_to_uninterrupted_run(chain: Chain) -> None:
    a, b = chain.baseline / REGION, chain.work / REGION
    rasters = raster_files(a)
    assert {f.split("/", 1)[0] for f in rasters} == {"s1", "s2", "stacks", "truth", "pred"}, rasters
    assert rasters == raster_files(b)
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert json.loads((b / "metrics.json").read_text())
    da, db = digests(a), digests(b)
    assert set(da) == set(db), sorted(set(da) ^ set(db))
    differ = sorted(f for f in da if da[f] != db[f])
    print("\nKILL|files that differ from the uninterrupted run:", differ or "none")
    assert set(differ) <= {"report.html", CKPT}, differ


def test_checkpoint_state_dicts_bit_identical(chain: Chain) -> None:
    ca = load_checkpoint(chain.baseline / REGION / CKPT)
    cb = load_checkpoint(chain.work / REGION / CKPT)
    for key in ("generator", "discriminator"):
        sa, sb = ca[key] or {}, cb[key] or {}
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), key
    assert ca["generator"], "empty generator state dict"
    for key in ("opt_g", "opt_d"):  # Adam moments and step counts
        oa, ob = ca[key] or {"state": {}, "param_groups": []}, cb[key] or {"state": {}, "param_groups": []}
        assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
        pairs = [(oa["state"][i][n], ob["state"][i][n]) for i in oa["state"] for n in oa["state"][i]]
        assert all(torch.equal(x, y) if torch.is_tensor(x) else x == y for x, y in pairs), key
    assert json.dumps(ca["history"]) == json.dumps(cb["history"])  # losses bit for bit (NaN where not logged)
    assert (ca["epoch"], ca["step"], ca["complete"]) == (cb["epoch"], cb["step"], True)
    assert torch.equal(ca["torch_rng"], cb["torch_rng"])
    # torch.save names the zip root after the (random) temp file and adds a random serialization id:
    # equal checkpoints are not equal files, hence the state-dict comparison above.
    same = (chain.baseline / REGION / CKPT).read_bytes() == (chain.work / REGION / CKPT).read_bytes()
    print(f"\nKILL|checkpoint file byte-identical: {same}")


def test_report_differs_only_in_runtimes_and_stamp(chain: Chain) -> None:
    ra = (chain.baseline / REGION / "report.html").read_text(encoding="utf-8")
    rb = (chain.work / REGION / "report.html").read_text(encoding="utf-8")
    assert normalise_report(ra) == normalise_report(rb)
    assert '<section id="runtimes">' in ra and "generated <stamp>" in normalise_report(ra)


def test_temp_name_pattern_matches_the_writers() -> None:
    """The leftover check recognises exactly the names atomic_path and the demo download create."""
    assert TEMP_NAME.match(".2022-01-04.tif.k3_x9a0b.part.tif") and TEMP_NAME.match(".X.SAFE.abcd1234.part")
    assert TEMP_NAME.match(".tirsit.pt.partial.abcd1234.part.pt")
    assert not TEMP_NAME.match(".snakemake_timestamp") and not TEMP_NAME.match("tirsit.pt")
