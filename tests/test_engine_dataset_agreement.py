"""xdc_plugin/engine/round/dataset_agreement.py: two gloo ranks whose
datasets differ (a file missing on one node, the same files in another
order) both stop with one error naming the rank, N and the first
difference; ranks that agree go on. The clustering hook runs the check
before anything else."""
import json
import os.path as osp
from unittest import mock

import pytest
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from xdc_plugin.data import AVClipDataset
from xdc_plugin.data.prepared_manifest import write_prepared_manifest
from xdc_plugin.engine.hooks import clustering_hook
from xdc_plugin.engine.round.dataset_agreement import (DatasetMismatchError,
                                                       check_ranks_agree)

PIPELINE = [dict(type='SampleClip', num_frames=8, frame_rate=30),
            dict(type='DecodeAVClip'), dict(type='PackAVInputs')]
N = 6000  # more than one block of paths (BLOCK = 4096)


def _manifest(folder, name, order):
    """A prepared manifest of the files ``order`` (no media needed)."""
    path = osp.join(folder, name)
    write_prepared_manifest(path, (dict(
        path=f'v/{i:05d}.mp4', duration=10.0, fps=30.0) for i in order), {})
    return path


SCENARIOS = {  # name: (rank 0's files, rank 1's files)
    'same': (range(N), range(N)),
    'missing': (range(N), [i for i in range(N) if i != 2]),
    'swapped': (range(N), [*range(5000), 5001, 5000, *range(5002, N)]),
}


def _worker(rank, world_size, init_file, folder):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    out = {}
    for name, orders in SCENARIOS.items():
        manifest = _manifest(folder, f'{name}{rank}.csv', orders[rank])
        # The same paths on both ranks: one data root.
        ds = AVClipDataset(manifest, data_root='/data', pipeline=PIPELINE)
        try:
            check_ranks_agree(ds)
            out[name] = ''
        except DatasetMismatchError as e:
            out[name] = str(e)
    with open(osp.join(folder, f'rank{rank}.json'), 'w') as f:
        json.dump(out, f)
    torch_dist.destroy_process_group()


@pytest.fixture(scope='module')
def messages(tmp_path_factory):
    folder = tmp_path_factory.mktemp('agreement')
    mp.start_processes(_worker, args=(2, str(folder / 'init'), str(folder)),
                       nprocs=2, start_method='fork')
    return [json.loads((folder / f'rank{r}.json').read_text())
            for r in range(2)]


def test_ranks_that_agree_go_on(messages):
    assert messages[0]['same'] == messages[1]['same'] == ''


def test_a_missing_file_stops_both_ranks(messages):
    assert messages[0]['missing'] == messages[1]['missing']
    message = messages[0]['missing']
    assert 'ranks [1] differ from rank 0' in message
    assert (f"rank 1: N={N - 1} (rank 0: N={N}); first difference at index "
            "2: rank 0 has '/data/v/00002.mp4'; rank 1 has "
            "'/data/v/00003.mp4'") in message


def test_another_order_stops_both_ranks(messages):
    assert messages[0]['swapped'] == messages[1]['swapped']
    assert (f"rank 1: N={N} (rank 0: N={N}); first difference at index "
            "5000: rank 0 has '/data/v/05000.mp4'; rank 1 has "
            "'/data/v/05001.mp4'") in messages[0]['swapped']


def test_one_process_checks_nothing():
    dataset = mock.Mock(spec=[])  # no attribute, no length: not read
    check_ranks_agree(dataset)


def test_the_clustering_hook_checks_first(monkeypatch):
    class Checked(Exception):
        pass
    seen = []

    def check(dataset):
        seen.append(dataset)
        raise Checked
    monkeypatch.setattr(clustering_hook, 'check_ranks_agree', check)
    hook = clustering_hook.CrossModalClusteringHook(
        clusterers={}, extract_dataloader=dict(dataset=dict(pipeline=[])))
    runner = mock.Mock()
    with pytest.raises(Checked):
        hook.before_train(runner)
    assert seen == [runner.train_dataloader.dataset]
