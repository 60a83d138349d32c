"""Live curves: with the TensorBoard switch on, the clustering rounds'
quality and the losses are scalars of the run's event file."""
import glob

import pytest
from tensorboard.backend.event_processing.event_accumulator import \
    EventAccumulator


def test_round_quality_and_losses_reach_tensorboard(tiny_xdc_run):
    work, runner = tiny_xdc_run
    events = glob.glob(str(work / '*' / 'vis_data' / 'events.out.tfevents.*'))
    assert len(events) == 1, events
    scalars = EventAccumulator(events[0])
    scalars.Reload()
    hook = next(h for h in runner.hooks
                if type(h).__name__ == 'CrossModalClusteringHook')
    iters = runner.iter  # 9 clips in batches of 3, one epoch: 3
    assert iters == 3
    steps = {0: 0, 'final': iters}  # rounds are logged at their iteration
    for source in ('video', 'audio'):
        for metric in ('nmi', 'ari', 'purity'):
            expected = [(steps[r['round']], r[metric]) for r in hook.history
                        if r['source'] == source]
            got = [(e.step, e.value)
                   for e in scalars.Scalars(f'xdc/{source}_{metric}')]
            assert [s for s, _ in got] == [s for s, _ in expected]
            assert [v for _, v in got] == pytest.approx(
                [v for _, v in expected], rel=1e-6)
    agreement = [(e.step, e.value)
                 for e in scalars.Scalars('xdc/xmodal_nmi')]
    assert [s for s, _ in agreement] == [0, iters]
    loss = scalars.Scalars('loss')
    assert [e.step for e in loss] == [1, 2, 3]
    assert all(0 < e.value < 10 for e in loss)
    assert {'loss_video_from_audio', 'loss_audio_from_video'} <= set(
        scalars.Tags()['scalars'])
