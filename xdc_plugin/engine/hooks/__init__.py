"""The registered hooks of a training run, one job each: the cross-modal
clustering round, the dataset's epoch, mid-epoch resume, checkpoint on
preemption, the resumed schedule and the per-step seeds."""
