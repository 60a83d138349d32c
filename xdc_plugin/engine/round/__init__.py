"""The parts of a clustering round that ``CrossModalClusteringHook``
orchestrates: the extraction loader, features (extracted or banked) as
per-rank shards, sharded k-means, the per-round probe, the round's report
and the ranks' agreement on the dataset."""
