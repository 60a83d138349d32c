import csv
import os.path as osp
import shutil

import pytest

from xdc_plugin.data.manifest_check import check_manifest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'check_manifest.py')
EXPECTED = {'ok': 2, 'missing': 0, 'unreadable': 2, 'no_video': 0,
            'no_audio': 1, 'truncated': 1, 'too_short': 1, 'audio_short': 0}


def test_report_counts_on_mixed_folder(media_dir, tmp_path):
    report = check_manifest(str(media_dir / 'mixed'), cache=False)
    assert report.counts == EXPECTED and not report.clean
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
    report = check_manifest(str(media_dir / 'mixed'), full_decode=False,
                            cache=False)
    assert report.counts['ok'] == 3 and report.counts['truncated'] == 0


@pytest.fixture
def manifest(tmp_path, media_dir):
    """A manifest with an audio-short file, a duplicate, a missing label
    and an extra column, in a folder of its own."""
    for name in ('timecode.mp4', 'audio_short.mp4', 'short_audio.mp4'):
        shutil.copy(media_dir / name, tmp_path / name)
    path = tmp_path / 'ann.csv'
    path.write_text('path, kind ,note\ntimecode.mp4,tick,first\n'
                    'audio_short.mp4,tock,x\nshort_audio.mp4,,y\n'
                    'timecode.mp4,tick,again\n')
    return path


def test_audio_short_duplicates_and_clean_copy(manifest, tmp_path):
    report = check_manifest(str(manifest), label_column='kind', cache=False)
    assert [s for _, s, _ in report.rows] == ['ok', 'audio_short', 'ok',
                                              'ok']
    assert 'the audio track ends at 2.0' in report.rows[1][2]
    table = report.table()
    assert 'audio_short      1  ' in table
    assert '1 duplicate rows (line 5 repeats line 2)' in table
    assert "1 rows without a 'kind' value" in table
    out = tmp_path / 'sub' / 'clean.csv'
    out.parent.mkdir()
    assert report.write_clean(str(out)) == 2
    # Every column, the label column's real name, its values; the
    # duplicate and the audio-short file dropped; paths from the new folder.
    assert out.read_text().splitlines() == [
        'path,kind,note', '../timecode.mp4,tick,first',
        '../short_audio.mp4,,y']


@pytest.fixture
def run(tool_main):
    """The tool's ``main`` on arguments, in this process: (exit code,
    stdout, stderr)."""
    return tool_main(TOOL)


def test_cli_exit_codes(run, manifest, tmp_path):
    code, out, _ = run(manifest, '--label-column', 'kind', '--write-clean',
                       tmp_path / 'clean.csv', '--no-cache')
    assert code == 1
    assert 'wrote 2 rows' in out and 'audio_short      1' in out
    code, out, _ = run(tmp_path / 'clean.csv', '--label-column', 'kind',
                       '--no-cache')
    assert code == 0 and 'ok               2' in out
    (tmp_path / 'empty.csv').write_text('path,label\n')
    code, _, err = run(tmp_path / 'empty.csv')
    assert code == 2 and 'lists no file' in err
    code, _, err = run(manifest, '--label-column', 'label')
    assert code == 2
    assert "no 'label' column; its columns are ['path', 'kind', 'note']" in \
        err


def test_cli_audio_only(run, media_dir, tmp_path):
    shutil.copy(media_dir / 'tone.wav', tmp_path / 'tone.wav')
    code, out, _ = run(tmp_path, '--audio-only', '--clip-duration', '2',
                       '--no-cache')
    assert code == 0 and 'ok               1' in out
    code, _, err = run(tmp_path, '--no-cache')  # video needed: no file
    assert code == 2 and 'holds no file' in err


def test_the_build_reads_what_the_tool_checked(manifest, monkeypatch):
    import xdc_plugin.data.file_check as file_check
    from xdc_plugin.data.dataset import AVClipDataset
    check_manifest(str(manifest), label_column='kind')  # default settings
    calls = []
    real = file_check.check_file
    monkeypatch.setattr(file_check, 'check_file',
                        lambda p, s: calls.append(p) or real(p, s))
    ds = AVClipDataset(str(manifest), label_column='kind', pipeline=[
        dict(type='SampleClip', num_frames=8, mode='random'),
        dict(type='DecodeAVClip', audio_duration=2.0, sample_rate=16000),
        dict(type='PackAVInputs')])
    assert calls == []  # the config's clip settings are the tool's defaults
    assert [s for _, s in ds.skipped] == ['audio_short']


@pytest.mark.timeout(300)
def test_cli_on_a_fifo_and_missing_files_returns_at_once(media_dir,
                                                         tmp_path):
    """Before, the check blocked for ever on the FIFO's open. Now it is
    refused by type, and the missing file has its own row."""
    import os
    import subprocess
    import sys
    shutil.copy(media_dir / 'timecode.mp4', tmp_path / 'good.mp4')
    os.mkfifo(tmp_path / 'fifo.mp4')
    manifest = tmp_path / 'ann.csv'
    manifest.write_text('path\ngood.mp4\nfifo.mp4\ngone.mp4\n')
    done = subprocess.run([sys.executable, TOOL, str(manifest), '--no-cache'],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert f'missing          1  {tmp_path / "gone.mp4"}' in lines
    assert f'unreadable       1  {tmp_path / "fifo.mp4"}' in lines
    assert 'ok               1  ' in lines


@pytest.fixture
def checked_files(monkeypatch):
    import xdc_plugin.data.file_check as file_check
    calls = []
    real = file_check.check_file
    monkeypatch.setattr(file_check, 'check_file',
                        lambda p, s: calls.append(p) or real(p, s))
    return calls


def test_cli_checks_the_output_folder_before_the_files(run, manifest,
                                                       tmp_path, capsys,
                                                       checked_files):
    out = tmp_path / 'nowhere' / 'clean.csv'
    code, _, err = run(manifest, '--write-clean', out, '--no-cache')
    assert code == 2 and checked_files == []
    assert err == (f'error: --write-clean {out}: the folder '
                   f'{out.parent} does not exist\n')
    code, _, err = run(manifest, '--write-clean', tmp_path, '--no-cache')
    assert code == 2 and err == f'error: --write-clean {tmp_path} is a ' \
        'folder\n'
    with pytest.raises(SystemExit):
        run(manifest, '--num-workers', '-1')
    assert 'argument --num-workers: must be >= 0, got -1' in \
        capsys.readouterr().err
    assert checked_files == []


@pytest.mark.timeout(60)
def test_cli_names_a_manifest_that_is_no_csv(run, media_dir, tmp_path):
    import os
    video = media_dir / 'timecode.mp4'
    os.mkfifo(tmp_path / 'fifo.csv')
    for source, says in ((video, 'is not UTF-8 CSV text (a media file?)'),
                         (tmp_path / 'fifo.csv', 'is not a regular file'),
                         (tmp_path / 'gone.csv', 'No such file')):
        code, out, err = run(source, '--no-cache')
        assert code == 2 and out == ''
        assert err.startswith(f'error: manifest {source}') and says in err
        assert err.count('\n') == 1
