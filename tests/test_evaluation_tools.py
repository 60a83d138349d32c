"""tools/evaluate.py and tools/avobjects_table.py end to end on generated
media (and on avobjects clips), including bad rows and bad arguments."""
import csv
import json
import os.path as osp
import runpy

import numpy as np
import pytest

from xdc_plugin.data.demo import write_mp4

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG = osp.join(REPO, 'configs', 'xdc_avobjects.yaml')
EVALUATE = runpy.run_path(osp.join(REPO, 'tools', 'evaluate.py'))
TABLE = runpy.run_path(osp.join(REPO, 'tools', 'avobjects_table.py'))
# Two classes that differ in what is seen (bright red vs dark blue) and in
# what is heard (300 Hz vs 2500 Hz).
LOOKS = {'red': ((220, 30, 30), 300.0), 'blue': ((20, 20, 90), 2500.0)}


def _clip(path, colour, tone, seed):
    rng = np.random.default_rng(seed)
    frames = np.empty((30, 64, 64, 3), np.uint8)
    frames[:] = colour
    frames = np.clip(frames + rng.integers(-20, 20, frames.shape), 0,
                     255).astype(np.uint8)
    t = np.arange(48000) / 16000
    audio = 0.3 * np.sin(2 * np.pi * tone * t) + rng.normal(size=t.shape) * .02
    write_mp4(str(path), frames, audio.astype(np.float32), fps=10)


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    """6 clips per class, a corrupt file and an unlabelled clip;
    ``all.csv`` lists them all, ``train.csv``/``test.csv`` split them (the
    test part holds two red clips only)."""
    root = tmp_path_factory.mktemp('labelled')
    rows = []
    for name, (colour, tone) in LOOKS.items():
        for i in range(6):
            _clip(root / f'{name}{i}.mp4', colour, tone, len(rows))
            rows.append((f'{name}{i}.mp4', name))
    _clip(root / 'nolabel.mp4', (128, 128, 128), 1000.0, 99)
    (root / 'corrupt.mp4').write_bytes(np.random.default_rng(0).bytes(9000))
    bad = [('nolabel.mp4', ''), ('corrupt.mp4', 'red')]
    for name, listed in (('all', rows + bad), ('train', rows[2:]),
                         ('test', rows[:2])):
        with open(root / f'{name}.csv', 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['path', 'colour'])
            writer.writerows(listed)
    return root


def _run(argv):
    return EVALUATE['main'](argv)


def test_kfold_both_protocols_json(clips, tmp_path, capsys, caplog):
    out = tmp_path / 'out.json'
    records = _run(['random', '--cfg', CFG, '--data', str(clips / 'all.csv'),
                    '--label-column', 'colour', '--protocol', 'linear',
                    'knn', '--modality', 'both', '--folds', '3',
                    '--num-clips', '2', '--json', str(out), '--no-progress'])
    printed = capsys.readouterr().out
    assert '| linear | video | top1 |' in printed
    assert '12 labelled files evaluated, 1 skipped' in printed
    assert json.loads(out.read_text()) == records
    # 3 folds of 12 files train on 8: knn@10 and recall@10 are left out.
    assert len(records) == 2 + 2 * 3
    assert 'knn@10, recall@10 left out: a training part has 8 rows' in \
        caplog.text
    assert 'knn@10' not in printed and 'recall@5' in printed
    for record in records:
        for key in ('protocol', 'modality', 'metric', 'accuracy', 'std',
                    'folds', 'num_samples', 'encoder'):
            assert key in record
        assert record['encoder'] == 'random' and len(record['folds']) == 3
        assert record['num_samples'] == 12
        assert record['num_unlabelled'] == 1 and record['num_skipped'] == 1
    # The classes differ in colour and pitch: even random-init features
    # tell them apart.
    by_key = {(r['protocol'], r['modality'], r['metric']): r
              for r in records}
    assert by_key['knn', 'video', 'knn@1']['accuracy'] == 1.0
    assert by_key['knn', 'audio', 'knn@1']['accuracy'] == 1.0
    assert by_key['linear', 'video', 'top1']['accuracy'] >= 0.9


