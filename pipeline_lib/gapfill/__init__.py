"""Gap-filled optical time series from Sentinel-1 and the nearest clear dates (DESIGN §6, §8).

- :mod:`.series`: the region's S1 + S2 series on one grid, per-pixel guide choice, temporal baselines;
- :mod:`.model`: one TIRSIT model per region and task trained on the whole series, per-pixel guided fill;
- :mod:`.product`: the per-date product (observed / predicted / none, uncertainty) and its STAC catalogue;
- :mod:`.evaluate`: real cloud masks of other dates laid over clear dates, scored against baselines.
"""
