"""Checkpoints read without running code from the file, written so that they
read back that way, and the one --resume continues from chosen by
last_checkpoint and the checkpoints' own epoch/iteration, never by mtime."""
import argparse
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub

from test_engine_launch import REPO, tiny_demo_args
from xdc_plugin.engine.launch.launch import ResumeError, choose_checkpoint
from xdc_plugin.engine.runner.checkpoint import (UntrustedCheckpointError,
                                                 WeightsOnlyCheckpointHook,
                                                 checkpoint_problem,
                                                 find_resume_checkpoint,
                                                 reading_checkpoint)


class Hostile:
    """Unpickling it creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'epoch_1.pth'
    torch.save({'meta': {'epoch': 1, 'iter': 3}, 'state_dict': {},
                'payload': Hostile(str(marker))}, path)
    return path, marker


def test_a_hostile_checkpoint_is_refused_and_runs_nothing(hostile):
    path, marker = hostile
    with pytest.raises(UntrustedCheckpointError) as err:
        with reading_checkpoint(str(path)):
            torch.load(path)  # as mmengine calls it
    assert 'io.open' in str(err.value)
    assert '--trust-checkpoint' in str(err.value)
    assert not marker.exists()
    with reading_checkpoint(str(path), trusted=True):  # the user vouches
        torch.load(path)
    assert marker.exists()  # so the file above was really hostile


def test_run_net_refuses_a_hostile_resume_before_writing(tmp_path, hostile):
    path, marker = hostile
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'run_net.py')] +
        tiny_demo_args(tmp_path) + ['--resume', str(path)],
        capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert 'error: ' in out.stderr and 'io.open' in out.stderr
    assert '--trust-checkpoint' in out.stderr
    assert not marker.exists()
    assert not osp.exists(tmp_path / 'work')


def _message_hub_checkpoint(name):
    hub = MessageHub.get_instance(name)
    for loss in (3.0, 2.0, 1.0):
        hub.update_scalar('train/loss', loss)
    hub.update_info('eta', np.float64(12.5))  # as mmengine's timer stores it
    return dict(meta=dict(epoch=1, iter=3), state_dict={},
                message_hub=hub.state_dict())


def test_checkpoints_keep_their_message_hub_and_read_back_weights_only(
        tmp_path):
    hook = WeightsOnlyCheckpointHook()
    plain = tmp_path / 'plain.pth'
    torch.save(_message_hub_checkpoint('hub_saved_plain'), plain)
    with pytest.raises(UntrustedCheckpointError, match='HistoryBuffer'):
        with reading_checkpoint(str(plain)):
            torch.load(plain)

    checkpoint = _message_hub_checkpoint('hub_saved_by_the_hook')
    hook.before_save_checkpoint(None, checkpoint)
    path = tmp_path / 'ours.pth'
    torch.save(checkpoint, path)
    with reading_checkpoint(str(path)):
        loaded = torch.load(path)
    hook.after_load_checkpoint(None, loaded)
    hub = MessageHub.get_instance('hub_reloaded')
    hub.load_state_dict(loaded['message_hub'])
    buffer = hub.get_scalar('train/loss')
    assert buffer.data[0].tolist() == [3.0, 2.0, 1.0]
    assert buffer.mean() == 2.0 and buffer.current() == 1.0


def _write(path, mtime, epoch=0, iteration=0):
    torch.save({'meta': {'epoch': epoch, 'iter': iteration},
                'state_dict': {'w': torch.ones(10000)}}, path)
    os.utime(path, (mtime, mtime))


def _damage(path, truncate=False):
    """Truncate ``path`` or flip a bit in its tensor data; keeps its
    mtime."""
    stat = os.stat(path)
    data = bytearray(path.read_bytes())
    if truncate:
        data = data[:len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, (stat.st_atime, stat.st_mtime))


def test_resume_follows_last_checkpoint_not_file_times(tmp_path):
    _write(tmp_path / 'epoch_5.pth', 100, epoch=5, iteration=50)
    _write(tmp_path / 'epoch_4.pth', 200, epoch=4, iteration=40)  # touched
    # As in a copy (cp -r) of another work dir: its path, our file name.
    (tmp_path / 'last_checkpoint').write_text('/elsewhere/run/epoch_5.pth')
    path, reason, notes = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'epoch_5.pth')
    assert reason == 'named by last_checkpoint (epoch 5, iteration 50)'
    assert notes == ['last_checkpoint names /elsewhere/run/epoch_5.pth, '
                     'outside this work dir (a copied work dir?): looking '
                     f'for {tmp_path / "epoch_5.pth"}.']


def test_a_damaged_last_checkpoint_falls_back_to_the_furthest_by_meta(
        tmp_path):
    _write(tmp_path / 'epoch_5.pth', 500, epoch=5, iteration=50)
    _damage(tmp_path / 'epoch_5.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_5.pth'))
    _write(tmp_path / 'iter_47.pth', 100, epoch=4, iteration=47)  # oldest
    _write(tmp_path / 'epoch_4.pth', 400, epoch=4, iteration=40)
    _write(tmp_path / 'epoch_3.pth', 300, epoch=3, iteration=30)
    _write(tmp_path / 'best_acc_epoch_9.pth', 900, 9, 90)  # not a resume point
    path, reason, notes = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'iter_47.pth')
    assert reason == (
        'last_checkpoint names epoch_5.pth, which is damaged; the intact '
        'checkpoint furthest in training by its own metadata (epoch 4, '
        'iteration 47)')
    assert len(notes) == 1 and notes[0].startswith(
        f'skipped {tmp_path / "epoch_5.pth"} (corrupt: member ')


def test_without_last_checkpoint_the_furthest_intact_one_is_chosen(tmp_path):
    _write(tmp_path / 'epoch_1.pth', 300, epoch=1, iteration=4)
    _write(tmp_path / 'epoch_2.pth', 200, epoch=2, iteration=8)
    _write(tmp_path / 'iter_10.pth', 100, epoch=2, iteration=10)
    _damage(tmp_path / 'iter_10.pth', truncate=True)
    _damage(tmp_path / 'epoch_2.pth')
    path, reason, notes = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'epoch_1.pth')
    assert reason.startswith('no last_checkpoint in the work dir; ')
    assert [n.split(' (')[0] for n in notes] == [
        f'skipped {tmp_path / "epoch_2.pth"}',
        f'skipped {tmp_path / "iter_10.pth"}']
    assert 'CRC' in notes[0] and '(unreadable' in notes[1]
    assert checkpoint_problem(str(tmp_path / 'epoch_1.pth')) is None


def _args(**kwargs):
    return argparse.Namespace(**{**dict(
        resume='auto', resume_required=False, trust_checkpoint=False),
        **kwargs})


def test_resume_in_a_work_dir_without_checkpoints_is_loud(tmp_path):
    path, _, notes = choose_checkpoint(_args(), str(tmp_path / 'mistyped'))
    assert path is None
    assert notes == [f'--resume: no intact checkpoint in '
                     f'{tmp_path / "mistyped"} (no last_checkpoint in the '
                     'work dir); is the work dir right? STARTING FROM '
                     'SCRATCH.']
    with pytest.raises(ResumeError, match='--resume-required'):
        choose_checkpoint(_args(resume=None, resume_required=True),
                          str(tmp_path / 'mistyped'))


def test_an_explicit_damaged_checkpoint_is_an_error(tmp_path):
    (tmp_path / 'epoch_1.pth').write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(ResumeError, match='unreadable'):
        choose_checkpoint(_args(resume=str(tmp_path / 'epoch_1.pth')),
                          str(tmp_path))


def test_resume_required_on_a_mistyped_work_dir_stops_before_writing(
        tmp_path):
    args = tiny_demo_args(tmp_path) + ['--resume-required']
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'run_net.py')] + args,
        capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert f'error: --resume: no intact checkpoint in {tmp_path / "work"}' \
        in out.stderr
    assert not osp.exists(tmp_path / 'work')
