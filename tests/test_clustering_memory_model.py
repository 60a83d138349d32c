"""Memory model of a clustering round: the gather on rank 0 vs sharded."""
import math
import os.path as osp
import runpy

import pytest

from xdc_plugin.clustering.distributed import LABEL_GATHER_BYTES
from xdc_plugin.clustering.memory_model import (MemoryEstimate,
                                                clustering_memory,
                                                sharded_fit_phases)

TOOL = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools',
                'clustering_memory.py')
N, K = 65_000_000, 8192


def test_gather_on_rank_0_holds_every_feature_twice_whatever_the_world():
    estimates = [clustering_memory(N, 512, K, w, sharded=False)
                 for w in (8, 512)]
    assert estimates[0].phases == estimates[1].phases
    # Gathered rows and the matrices placed by index, 2 modalities of
    # 512 float32, plus the int64 label buffer of 2 sources.
    assert sum(estimates[0].phases['gather'].values()) == \
        2 * 2 * N * 512 * 4 + 2 * N * 8
    assert estimates[0].peak > 2 * 2 * N * 512 * 4
    # PCA needs a centred copy of the rows on top: more, not less.
    assert clustering_memory(N, 128, K, 8, sharded=False).peak > \
        estimates[0].peak


def test_sharded_features_shrink_with_the_world():
    for world in (8, 64, 512):
        cluster = clustering_memory(N, 512, K, world).phases['cluster']
        rows = math.ceil(N / world)
        assert cluster['features'] == 2 * rows * 512 * 4
        assert cluster['preprocessed shard'] == rows * 512 * 4
    fp16 = clustering_memory(N, 512, K, 64, feature_dtype='float16')
    assert fp16.phases['cluster']['preprocessed shard'] == \
        math.ceil(N / 64) * 512 * 2
    # What no world size removes: the int32 label buffer and its update,
    # the gathered int32 labels, the bounded receive buffer.
    labels = clustering_memory(N, 512, K, 512).phases['labels']
    assert labels['label buffer (old, new rows, stack)'] == 3 * 2 * N * 4
    assert labels['gathered labels (int32)'] == 2 * N * 4
    assert labels['received pairs'] == 2 * LABEL_GATHER_BYTES


def test_sharding_cuts_the_peak_at_paper_scale():
    gathered = clustering_memory(N, 512, K, 64, sharded=False).peak
    sharded = clustering_memory(N, 512, K, 64).peak
    assert gathered / 2**30 > 450 and sharded / 2**30 < 10


def test_fit_phases_and_description():
    phases = sharded_fit_phases(1000, 4000, 64, 16)
    assert phases['index check'] == {
        'held-index bytes (and reduce copy)': 8000}
    assert phases['cluster']['preprocessed shard'] == 1000 * 64 * 4
    estimate = MemoryEstimate(phases)
    assert estimate.peak_phase == 'cluster'
    text = estimate.describe()
    assert 'index check:' in text and 'peak (cluster)' in text
    with pytest.raises(ValueError, match='feature_dtype'):
        clustering_memory(N, 512, K, 8, feature_dtype='int8')


def test_table_script_prints_the_model(capsys):
    main = runpy.run_path(TOOL)['main']
    main(['--sizes', '1000000', '--dims', '128', '--worlds', '8', '64'])
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith('| 1,000,000')]
    assert len(rows) == 3
    gathered = clustering_memory(1_000_000, 128, K, 8, sharded=False)
    assert rows[0].split(' | ')[3] == f'{gathered.peak / 2**30:.1f}'
    sharded = clustering_memory(1_000_000, 128, K, 64)
    assert rows[1].rstrip(' |').split(' | ')[-1] == \
        f'{sharded.peak / 2**30:.1f}'


def test_table_defaults_before_and_after(capsys):
    runpy.run_path(TOOL)['main'](['--sizes', '1000000'])
    out = capsys.readouterr().out
    assert 'K=8192' in out
    assert '| N | dim | path | world 8 | world 32 | world 128 | world 512 |' \
        in out
    paths = [line.split(' | ')[2] for line in out.splitlines()
             if line.startswith('| 1,000,000 | 128')]
    assert paths == ['before: gather on rank 0', 'after: sharded, fp32',
                     'after: sharded, fp16']
