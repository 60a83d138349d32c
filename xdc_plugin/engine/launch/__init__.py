"""Starting a run: the launcher (``tools/run_net.py``), SLURM jobs, the dry
run with its cost model, and the report of ``tools/gpu_check.py``."""
