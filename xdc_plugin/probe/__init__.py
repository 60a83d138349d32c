"""Frozen-feature probes on arrays (numpy and scikit-learn, no torch
models): the linear and kNN protocols, their result records, and the
per-round probe of pretraining, which the clustering round and the
evaluation tools both run.

Nothing is imported here eagerly: each module is imported where used.
"""
