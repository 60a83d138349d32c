"""Cluster gallery of a run: ``python tools/visualize_clusters.py WORK_DIR
[--round final|N|all] [--top-clusters 12] [--clips-per-cluster 10]
[--out DIR] [--data-root DIR]``; open ``DIR/index.html`` (default
``WORK_DIR/gallery``). Clips are read only under the dataset root the run
recorded (or ``--data-root``), never from a URL."""
import sys

from xdc_plugin.visualization.cli import main

if __name__ == '__main__':
    sys.exit(main())
