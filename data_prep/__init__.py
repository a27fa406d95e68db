"""Corpus preparation: the embedded synthetic dyadic-conversation corpus (`data_prep.synth`), its loader
(`data_prep.corpus.Corpus`) and the `afsuite data` commands. See data_prep/README.md."""
