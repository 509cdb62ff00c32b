"""The variant registry is the one list of names: schema enum, rules, training, prediction and report agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline_lib.errors import ModelError
from pipeline_lib.model import variants as reg
from pipeline_lib.model.baselines import BASELINES
from pipeline_lib.model.data import VARIANTS
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import UNCERTAINTY_VARIANTS
from pipeline_lib.model.train import build_generator, variant_flags
from pipeline_lib.report.model_part import ABLATION_ROWS, MAIN_ROWS

REPO = Path(__file__).resolve().parents[1]


def test_schema_enum_and_default_are_the_listed_networks() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text(encoding="utf-8"))

    def find(node: object) -> dict | None:
        if isinstance(node, dict):
            if "variants" in node and isinstance(node["variants"], dict) and "items" in node["variants"]:
                return node["variants"]
            for v in node.values():
                hit = find(v)
                if hit is not None:
                    return hit
        return None

    spec = find(schema)
    assert spec is not None
    assert tuple(spec["items"]["enum"]) == reg.listed_networks()
    assert tuple(spec["default"]) == reg.default_networks()
    assert set(reg.default_networks()) == {"tirsit", "tirsit_noadv", "no_uc", "no_sg", "no_uc_sg", "pix2pix"}


def test_rules_take_their_wildcards_from_the_registry() -> None:
    text = (REPO / "workflow/rules/model.smk").read_text(encoding="utf-8")
    assert "variant=TRAIN_VARIANTS" in text
    assert "variant=UNCERTAINTY_VARIANTS" in text
    assert "variant=PLAIN_VARIANTS" in text
    assert not re.search(r'variant="[a-z_|]+"', text), "a hard-coded variant list is back in model.smk"
    common = (REPO / "workflow/rules/common.smk").read_text(encoding="utf-8")
    assert "model_variants" in common


def test_patterns_partition_the_listed_names() -> None:
    listed = set(reg.listed_networks()) | set(reg.baselines())
    unc = set(reg.uncertainty_variants(listed_only=True))
    plain = {v for v in listed if not reg.get_variant(v).uncertainty}
    assert unc | plain == listed and not unc & plain
    assert set(reg.wildcard_pattern(sorted(unc)).split("|")) == unc


def test_code_tables_derive_from_the_registry() -> None:
    assert VARIANTS == reg.networks()
    assert BASELINES == reg.baselines() == ("neighbour_j", "neighbour_k", "blend")
    assert set(UNCERTAINTY_VARIANTS) == {v.name for v in reg.REGISTRY if v.uncertainty}
    assert "pix2pix" not in UNCERTAINTY_VARIANTS and "blend" in UNCERTAINTY_VARIANTS
    for name, label in [*MAIN_ROWS, *ABLATION_ROWS]:
        assert label == reg.label(name)
    assert reg.label("selected") == "selected"


def test_paper_variants_keep_the_paper_flags() -> None:
    expect = {
        "tirsit": (True, True, True),
        "tirsit_noadv": (True, True, False),
        "no_uc": (True, False, False),
        "no_sg": (False, True, False),
        "no_uc_sg": (False, False, False),
    }
    for name, (guided, con, adv) in expect.items():
        f = variant_flags(name)
        assert (f["guided"], f["con"], f["adv"], f["pix2pix"]) == (guided, con, adv, False)
        assert reg.get_variant(name).consistency == ("paper" if con else "none")
    assert variant_flags("pix2pix")["pix2pix"]


@pytest.mark.parametrize("name", reg.networks())
def test_every_network_builds(name: str) -> None:
    p = TrainParams.for_task("sar_to_visible", filters=4, levels=2, eta=0.5)
    g = build_generator(name, 2, 3, p)
    assert g.guided == reg.get_variant(name).guided


def test_unknown_and_baseline_names_are_refused() -> None:
    with pytest.raises(ModelError, match="unknown"):
        reg.get_variant("tirsitt")
    with pytest.raises(ModelError, match="baseline"):
        variant_flags("blend")
    with pytest.raises(ModelError):
        reg.wildcard_pattern(["tirsit", "nope"])
