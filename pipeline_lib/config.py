"""Configuration: one JSON Schema for config.yaml and every region file, validated before any job runs.

The schema lives in ``workflow/schemas/config.schema.yaml``. Defaults from the schema are filled
in, ``defaults:`` of config.yaml is merged under each region file, and every violation becomes a
one-line :class:`~pipeline_lib.errors.ConfigError` naming the file, the key and the fix.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pyproj.exceptions import CRSError

from pipeline_lib.errors import ConfigError
from pipeline_lib.lonlat import check_lonlat_bbox, check_lonlat_point

__all__ = ["SCHEMA_PATH", "load_schema", "validate_top", "load_region", "load_regions", "schema_defaults"]

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
SECRET_KEY = re.compile(
    r"^(pass(word)?|passwd|token|access_token|refresh_token|secret|client_secret|credentials?|username|user)$",
    re.IGNORECASE,
)


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return dict(yaml.safe_load(fh))


def _with_defaults(cls: type[jsonschema.protocols.Validator]) -> type[jsonschema.protocols.Validator]:
    """A validator class that fills ``default`` values of object properties (jsonschema FAQ recipe)."""
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                sub = _resolve(validator, sub)
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})  # type: ignore[no-any-return]


def _resolve(validator: Any, sub: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = sub.get("$ref")
    if ref is None:
        return sub
    return validator._resolver.lookup(ref).contents  # type: ignore[no-any-return]


_DefaultingValidator = _with_defaults(jsonschema.Draft202012Validator)


def _fix_hint(err: jsonschema.ValidationError) -> str:
    s = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties":
        allowed = sorted(s.get("properties", {}))
        return f"remove it (allowed keys: {', '.join(allowed)})"
    if err.validator == "enum":
        return f"use one of {', '.join(map(str, s['enum']))}"
    if err.validator == "type":
        return f"give a value of type {s['type']}"
    if err.validator == "minItems":
        return f"give at least {s.get('minItems')} items"
    if err.validator == "maxItems":
        return f"give at most {s.get('maxItems')} items"
    if err.validator == "required":
        return "add it"
    if err.validator == "pattern":
        return f"match the pattern {s.get('pattern')}"
    if err.validator == "uniqueItems":
        return "remove the duplicates"
    if err.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}[str(err.validator)]
        return f"give a value {bound} {s.get(str(err.validator))}"
    desc = s.get("description")
    return f"see its description: {desc}" if desc else "see workflow/schemas/config.schema.yaml"


def _one_line(err: jsonschema.ValidationError, origin: str) -> str:
    # Prefer the deepest, most specific error among oneOf/anyOf branches.
    best = jsonschema.exceptions.best_match([err]) if err.context else err
    key = ".".join(str(p) for p in best.absolute_path) or "<top level>"
    msg = best.message
    if best.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)' was unexpected", msg)
        if extra:
            key = ".".join([*map(str, best.absolute_path), extra[0]])
            msg = "unknown key"
    msg = msg.replace("\n", " ")
    if len(msg) > 160:
        msg = msg[:157] + "..."
    return f"{origin}: {key}: {msg}; {_fix_hint(best)}"


def _validate(instance: dict[str, Any], schema: dict[str, Any], origin: str) -> None:
    validator = _DefaultingValidator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        raise ConfigError(_one_line(errors[0], origin))


def validate_top(config: dict[str, Any], origin: str = "config/config.yaml") -> dict[str, Any]:
    """Validate (and fill defaults of) the top-level config in place; return it."""
    _validate(config, load_schema(), origin)
    return config


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
        )
    return out


def load_region(slug: str, regions_dir: str | Path, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load, merge and validate ``<regions_dir>/<slug>.yaml``; raise ConfigError with one line on any problem."""
    path = Path(regions_dir) / f"{slug}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(regions_dir).glob("*.yaml"))
        raise ConfigError(
            f"regions: region file {path} not found; create it or use one of: {', '.join(known) or 'none'}"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=_NoTimestampLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:200]}); fix the syntax") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: unreadable ({type(exc).__name__}); fix its encoding: save it as UTF-8 text"
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys, got {type(raw).__name__}; give key: value settings as in config/regions/demo.yaml"
        )
    raw = {k: (str(v) if isinstance(v, date) else v) for k, v in raw.items()}
    _stringify_dates(raw)
    region = _deep_merge(defaults or {}, raw)
    schema = load_schema()
    region_schema = {**schema["$defs"]["region"], "$defs": schema["$defs"]}
    _validate(region, region_schema, str(path))
    _check_semantics(region, path, slug)
    return region


class _NoTimestampLoader(yaml.SafeLoader):
    """SafeLoader that keeps dates as strings: ``2022-02-30`` unquoted must become our ConfigError, not a
    ``ValueError`` from PyYAML's timestamp constructor (bad-input matrix, DESIGN §9)."""


_NoTimestampLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _stringify_dates(obj: Any) -> None:
    """YAML turns 2022-01-04 into a date; the schema wants ISO strings."""
    if isinstance(obj, dict):
        for k in [k for k in obj if isinstance(k, date)]:  # {2018-07-08: file} mappings (fetch.files paths)
            obj[k.isoformat()] = obj.pop(k)
        for k, v in obj.items():
            if isinstance(v, date):
                obj[k] = v.isoformat()
            else:
                _stringify_dates(v)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, date):
                obj[i] = v.isoformat()
            else:
                _stringify_dates(v)


def _check_semantics(region: dict[str, Any], path: Path, slug: str) -> None:
    if region["region"] != slug:
        raise ConfigError(f"{path}: region: '{region['region']}' differs from the file name; set region: {slug}")
    aoi = region.get("aoi")
    if aoi is None:
        if region["fetch"]["source"] != "files":
            raise ConfigError(f"{path}: aoi: required for fetch.source {region['fetch']['source']}; add it")
    elif isinstance(aoi, list):
        check_lonlat_bbox(aoi, f"{path}: aoi")
    else:
        check_lonlat_point(aoi["center"], f"{path}: aoi.center")
    if aoi is not None:
        _check_aoi_grid(region, path)
    dates = region["dates"]
    for d in dates:
        try:
            date.fromisoformat(d)
        except ValueError as exc:
            raise ConfigError(f"{path}: dates: '{d}' is not a valid calendar date; use YYYY-MM-DD") from exc
    if sorted(dates) != list(dates):
        raise ConfigError(f"{path}: dates: must be in ascending order; sort them")
    names = [x["name"] for x in region["experiments"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: experiments: duplicate experiment name; give each experiment a unique name")
    for i, exp in enumerate(region["experiments"]):
        where = f"{path}: experiments.{i}"
        if exp["target"] not in dates:
            raise ConfigError(
                f"{where}.target: {exp['target']} is not one of dates; add it to dates or pick one of {dates}"
            )
        if exp["guides"] == "auto":  # chosen by the stack rule among the dates (the schema asks for ≥ 3)
            continue
        for g in exp["guides"]:
            if g not in dates:
                raise ConfigError(f"{where}.guides: {g} is not one of dates; add it to dates or pick one of {dates}")
        if exp["target"] in exp["guides"]:
            raise ConfigError(
                f"{where}.guides: the target date {exp['target']} is also a guide; guides must differ from the target"
            )
    for key in _secret_keys(region):
        raise ConfigError(
            f"{path}: {key}: credentials never go in config; export CDSE_USERNAME/CDSE_PASSWORD or use ~/.netrc"
        )


def _check_aoi_grid(region: Mapping[str, Any], path: Path) -> None:
    """Build the region's grid once and map it back to lon/lat: refuses AOIs across the antimeridian
    (both AOI forms) and grids the CRS cannot map, with the region file named."""
    from pipeline_lib.grid import make_centered_grid, make_grid

    aoi = region["aoi"]
    try:
        if isinstance(aoi, dict):
            grid = make_centered_grid(
                tuple(aoi["center"]), tuple(aoi["size_px"]), region["resolution_m"], region.get("crs")
            )
        else:
            grid = make_grid(tuple(aoi), region["resolution_m"], region.get("crs"))
        grid.lonlat_bounds()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except CRSError:
        raise ConfigError(
            f"{path}: crs: {region.get('crs')!r} is not a CRS pyproj knows; give an EPSG code such as EPSG:32633 or null"
        ) from None


def _secret_keys(obj: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if SECRET_KEY.search(str(k)):
                yield f"{prefix}{k}"
            yield from _secret_keys(v, f"{prefix}{k}.")


def load_regions(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate the top-level config and load every region it lists (also used for targets built directly)."""
    validate_top(config)
    return {slug: load_region(slug, config["regions_dir"], config.get("defaults")) for slug in config["regions"]}


def schema_defaults(*keys: str) -> dict[str, Any]:
    """The schema's defaults of one region setting, e.g. ``schema_defaults("sar", "speckle")``.

    The same values :func:`load_region` fills in; for tests, benchmarks and tools that call the library
    without a region file, so no default is written a second time.
    """
    schema = load_schema()
    sub: Mapping[str, Any] = schema["$defs"]["region"]
    path = []
    for key in keys:
        path.append(key)
        props = sub.get("properties", {})
        if key not in props:
            raise ConfigError(f"{'.'.join(path)}: no such key in {SCHEMA_PATH.name}")
        sub = props[key]
        while "$ref" in sub:
            sub = schema["$defs"][sub["$ref"].rsplit("/", 1)[-1]]
    instance: dict[str, Any] = {}
    _validate(instance, {**sub, "$defs": schema["$defs"]}, SCHEMA_PATH.name)
    return instance
