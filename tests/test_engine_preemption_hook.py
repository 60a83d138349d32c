"""PreemptionCheckpointHook without a training run: which signals it takes,
and which preemption checkpoints it removes once a later checkpoint is
saved (the signal paths run for real in test_engine_resume.py)."""
import logging
import os
import signal
from types import SimpleNamespace

import pytest
from mmengine.hooks import CheckpointHook

from xdc_plugin.engine import PreemptionCheckpointHook


def test_ctrl_c_is_a_stop_signal_like_term_and_usr2():
    assert set(PreemptionCheckpointHook().stop.signals) == {
        signal.SIGINT, signal.SIGTERM, signal.SIGUSR2}


def _epoch_end(tmp_path, saved_at, keeper):
    """Files left after an epoch ending at iteration 12, the checkpoint
    hook having saved at ``saved_at``."""
    names = ['epoch_3.pth', 'iter_10.pth', 'iter_12.pth', 'iter_13.pth',
             'last_checkpoint']
    for name in names:
        (tmp_path / name).write_bytes(b'x')
    runner = SimpleNamespace(work_dir=str(tmp_path), iter=12,
                             hooks=[keeper], logger=logging.getLogger())
    hook = PreemptionCheckpointHook()
    hook.before_save_checkpoint(runner, dict(meta=dict(iter=saved_at)))
    hook.after_train_epoch(runner)
    return sorted(os.listdir(tmp_path))


def test_preemption_checkpoints_go_once_a_later_one_is_saved(tmp_path):
    assert _epoch_end(tmp_path, 12, CheckpointHook(
        interval=1, max_keep_ckpts=2)) == ['epoch_3.pth', 'iter_13.pth',
                                           'last_checkpoint']


@pytest.mark.parametrize('saved_at, keeper', [
    (8, CheckpointHook(interval=1, max_keep_ckpts=2)),  # not saved now
    (12, CheckpointHook(interval=1)),  # keeps every checkpoint
    (12, CheckpointHook(interval=4, by_epoch=False, max_keep_ckpts=2)),
], ids=['no-save-this-epoch', 'keep-all', 'iteration-checkpoints'])
def test_preemption_checkpoints_stay_otherwise(tmp_path, saved_at, keeper):
    assert _epoch_end(tmp_path, saved_at, keeper) == [
        'epoch_3.pth', 'iter_10.pth', 'iter_12.pth', 'iter_13.pth',
        'last_checkpoint']
