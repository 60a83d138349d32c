"""Frozen-feature evaluation: encoders from any source, features per file,
linear / kNN protocols, audio benchmarks and the per-round probe.

Nothing is imported here eagerly: the clustering hook imports
``xdc_plugin.evaluation.round_probe`` (numpy and scikit-learn only) and must
not pull the encoder loaders, which import the engine, in a cycle.
"""
