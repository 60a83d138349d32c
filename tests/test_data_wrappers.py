import os.path as osp

import pytest
import torch
from torch.utils.data import Dataset

import xdc_plugin.data.wrappers as wrappers
from xdc_plugin.data.dataset import AVClipDataset
from xdc_plugin.data.decode import DecodeError
from xdc_plugin.data.wrappers import PseudoLabelDataset, decode_failures


@pytest.fixture
def logs(monkeypatch):
    records = []
    monkeypatch.setattr(wrappers, 'print_log',
                        lambda msg, **kw: records.append((msg, kw)))
    return records


def test_bad_file_is_replaced_by_the_next_with_its_index(media_dir, logs):
    cfg = dict(type='AVClipDataset', data_root=str(media_dir / 'mixed'),
               short_side=32, crop_size=24, mode='extract')
    wrapped = PseudoLabelDataset(cfg)
    inner = wrapped.dataset
    assert isinstance(inner, AVClipDataset) and len(wrapped) == 3
    assert osp.basename(inner.get_path(2)) == 'trunc_fast.mp4'
    before = decode_failures()
    s = wrapped[2]  # truncated -> next index (2 + 1) % 3 == 0
    assert s['index'] == 0
    assert torch.equal(s['video'], inner[0]['video'])
    assert decode_failures() == before + 1
    assert len(logs) == 1
    msg, kw = logs[0]
    assert 'trunc_fast.mp4' in msg and 'index 2' in msg
    assert f'{before + 1} decode failures' in msg and kw['level'] == 30
    assert wrapped[1]['index'] == 1 and len(logs) == 1
    assert wrapped.get_labels().tolist() == [-1, -1, -1]
    assert wrapped.metainfo == {}


class _Broken(Dataset):
    metainfo = dict(classes=('a',))

    def __init__(self, bad):
        self.bad = bad

    def __len__(self):
        return 5

    def __getitem__(self, i):
        if i in self.bad:
            raise DecodeError(f'f{i}.mp4', 'cut', 'truncated')
        return dict(video=torch.zeros(1), index=i)


def test_wraps_around_and_gives_up(logs):
    w = PseudoLabelDataset(_Broken({4, 0}))
    assert w[4]['index'] == 1 and len(logs) == 2
    assert w.metainfo == {'classes': ('a',)}
    w = PseudoLabelDataset(_Broken(set(range(5))), max_tries=3)
    with pytest.raises(RuntimeError, match='3 consecutive indices from 2'):
        w[2]


def test_index_is_set_even_if_inner_omits_it(logs):
    class NoIndex(_Broken):
        def __getitem__(self, i):
            return dict(value=i)
    assert PseudoLabelDataset(NoIndex(set()))[3] == dict(value=3, index=3)


def test_dataloader_workers_keep_indices(media_dir):
    """In 2 worker processes the truncated file (index 2) comes back as
    index 0's content, labelled index 0; the rest are unchanged."""
    from torch.utils.data import DataLoader
    wrapped = PseudoLabelDataset(dict(
        type='AVClipDataset', data_root=str(media_dir / 'mixed'),
        short_side=32, crop_size=24, mode='extract'))
    loader = DataLoader(wrapped, batch_size=1, num_workers=2)
    batches = list(loader)
    assert [int(b['index']) for b in batches] == [0, 1, 0]
    assert torch.equal(batches[2]['video'][0], batches[0]['video'][0])
    assert batches[0]['video'].shape == (1, 3, 8, 24, 24)
