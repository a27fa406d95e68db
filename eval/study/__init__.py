"""Preference study: build pair videos, rate them in a widget, analyse the votes (see README.md).

Modules: design (criteria, schedule), votes (CSV format, import), build (pair videos), form (rating
widget), stats + analyze (statistics), plots, paper (reconstructed paper votes), simulate, cli.
Nothing is imported here so that `afsuite` starts fast.
"""
