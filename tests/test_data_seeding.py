"""Seeds from positions: the same key gives the same draws in python, numpy
and torch, another key others; a seeded block restores the streams in the
main process only; only ``cuda=True`` seeds the GPUs."""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from xdc_plugin.data.seeding import seed_generators, seeded_rng


def draws():
    return torch.rand(1).item(), np.random.rand(), random.random()


def test_seed_generators_depends_only_on_the_key():
    seed_generators(0, 1, 2, 3)
    first = draws()
    draws()  # whatever ran in between
    seed_generators(0, 1, 2, 3)
    assert draws() == first
    seed_generators(0, 1, 2, 4)
    other = draws()
    assert all(a != b for a, b in zip(first, other))
    seed_generators(0, 1, 2, 3, bits=32)
    narrow = draws()
    assert all(a != b for a, b in zip(first, narrow))


def test_seed_generators_seeds_the_gpus_only_when_asked(monkeypatch):
    seeded = []
    monkeypatch.setattr(torch.cuda, 'manual_seed_all', seeded.append)
    seed_generators(5, cuda=False)
    assert seeded == []
    seed_generators(5)
    assert len(seeded) == 1 and seeded[0] >= 2**32  # the 64-bit seed
    with pytest.raises(ValueError, match='32 or 64'):
        seed_generators(5, bits=16)


def test_seeded_rng_seeds_numpy_and_python_too():
    with seeded_rng(0, 1, 2):
        a = draws()
    with seeded_rng(0, 1, 2):
        b = draws()
    with seeded_rng(0, 1, 3):
        c = draws()
    assert a == b and all(x != y for x, y in zip(a, c))
    # The block's streams are the 32-bit seed's of the same key.
    seed_generators(0, 1, 2, bits=32, cuda=False)
    assert draws() == a


class _DrawAfterSeeding(torch.utils.data.Dataset):
    """numpy's and python's next draws after a seeded block."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        with seeded_rng(0, 0, 7):
            pass
        return np.random.rand(), random.random()


def test_seeded_rng_restores_states_in_the_main_process_only():
    main = list(DataLoader(_DrawAfterSeeding(), batch_size=None))
    assert main[0] != main[1]  # the global streams went on
    worker = list(DataLoader(_DrawAfterSeeding(), batch_size=None,
                             num_workers=1))
    assert worker[0] == worker[1]  # left seeded: no one else draws there
