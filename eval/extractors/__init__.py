"""Feature extractors behind the paper's metrics (face parameters, lip sync, FID/FVD, CSIM, LPIPS).

Each extractor has a `.card` dict naming it; every result dict carries `extractor` (the name) and
`extractor_card`. `registry.resolve(metric)` picks real weights when a local file is configured and the
embedded (trained-here) extractor otherwise. See README.md in this folder.
"""
