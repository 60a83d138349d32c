"""tools/avobjects_study.py: the sizing, the aggregation over seeds, and
its ``--cpu --tiny`` mode end to end on avobjects clips (two seeds)."""
import json
import os.path as osp
import runpy

import numpy as np
import pytest

from xdc_plugin.engine.runner.config import load_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
STUDY = runpy.run_path(osp.join(REPO, 'tools', 'avobjects_study.py'))


def test_the_plan_counts_the_flops_of_the_paper_input():
    cfg = load_config(STUDY['CONFIG'])
    lines = STUDY['plan'](cfg, 240, [0, 1, 2], STUDY['VARIANTS'], 10, 3)
    assert lines[0].startswith('input video (3, 8, 112, 112), audio '
                               '(1, 40, 201): 50.3 GFLOP per clip forward')
    assert '240 clips, 48 epochs, 5 rounds, 4 trained variants x 3 seeds' \
        in lines[0]
    # 3 x 50.3 GFLOP x 240 clips x 48 epochs x 4 variants x 3 seeds
    assert lines[1].startswith('  training: 20.87 PFLOP = ')
    assert lines[3].startswith('  evaluation: 1.81 PFLOP = ')


def test_summary_is_the_mean_and_spread_of_the_seeds_fold_means():
    def record(variant, accuracy, metric='top1', protocol='linear'):
        return dict(variant=variant, protocol=protocol, modality='video',
                    metric=metric, accuracy=accuracy, std=0.3)

    seeds = [[record('xdc', 0.30), record('random', 0.25)],
             [record('xdc', 0.40), record('random', 0.25)],
             [record('xdc', 0.35)]]
    summary = STUDY['summarise'](seeds, ['random', 'xdc'])
    column = ('linear', 'video', 'top1')
    assert summary['xdc'][column] == pytest.approx(
        (0.35, np.std([0.30, 0.40, 0.35]), 3))
    assert summary['random'][column] == (0.25, 0.0, 2)
    table = STUDY['format_summary'](summary)
    assert '| xdc | 35.0 ± 4.1 | - |' in table


@pytest.mark.timeout(1800)
def test_cpu_tiny_study_on_avobjects(avobjects_dir, tmp_path, capsys):
    summary = STUDY['main'](
        ['--cpu', '--tiny', '--seeds', '0', '1', '--variants', 'random',
         'xdc', '--jobs', '2', '--work-root', str(tmp_path),
         '--data', osp.join(avobjects_dir, 'manifest.csv')])
    per_seed = [json.loads((tmp_path / f'seed_{s}' / 'table.json')
                           .read_text()) for s in (0, 1)]
    for records in per_seed:
        assert {r['variant'] for r in records} == {'random', 'xdc'}
        assert all(r['num_samples'] == 8 and len(r['folds']) == 2
                   for r in records)
    for variant in ('random', 'xdc'):
        for column, (mean, std, seeds) in summary[variant].items():
            values = [r['accuracy'] for records in per_seed for r in records
                      if r['variant'] == variant and
                      (r['protocol'], r['modality'], r['metric']) == column]
            assert seeds == 2
            assert (mean, std) == pytest.approx((np.mean(values),
                                                 np.std(values)))
    for seed in (0, 1):  # each seed's training ran with its seed
        dumped = tmp_path / f'seed_{seed}' / 'xdc' / osp.basename(
            STUDY['CONFIG'])
        assert load_config(str(dumped)).randomness.seed == seed
    text = (tmp_path / 'study.md').read_text()
    assert "seeds [0, 1]; mean ± std over seeds of the 2-fold means" in text
    assert text.count('\n| ') == 3  # the header and two variants
    saved = json.loads((tmp_path / 'study.json').read_text())
    assert saved['seeds'] == [0, 1] and set(saved['summary']) == {'random',
                                                                  'xdc'}
    assert text.split('\n\n')[1] in capsys.readouterr().out
