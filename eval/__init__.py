"""Evaluation: motion metrics, REACT peer metrics and the paper's result tables (see eval/README.md)."""
