import csv
import os.path as osp
import sys

from xdc_plugin.data.manifest import check_file, check_manifest

EXPECTED = {'ok': 2, 'unreadable': 2, 'no_audio': 1, 'no_video': 0,
            'truncated': 1, 'too_short': 1}


def test_report_counts_on_mixed_folder(media_dir, tmp_path):
    report = check_manifest(str(media_dir / 'mixed'))
    assert report.counts == EXPECTED
    assert [osp.basename(p) for p in report.paths('truncated')] == \
        ['trunc_fast.mp4']
    table = report.table()
    assert 'truncated        1  ' in table and 'total            7' in table
    out = tmp_path / 'clean.csv'
    assert report.write_clean(str(out)) == 2
    with open(out) as f:
        rows = list(csv.DictReader(f))
    names = [osp.basename(r['path']) for r in rows]
    assert names == ['good1.mp4', 'good2.mp4']
    assert osp.isfile(osp.join(tmp_path, rows[0]['path']))


def test_headers_only_misses_truncation(media_dir):
    report = check_manifest(str(media_dir / 'mixed'), full_decode=False)
    assert report.counts['ok'] == 3 and report.counts['truncated'] == 0


def test_no_video_and_csv_labels(tmp_path, media_dir):
    import av
    import numpy as np
    path = tmp_path / 'audio_only.m4a'
    with av.open(str(path), 'w', format='mp4') as out:
        s = out.add_stream('aac', rate=16000)
        s.layout = 'mono'
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32),
                                           format='flt', layout='mono')
        frame.sample_rate, frame.pts = 16000, 0
        out.mux(s.encode(frame))
        out.mux(s.encode())
    assert check_file(str(path))[0] == 'no_video'
    ann = tmp_path / 'ann.csv'
    ann.write_text(f'path,label\n{path},x\n'
                   f'{media_dir / "mixed" / "good1.mp4"},y\n')
    report = check_manifest(str(ann), num_workers=0)
    assert [r[1] for r in report.rows] == ['no_video', 'ok']
    assert report.write_clean(str(tmp_path / 'c.csv')) == 1
    assert 'good1.mp4,y' in (tmp_path / 'c.csv').read_text()


def test_cli(media_dir, tmp_path, capsys):
    sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'tools'))
    try:
        import check_manifest as cli
    finally:
        sys.path.pop(0)
    report = cli.main([str(media_dir / 'mixed'), '--write-clean',
                       str(tmp_path / 'clean.csv')])
    assert report.counts == EXPECTED
    out = capsys.readouterr().out
    assert 'wrote 2 rows' in out and 'unreadable       2' in out
