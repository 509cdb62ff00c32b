"""Quality-assurance commands run by hand or by benchmarks, outside the production package ``pipeline_lib``.

Run them from the repository root: ``python -m tools.sar_compare A.tif B.tif``.
"""
