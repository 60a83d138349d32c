"""What a run is made of below its hooks: configs with checked overrides,
checkpoints that load without running code, the work_dir's lock, the
device, mixed precision and the stop request. Evaluation and the tools
import these without the launcher."""
