"""The one registry of model variants and baselines (DESIGN §6; STYLE: "a closed set of names is one registry").

Every consumer reads this table: the workflow's wildcard constraints (``workflow/rules/model.smk``
via :func:`wildcard_pattern`), training (:func:`pipeline_lib.model.train.variant_flags`), prediction
(which variants load a checkpoint, which write an uncertainty raster), the report's row labels and
the config schema's ``experiments[].variants`` enum (``tests/test_60_model_variants.py`` checks
that the schema agrees with :func:`listed_networks`).

Fields of a :class:`Variant`:

- ``trains``: a network with a checkpoint (False for the baselines ``neighbour_j``, ``neighbour_k``,
  ``blend``);
- ``guided``: the guide encoder and feature masks (paper §III-B.2, eqs. 1–3);
- ``consistency``: which uniqueness term the generator loss carries — ``"none"``, ``"paper"``
  (the paper's L_con, eq. 6 with eq. 4's sign) or one of the departures of
  :mod:`pipeline_lib.model.losses` (DESIGN §11: ``"cycle"``, ``"identity"``, ``"stopgrad"``);
- ``adversarial``: the PatchGAN loss (λ_adv of the task; pix2pix's own GAN);
- ``uncertainty``: several per-guide reconstructions, hence the uncertainty raster;
- ``pix2pix``: S → T on the guide dates (no differences);
- ``listed``: offered to users (rules, schema enum). The shortcut-fix candidates are not listed
  until one beats ``tirsit`` on the real chips and is not worse on the demo (the issue's adoption
  rule): ``tirsit_identity`` is; ``tirsit_cycle`` and ``tirsit_stopgrad`` stay benchmark-only. The
  default ``variants`` are the paper's (:func:`default_networks`);
- ``label``: the report's row label (the paper's wording for the paper's variants).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_lib.errors import ModelError

__all__ = [
    "Variant",
    "REGISTRY",
    "CONSISTENCY_KINDS",
    "get_variant",
    "networks",
    "listed_networks",
    "default_networks",
    "baselines",
    "uncertainty_variants",
    "wildcard_pattern",
    "label",
]

CONSISTENCY_KINDS = ("none", "paper", "cycle", "identity", "stopgrad")


@dataclass(frozen=True)
class Variant:
    """One model variant or baseline (see the module docstring for the fields)."""

    name: str
    label: str
    trains: bool
    guided: bool = False
    consistency: str = "none"
    adversarial: bool = False
    uncertainty: bool = False
    pix2pix: bool = False
    listed: bool = True

    def __post_init__(self) -> None:
        if self.consistency not in CONSISTENCY_KINDS:
            raise ValueError(f"Variant {self.name}: consistency {self.consistency!r} not in {CONSISTENCY_KINDS}")


REGISTRY: tuple[Variant, ...] = (
    # The paper's method and ablations (Tables I–IV) — the reference, unchanged.
    Variant("tirsit", "TIRSIT", True, guided=True, consistency="paper", adversarial=True, uncertainty=True),
    Variant("tirsit_noadv", "TIRSIT w/o adversarial loss", True, guided=True, consistency="paper", uncertainty=True),
    Variant("no_uc", "w/o UC", True, guided=True, uncertainty=True),
    Variant("no_sg", "w/o SG", True, consistency="paper", uncertainty=True),
    Variant("no_uc_sg", "w/o UC, w/o SG", True, uncertainty=True),
    Variant("pix2pix", "pix2pix", True, adversarial=True, pix2pix=True),
    # DESIGN §11: departures from the paper's L_con that remove G(·, T_g) = −T_g + c (not listed
    # until one beats tirsit on the real chips; all without L_adv, like tirsit_noadv).
    Variant(
        "tirsit_cycle",
        "TIRSIT, cycle k→i→j loss (departure)",
        True,
        guided=True,
        consistency="cycle",
        uncertainty=True,
        listed=False,
    ),
    Variant(
        "tirsit_identity",
        "TIRSIT + zero-change pairs (departure)",
        True,
        guided=True,
        consistency="identity",
        uncertainty=True,
        listed=True,  # adopted: beats tirsit on the real chips and on the demo (BENCHMARKS.md, "Quality on real data")
    ),
    Variant(
        "tirsit_stopgrad",
        "TIRSIT, L_con not through the guide (departure)",
        True,
        guided=True,
        consistency="stopgrad",
        uncertainty=True,
        listed=False,
    ),
    # Baselines (no network).
    Variant("neighbour_j", "Neighbouring image T_j", False),
    Variant("neighbour_k", "Neighbouring image T_k", False),
    Variant("blend", "Blend of T_j, T_k (no network)", False, uncertainty=True),
)

_BY_NAME = {v.name: v for v in REGISTRY}


def get_variant(name: str) -> Variant:
    """The registry entry of ``name``; ModelError naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ModelError(f"variant {name!r} is unknown; expected one of {list(_BY_NAME)}") from None


def networks(listed_only: bool = False) -> tuple[str, ...]:
    """Names of the trained variants (in registry order); only the user-facing ones if ``listed_only``."""
    return tuple(v.name for v in REGISTRY if v.trains and (v.listed or not listed_only))


def listed_networks() -> tuple[str, ...]:
    """The trained variants offered in config (the schema enum and default of ``experiments[].variants``)."""
    return networks(listed_only=True)


def default_networks() -> tuple[str, ...]:
    """The default of ``experiments[].variants``: the paper's listed variants (departures are opt-in)."""
    return tuple(v.name for v in REGISTRY if v.trains and v.listed and v.consistency in ("none", "paper"))


def baselines() -> tuple[str, ...]:
    """Names of the no-network baselines."""
    return tuple(v.name for v in REGISTRY if not v.trains)


def uncertainty_variants(listed_only: bool = False) -> tuple[str, ...]:
    """Variants (networks and baselines) that write an uncertainty raster."""
    return tuple(v.name for v in REGISTRY if v.uncertainty and (v.listed or not listed_only))


def wildcard_pattern(names: tuple[str, ...] | list[str]) -> str:
    """A Snakemake wildcard constraint matching exactly ``names`` (validated against the registry)."""
    for n in names:
        get_variant(n)
    return "|".join(names)


def label(name: str) -> str:
    """The report label of a variant or baseline (the name itself when unknown, e.g. ``selected``)."""
    v = _BY_NAME.get(name)
    return v.label if v is not None else name
