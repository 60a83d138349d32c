"""ResumedScheduleHook: a run resumed with a longer max_epochs (or another
schedule) gets exactly the learning rates of the uninterrupted run of its
config; a checkpoint past the new end stops the run."""
import itertools

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, MODELS
from torch.utils.data import Dataset

import xdc_plugin  # noqa: F401
from xdc_plugin.engine.hooks.resumed_schedule_hook import ScheduleMismatchError
from xdc_plugin.engine.runner.checkpoint import SafeResumeRunner

ITERS_PER_EPOCH = 4
_RUNS = itertools.count()  # one mmengine logger/visualizer per run


@DATASETS.register_module(force=True)
class ScheduleToyDataset(Dataset):

    def __len__(self):
        return 2 * ITERS_PER_EPOCH

    def __getitem__(self, index):
        return dict(inputs=torch.full((2, ), float(index)))


@MODELS.register_module(force=True)
class ScheduleToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='loss'):
        return dict(loss=self.linear(inputs).pow(2).mean())


@HOOKS.register_module(force=True)
class LrRecorder(Hook):
    """The lr each iteration trains with: ``{iteration: lr}``."""

    def __init__(self):
        self.lrs = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs[runner.iter] = runner.optim_wrapper.get_lr()['lr'][0]


def run(work_dir, max_epochs, t_max, resume=None, end=None):
    """Train the toy model; returns ``(runner, {iteration: lr})``."""
    cfg = Config(dict(
        default_scope='xdc', work_dir=str(work_dir), model=dict(
            type='ScheduleToyModel'),
        train_dataloader=dict(
            dataset=dict(type='ScheduleToyDataset'), batch_size=2,
            num_workers=0, sampler=dict(type='DefaultSampler',
                                        shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1,
                                          momentum=0.9)),
        # A warm-up stepped per iteration, then a cosine per epoch whose
        # end defaults to max_epochs (as in configs/_base_/schedules).
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0,
                 end=1, convert_to_iter_based=True),
            dict(type='CosineAnnealingLR', by_epoch=True, begin=1,
                 T_max=t_max, eta_min=0.001,
                 **({} if end is None else dict(end=end)))],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            resumed_schedule=dict(type='ResumedScheduleHook')),
        custom_hooks=[dict(type='LrRecorder')],
        resume=resume is not None, load_from=resume,
        log_level='WARNING', randomness=dict(seed=0),
        experiment_name=f'schedule_run_{next(_RUNS)}'))
    runner = SafeResumeRunner.from_cfg(cfg)
    runner.train()
    recorder = next(h for h in runner.hooks if isinstance(h, LrRecorder))
    return runner, recorder.lrs


@pytest.mark.parametrize('first_t_max', [6, 4],
                         ids=['end-only', 'end-and-T_max'])
def test_a_longer_run_resumes_with_the_lr_of_the_uninterrupted_run(
        tmp_path, first_t_max, capsys):
    _, uninterrupted = run(tmp_path / 'long', max_epochs=6, t_max=6)
    run(tmp_path / 'resumed', max_epochs=4, t_max=first_t_max)
    capsys.readouterr()
    runner, resumed = run(tmp_path / 'resumed', max_epochs=6, t_max=6,
                          resume=str(tmp_path / 'resumed' / 'epoch_4.pth'))
    assert runner.epoch == 6
    assert sorted(resumed) == list(range(4 * ITERS_PER_EPOCH,
                                         6 * ITERS_PER_EPOCH))
    # Exactly the uninterrupted run's rates (the cosine is recursive: any
    # other start would drift); they still decay after the old end.
    assert resumed == {i: uninterrupted[i] for i in resumed}
    assert resumed[5 * ITERS_PER_EPOCH] < resumed[4 * ITERS_PER_EPOCH]
    message, = [line for line in capsys.readouterr().out.splitlines()
                if 'rebuilt' in line]
    assert 'max_epochs 4 -> 6' in message
    assert 'CosineAnnealingLR end 4 -> 6' in message
    assert ('CosineAnnealingLR T_max 4 -> 6' in message) == (first_t_max
                                                            == 4)


def test_an_unchanged_schedule_is_left_as_loaded(tmp_path, capsys):
    # end and T_max set in the config: a longer run keeps the schedule.
    _, uninterrupted = run(tmp_path / 'long', max_epochs=3, t_max=6, end=6)
    run(tmp_path / 'resumed', max_epochs=2, t_max=6, end=6)
    capsys.readouterr()
    _, resumed = run(tmp_path / 'resumed', max_epochs=3, t_max=6, end=6,
                     resume=str(tmp_path / 'resumed' / 'epoch_2.pth'))
    assert resumed == {i: uninterrupted[i] for i in resumed}
    out = capsys.readouterr().out
    assert 'rebuilt' not in out
    assert 'max_epochs 2 -> 3; the schedule is unchanged' in out


def test_a_checkpoint_past_the_new_end_stops_with_a_message(tmp_path):
    run(tmp_path, max_epochs=4, t_max=4)
    with pytest.raises(ScheduleMismatchError,
                       match='epoch 4, past max_epochs=3 .* nothing to train'):
        run(tmp_path, max_epochs=3, t_max=3,
            resume=str(tmp_path / 'epoch_4.pth'))
