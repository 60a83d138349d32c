"""Cost of a clustering round as a fraction of a training epoch, with and
without the feature bank, and the cluster NMI each reaches.

    python bench/bench_round_cost.py                  # demo and avobjects
    python bench/bench_round_cost.py --epochs 2 --configs demo

Each (config, bank) pair trains the recipe for ``--epochs`` epochs with a
round every ``--interval`` epochs, same seed. A round's cost is its wall
time (features + k-means + report, as the hook logs it) over the mean
training-epoch time of the same run; "round" averages the numbered rounds
after round 0 (round 0 extracts in both runs). The NMI columns are those of
the final round (extracted features of the trained encoders, so comparable
between the two runs) against the dataset's labels.
"""
import argparse
import os.path as osp
import tempfile
import time

from mmengine.hooks import Hook

from xdc_plugin.engine.launch.launch import build_parser, prepare_config
from xdc_plugin.engine.runner.checkpoint import SafeResumeRunner

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {'demo': 'configs/xdc_demo.yaml',
           'avobjects': 'configs/xdc_avobjects.yaml'}


class EpochTimer(Hook):
    """Training time of each epoch, after the round that opens it (the
    clustering hook runs first: this hook has the lowest priority)."""

    priority = 'LOWEST'

    def __init__(self):
        self.seconds = []

    def before_train_epoch(self, runner):
        self._start = time.perf_counter()

    def after_train_epoch(self, runner):
        self.seconds.append(time.perf_counter() - self._start)


def run(config, bank, epochs, interval, work_dir):
    args = build_parser().parse_args([
        '--cfg', osp.join(REPO, CONFIGS[config]), '--work-dir', work_dir,
        f'train_cfg.max_epochs={epochs}', f'param_scheduler.0.T_max={epochs}',
        f'default_hooks.clustering.interval={interval}',
        f'+default_hooks.clustering.feature_bank={bank}',
        'default_hooks.checkpoint.interval=1000',
        'default_hooks.logger.interval=1000'])
    cfg = prepare_config(args)
    timer = EpochTimer()
    runner = SafeResumeRunner.from_cfg(cfg)
    runner.register_hook(timer)
    runner.train()
    hook = next(h for h in runner.hooks
                if type(h).__name__ == 'CrossModalClusteringHook')
    rounds = {r['round']: r for r in hook.history}
    later = [r['seconds'] for rid, r in rounds.items()
             if rid not in (0, 'final')]
    final = {r['source']: r.get('nmi', float('nan'))
             for r in hook.history if r['round'] == 'final'}
    epoch_s = sum(timer.seconds) / len(timer.seconds)
    round_s = sum(later) / len(later) if later else float('nan')
    return dict(config=config, bank=bank, epoch_s=epoch_s,
                round0_s=rounds[0]['seconds'], round_s=round_s,
                features=','.join(sorted({rounds[r]['features']
                                          for r in rounds
                                          if r not in (0, 'final')})),
                video_nmi=final.get('video'), audio_nmi=final.get('audio'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', nargs='+', default=list(CONFIGS),
                        choices=list(CONFIGS))
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--interval', type=int, default=2)
    args = parser.parse_args()
    rows = []
    for config in args.configs:
        for bank in (False, True):
            with tempfile.TemporaryDirectory() as work_dir:
                rows.append(run(config, bank, args.epochs, args.interval,
                                work_dir))
    print(f'\nround cost, {args.epochs} epochs, a round every '
          f'{args.interval} (final-round NMI vs labels)')
    print('| config | bank | epoch s | round 0 s | round s | round / epoch '
          '| round features | video NMI | audio NMI |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['config']} | {'on' if r['bank'] else 'off'} | "
              f"{r['epoch_s']:.2f} | {r['round0_s']:.2f} | "
              f"{r['round_s']:.2f} | {r['round_s'] / r['epoch_s']:.1%} | "
              f"{r['features']} | {r['video_nmi']:.3f} | "
              f"{r['audio_nmi']:.3f} |")


if __name__ == '__main__':
    main()
