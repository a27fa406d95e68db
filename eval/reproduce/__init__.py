"""Batch reruns of the notebooks with papermill, and the reproduction report (see README.md).

Modules: stages (the registry and the profiles), notebook (reading a notebook's parameters cell),
runner (one notebook, atomically), schedule (the DAG, resume, failure isolation), sweep, report,
compare, cli. Nothing is imported here so that `afsuite` starts fast.
"""