def test_train_test_manifests(clips):
    (record,) = _run(['random', '--cfg', CFG, '--train-manifest',
                      str(clips / 'train.csv'), '--test-manifest',
                      str(clips / 'test.csv'), '--label-column', 'colour',
                      '--protocol', 'linear', '--modality', 'audio',
                      '--num-clips', '1', '--no-progress'])
    assert record['modality'] == 'audio' and len(record['folds']) == 1
    assert record['num_samples'] == 12 and record['std'] == 0
    # Class indices are those of the union of both manifests' classes, so
    # the single-class test part is still scored right.
    assert record['accuracy'] == 1.0


@pytest.mark.parametrize('argv,message', [
    (['--data', 'a.csv', '--train-manifest', 'b.csv'], 'give --data'),
    (['--train-manifest', 'b.csv'], 'go together'),
    (['--data', 'a.csv', '--protocol', 'svm'], 'invalid choice'),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        _run(['random', '--label-column', 'x'] + argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('column,folds,message', [
    ('shape', 3, "no 'shape' column"),
    ('colour', 7, r'class \d has 6 labelled sample\(s\), fewer than the 7 '
                  r'folds: use fewer folds \(--folds 6\)'),
])
def test_label_errors_come_before_extraction(clips, column, folds, message,
                                             capsys):
    with pytest.raises(SystemExit):
        _run(['random', '--cfg', CFG, '--data', str(clips / 'all.csv'),
              '--label-column', column, '--folds', str(folds),
              '--no-progress'])
    assert __import__('re').search(message, capsys.readouterr().err)


def test_release_has_no_audio(capsys):
    with pytest.raises(SystemExit):
        _run(['r2plus1d_18_xdc_ig65m_kinetics', '--data', 'x.csv',
              '--label-column', 'y', '--modality', 'both'])
    assert 'only video encoders' in capsys.readouterr().err


def test_avobjects_table_on_a_tiny_run(avobjects_dir, tmp_path, capsys):
    """Train xdc for one epoch (one step) on 8 avobjects clips, evaluate
    it and the random baseline, print the markdown table."""
    rows = list(csv.DictReader(open(osp.join(avobjects_dir,
                                             'manifest.csv'))))
    per_class = {}
    for row in rows:
        per_class.setdefault(row['coarse_label'], []).append(row)
    manifest = tmp_path / 'tiny.csv'
    with open(manifest, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path', 'coarse_label'])
        for label, members in sorted(per_class.items()):
            for row in members[:2]:
                writer.writerow([osp.join(avobjects_dir, row['path']),
                                 label])
    records, table = TABLE['main']([
        '--data', str(manifest), '--variants', 'random', 'xdc',
        '--work-root', str(tmp_path / 'work'), '--folds', '2',
        '--num-clips', '1', '--no-progress',
        f'train_dataloader.dataset.ann_file={manifest}',
        'train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
        'train_cfg.max_epochs=1', 'default_hooks.clustering.interval=1',
        'default_hooks.clustering.extract_dataloader.num_workers=0',
        'default_hooks.clustering.clusterers.num_redo=1',
        '+default_hooks.clustering.evaluate_after_train=false',
        'model.num_clusters=2'])
    lines = table.splitlines()
    assert lines[0].startswith('| variant | linear video top1 |')
    assert lines[2].startswith('| random |') and lines[2].endswith('| - |')
    assert lines[3].startswith('| xdc |') and lines[3].endswith(' min |')
    xdc = [r for r in records if r['variant'] == 'xdc']
    # 2 folds of 8 files train on 4: only knn@1, recall@1 of the kNN.
    assert len(xdc) == 6 and xdc[0]['train_seconds'] > 0
    assert xdc[0]['encoder'].endswith('epoch_1.pth')
    saved = json.loads((tmp_path / 'work' / 'table.json').read_text())
    assert saved == records
    assert table in capsys.readouterr().out


def test_avobjects_table_names_a_bad_override_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as info:
        TABLE['main'](['--work-root', str(tmp_path), 'train_cfg.max_epochs'])
    assert str(info.value) == ("error: override 'train_cfg.max_epochs' is "
                               'not KEY=VALUE')
    assert list(tmp_path.iterdir()) == []
