"""Seed ensembles (``train.ensemble``, DESIGN §6): one member is the single-model path bit for bit, several
average their predictions and join their spread to the uncertainty, bad values are one-line ConfigErrors,
and the workflow trains members 1 … n − 1 as extra jobs only when n > 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import REPO, stack_generator
from workflow_utils import make_workdir, planned_jobs, snakemake

from pipeline_lib.config import load_region, schema_defaults
from pipeline_lib.errors import ConfigError
from pipeline_lib.model.data import load_stack
from pipeline_lib.model.ensemble import check_ensemble, combine_members, member_checkpoints, member_seeds
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import clip_reflectance, predict_arrays, run_predict
from pipeline_lib.model.train import build_generator, load_checkpoint, run_train

TINY = {"max_steps": 4, "batch_size": 4, "filters": 8, "patch_px": 32, "checkpoint_every": 50, "log_every": 1}


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], TrainParams]:
    """A 64 px synthetic stack and two no_uc members trained with seeds 0 and 1."""
    d = tmp_path_factory.mktemp("ens")
    stack, _ = stack_generator().make_stack(d, size=64)
    p = TrainParams.for_task("sar_to_visible", **TINY)
    ckpts = [Path(c) for c in member_checkpoints(str(d / "models"), "no_uc", 2)]
    for ckpt, seed in zip(ckpts, member_seeds(p.seed, 2), strict=True):
        run_train(stack, "no_uc", ckpt, p.replace(seed=seed), threads=1, device="cpu")
    return stack, ckpts, p


def _read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with rasterio.open(path) as src:
        return src.read(), dict(src.tags())


def _old_path(stack: Path, ckpt: Path, p: TrainParams) -> tuple[np.ndarray, np.ndarray]:
    """What run_predict computed for one checkpoint before ensembles existed."""
    data = load_stack(stack)
    ck = load_checkpoint(ckpt)
    q = p.with_network_of(TrainParams.from_checkpoint(ck["params"], str(ckpt)))
    g = build_generator("no_uc", len(data.band_s), len(data.band_t), q)
    g.load_state_dict(ck["generator"])
    pred, unc = predict_arrays(data, "no_uc", q, g, clip=False)
    assert unc is not None
    return clip_reflectance(pred)[0], unc


def test_one_member_is_the_single_model_path(members: tuple[Path, list[Path], TrainParams], tmp_path: Path) -> None:
    stack, ckpts, p = members
    run_predict(stack, "no_uc", ckpts[0], tmp_path / "a.tif", tmp_path / "au.tif", p, 1, "cpu")
    run_predict(stack, "no_uc", [ckpts[0]], tmp_path / "b.tif", tmp_path / "bu.tif", p, 1, "cpu")
    (a, tags_a), (b, tags_b) = _read(tmp_path / "a.tif"), _read(tmp_path / "b.tif")
    (au, utags_a), (bu, _) = _read(tmp_path / "au.tif"), _read(tmp_path / "bu.tif")
    old_pred, old_unc = _old_path(stack, ckpts[0], p)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(au, bu)
    np.testing.assert_array_equal(a, old_pred)
    np.testing.assert_array_equal(au, old_unc)
    assert tags_a == tags_b and "ensemble_members" not in tags_a
    assert utags_a["quantity"].startswith("uncertainty: weighted mean |R_g - R_h|")


def test_two_members_average_and_their_spread_joins_the_uncertainty(
    members: tuple[Path, list[Path], TrainParams], tmp_path: Path
) -> None:
    stack, ckpts, p = members
    run_predict(stack, "no_uc", ckpts, tmp_path / "e.tif", tmp_path / "eu.tif", p, 1, "cpu")
    (ens, tags), (ens_u, utags) = _read(tmp_path / "e.tif"), _read(tmp_path / "eu.tif")
    singles = [_old_path(stack, c, p) for c in ckpts]
    data = load_stack(stack)
    raw = []
    for c in ckpts:  # unclipped member predictions: the ensemble averages before clipping
        ck = load_checkpoint(c)
        g = build_generator("no_uc", len(data.band_s), len(data.band_t), p)
        g.load_state_dict(ck["generator"])
        raw.append(predict_arrays(data, "no_uc", p, g, clip=False)[0])
    np.testing.assert_allclose(ens, clip_reflectance((raw[0] + raw[1]) / 2)[0], atol=1e-6, equal_nan=True)
    ok = np.isfinite(ens_u)
    assert ok.sum() > 0.5 * ok.size
    disagree = ok & (np.abs(raw[0] - raw[1]) > 1e-4)
    assert disagree.sum() > 0.1 * ok.sum()  # two seeds do differ
    u0, u1 = singles[0][1], singles[1][1]
    # never below the members' root-mean-square uncertainty (≥ their mean), above it where they disagree
    assert np.all(ens_u[ok] >= np.sqrt((u0[ok] ** 2 + u1[ok] ** 2) / 2) - 1e-6)
    assert np.all(ens_u[disagree] > np.minimum(u0, u1)[disagree])
    assert np.mean(ens_u[disagree]) > max(np.mean(u0[disagree]), np.mean(u1[disagree]))
    assert tags["ensemble_members"] == "2" and tags["ensemble_checkpoints"] == "no_uc.pt;no_uc.member1.pt"
    assert "members' sample variance" in utags["quantity"]


def test_combine_members_formula() -> None:
    a, b = np.full((1, 2, 2), 0.2, np.float32), np.full((1, 2, 2), 0.4, np.float32)
    b[0, 0, 0] = 0.2  # the members agree on one pixel
    ua, ub = np.full_like(a, 0.03), np.full_like(a, 0.04)
    mean, unc = combine_members([a, b], [ua, ub])
    assert unc is not None
    np.testing.assert_allclose(mean, (a + b) / 2)
    sd = np.abs(a - b) / np.sqrt(2)  # sample standard deviation of two values
    np.testing.assert_allclose(unc, np.sqrt((ua**2 + ub**2) / 2 + sd**2), rtol=1e-6)
    np.testing.assert_allclose(unc[0, 0, 0], np.sqrt((0.03**2 + 0.04**2) / 2), rtol=1e-6)
    assert combine_members([a], [ua])[0] is a
    assert combine_members([a, b], [None, None])[1] is None  # variants without uncertainty stay without


def test_members_seeds_and_files() -> None:
    assert member_seeds(7, 3) == [7, 8, 9]
    assert member_checkpoints("m/e", "no_uc", 1) == ["m/e/no_uc.pt"]
    assert member_checkpoints("m/e", "no_uc", 3) == ["m/e/no_uc.pt", "m/e/no_uc.member1.pt", "m/e/no_uc.member2.pt"]
    assert schema_defaults("train")["ensemble"] == 1


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True, None])
def test_bad_ensemble_values_are_one_line_config_errors(value: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        check_ensemble(value)
    msg = str(info.value)
    assert msg.startswith("train.ensemble: ") and "\n" not in msg and ";" in msg, msg
    region = yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text(encoding="utf-8"))
    region["region"] = "tiny"
    region["train"] = {**region["train"], "ensemble": value}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(region), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_region("tiny", tmp_path)
    msg = str(info.value)
    assert ": train.ensemble: " in msg and "\n" not in msg, msg


def _dry_run(tmp_path: Path, ensemble: int | None) -> str:
    work = make_workdir(tmp_path / f"w{ensemble}")
    (work / "config" / "config.yaml").write_text(
        (work / "config" / "config.yaml").read_text(encoding="utf-8").replace("regions: [demo]", "regions: [ci-tiny]"),
        encoding="utf-8",
    )
    if ensemble is not None:
        f = work / "config" / "regions" / "ci-tiny.yaml"
        region = yaml.safe_load(f.read_text(encoding="utf-8"))
        region["train"]["ensemble"] = ensemble
        f.write_text(yaml.safe_dump(region, sort_keys=False), encoding="utf-8")
    return snakemake(work, "-n", "--cores", "1", "results/ci-tiny/report.html").stdout


def test_workflow_trains_members_only_when_asked(tmp_path: Path) -> None:
    plain, one, three = (_dry_run(tmp_path, n) for n in (None, 1, 3))
    assert planned_jobs(plain) == planned_jobs(one) and "train_member" not in planned_jobs(one)
    jobs = planned_jobs(three)
    assert jobs["train_member"] == 2 * jobs["train"]
    assert "models/sar2vis/tirsit.member2.pt" in three and "tirsit.member3" not in three
    assert "models/sar2vis/tirsit.member1.pt" not in one
