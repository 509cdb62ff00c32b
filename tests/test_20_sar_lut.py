"""The numpy calibration LUT (the calibrate job's, without xarray) equals xarray-sentinel's interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from test_20_sar_synthetic import LEGACY_ZIP, SARSEN_SAFE

from pipeline_lib.errors import ProductError
from pipeline_lib.safe import open_product
from pipeline_lib.sar.calibration import interp_lut
from pipeline_lib.sar.lut import parse_sigma_lut
from pipeline_lib.sar.product import find_pol_files, open_sigma_lut
from pipeline_lib.xmlsafe import parse_xml


@pytest.mark.parametrize("product", [SARSEN_SAFE, LEGACY_ZIP], ids=["sarsen-2021", "legacy-2015-zip"])
def test_lut_matches_xarray_sentinel(product) -> None:
    with open_product(product) as reader:
        files = find_pol_files(reader, "VV", need_measurement=False)
        ref_lut = open_sigma_lut(files)
        ours = parse_sigma_lut(reader.parse_xml(files.calibration))
    n_lines, n_pix = int(ref_lut["line"].max()), int(ref_lut["pixel"].max())
    rng = np.random.default_rng(0)
    for l0, p0 in [
        (0, 0),
        (n_lines - 30, n_pix - 40),
        *zip(rng.integers(0, n_lines - 30, 4), rng.integers(0, n_pix - 40, 4), strict=True),
    ]:
        lines, pixels = np.arange(l0, l0 + 30), np.arange(p0, p0 + 40)
        ref = ref_lut.interp(line=lines, pixel=pixels).values
        np.testing.assert_allclose(interp_lut(ours, lines, pixels), ref, rtol=1e-12)


def test_lut_is_nan_outside_its_span_and_rejects_ragged_vectors() -> None:
    with open_product(SARSEN_SAFE) as reader:
        text = reader.parse_xml(find_pol_files(reader, "VV").calibration)
    lut = parse_sigma_lut(text)
    v = lut.interp(np.array([-1.0, 0.0, lut.lines[-1] + 1]), np.array([-1.0, 0.0, lut.pixels[-1] + 1]))
    assert np.isnan(v[0]).all() and np.isnan(v[2]).all() and np.isnan(v[:, 0]).all() and np.isnan(v[:, 2]).all()
    assert np.isfinite(v[1, 1])
    vec = text.find("calibrationVectorList/calibrationVector/sigmaNought")
    assert vec is not None
    vec.text = " ".join((vec.text or "").split()[:-1])
    from xml.etree.ElementTree import tostring

    with pytest.raises(ProductError, match="one ascending"):
        parse_sigma_lut(parse_xml(tostring(text)), "cal.xml")
