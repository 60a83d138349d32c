"""``PseudoLabelDataset``: skips files that fail to decode, keeping
``index`` consistent with the content returned."""
import logging
import os

from mmengine.logging import print_log
from torch.utils.data import Dataset

from xdc_plugin.data.decode import DecodeError
from xdc_plugin.registry import DATASETS

__all__ = ['PseudoLabelDataset', 'decode_failures']

# Failures seen in this process (each DataLoader worker counts its own).
_FAILURES = {'pid': None, 'count': 0}


def decode_failures():
    """Number of decode failures skipped in this process."""
    return _FAILURES['count'] if _FAILURES['pid'] == os.getpid() else 0


def _count_failure():
    if _FAILURES['pid'] != os.getpid():  # a fresh count in a new worker
        _FAILURES.update(pid=os.getpid(), count=0)
    _FAILURES['count'] += 1
    return _FAILURES['count']


@DATASETS.register_module()
class PseudoLabelDataset(Dataset):
    """Wrap a dataset so that training never stops on a bad file.

    Pseudo-labels are NOT stored here: the model keeps them, keyed by the
    sample's ``index``. ``__getitem__(i)`` returns the inner sample with
    ``index`` set to the dataset index of the content returned: when the
    inner dataset raises ``DecodeError`` (files that pass the header probe
    can still be truncated), a warning names the file and this process's
    running failure count, and the next index ``(i + 1) % N`` is tried, up
    to ``max_tries`` indices, then ``RuntimeError``.

    Args:
        dataset: a dataset or its config (built with ``DATASETS``).
        max_tries: indices tried before giving up.
    """

    def __init__(self, dataset, max_tries=10):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        self.dataset = dataset
        self.max_tries = max_tries

    @property
    def metainfo(self):
        return getattr(self.dataset, 'metainfo', {})

    def get_labels(self):
        return self.dataset.get_labels()

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        n = len(self.dataset)
        errors = []
        for k in range(min(self.max_tries, n)):
            j = (index + k) % n
            try:
                sample = self.dataset[j]
            except DecodeError as e:
                errors.append(e)
                print_log(f'PseudoLabelDataset: skipping index {j} '
                          f'({e.path}): {e.kind}: {e.reason} '
                          f'[{_count_failure()} decode failures in this '
                          f'process]', logger='current',
                          level=logging.WARNING)
                continue
            sample = dict(sample)
            sample['index'] = j
            return sample
        raise RuntimeError(
            f'PseudoLabelDataset: {len(errors)} consecutive indices from '
            f'{index} failed to decode; last: {errors[-1]}')
