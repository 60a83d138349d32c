"""Pretrain with XDC: ``python tools/run_net.py --cfg configs/xdc_demo.yaml``.

Without ``--cfg`` the demo config runs (it makes its data on first use).
Distributed: ``torchrun --nproc-per-node 8 tools/run_net.py --cfg ...
--launcher pytorch``; on SLURM see ``tools/submit_slurm.py``.
``--dry-run --world-size N`` builds the run, checks its manifest and prints
the memory per rank of clustering and the expected time of a round
(``xdc_plugin/engine/launch/dry_run.py``); it trains nothing.
"""
from xdc_plugin.engine.launch.launch import cli

if __name__ == '__main__':
    cli()
