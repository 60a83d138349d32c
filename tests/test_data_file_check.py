"""check_file / check_files and the check cache."""
import csv
import os
import os.path as osp
import shutil

import pytest
from conftest import TIMECODE_FPS, timecode_media

import xdc_plugin.data.file_check as file_check
from xdc_plugin.data.check_cache import CheckCache
from xdc_plugin.data.demo import write_mp4
from xdc_plugin.data.file_check import CheckSettings, check_file, check_files


@pytest.mark.parametrize('name, status', [
    ('timecode.mp4', 'ok'), ('audio_short.mp4', 'audio_short'),
    ('trunc_early.mp4', 'truncated'), ('mixed/noaudio.mp4', 'no_audio'),
    ('mixed/corrupt.mp4', 'unreadable'), ('mixed/short.mp4', 'too_short'),
    ('tone.wav', 'no_video'),
])
def test_statuses(media_dir, name, status):
    result = check_file(str(media_dir / name))
    assert result.status == status
    if status in ('ok', 'audio_short'):  # the headers were read
        assert result.duration == pytest.approx(6.0, abs=0.05)
        assert result.fps == pytest.approx(10.0)


def test_audio_short_only_when_the_rest_decodes(tmp_path):
    frames, audio = timecode_media(6.0)
    whole = str(tmp_path / 'whole.mp4')
    write_mp4(whole, frames, audio[:2 * 16000], TIMECODE_FPS, faststart=True)
    assert check_file(whole).status == 'audio_short'
    data = open(whole, 'rb').read()
    cut = tmp_path / 'cut.mp4'  # headers intact, media data cut
    cut.write_bytes(data[:int(len(data) * 0.6)])
    assert check_file(str(cut)).status == 'truncated'


def test_settings(media_dir):
    wav = str(media_dir / 'tone.wav')
    audio_only = CheckSettings(modalities=('audio', ), clip_duration=2.0)
    assert check_file(wav, audio_only).status == 'ok'
    assert check_file(wav, CheckSettings(modalities=('audio', ),
                                         clip_duration=7.0)).status == \
        'too_short'
    video_only = CheckSettings(modalities=('video', ))
    assert check_file(str(media_dir / 'mixed' / 'noaudio.mp4'),
                      video_only).status == 'ok'
    assert CheckSettings(frame_rate=5).clip_span(10.0) == 1.6
    assert CheckSettings().clip_span(10.0) == 0.8
    with pytest.raises(ValueError, match='audio-only data needs'):
        CheckSettings(modalities=('audio', ))
    with pytest.raises(ValueError, match='modalities'):
        CheckSettings(modalities=('rgb', ))
    # The digest ignores full_decode (a full check answers a header check).
    assert CheckSettings().digest() == CheckSettings(
        full_decode=False).digest() != CheckSettings(num_frames=16).digest()
    assert CheckSettings(frame_rate=30).digest() == CheckSettings(
        frame_rate=30.0).digest()


def test_threads_give_the_serial_results(media_dir):
    paths = sorted(str(p) for p in (media_dir / 'mixed').iterdir())
    serial = check_files(paths, num_workers=0, progress=False)
    assert check_files(paths, num_workers=2, progress=False) == serial
    assert [r.status for r in serial].count('ok') == 2


@pytest.fixture
def listed(tmp_path, media_dir):
    """Three files and their manifest."""
    for name in ('a.mp4', 'b.mp4'):
        shutil.copy(media_dir / 'timecode.mp4', tmp_path / name)
    shutil.copy(media_dir / 'trunc_early.mp4', tmp_path / 'c.mp4')
    manifest = tmp_path / 'ann.csv'
    manifest.write_text('path\na.mp4\nb.mp4\nc.mp4\n')
    return str(manifest), [str(tmp_path / n) for n in ('a.mp4', 'b.mp4',
                                                       'c.mp4')]


@pytest.fixture
def checked(monkeypatch):
    """The paths check_file is called on."""
    calls = []
    real = file_check.check_file

    def counting(path, settings):
        calls.append(osp.basename(path))
        return real(path, settings)
    monkeypatch.setattr(file_check, 'check_file', counting)
    return calls


def test_cache_is_reused_and_invalidated(listed, checked):
    manifest, paths = listed
    settings = CheckSettings()
    cache = CheckCache(manifest, settings)
    first = check_files(paths, settings, 0, False, cache)
    assert [r.status for r in first] == ['ok', 'ok', 'truncated']
    assert cache.path == f'{manifest}.xdc-check-{settings.digest()}.json'
    assert sorted(checked) == ['a.mp4', 'b.mp4', 'c.mp4']
    checked.clear()
    assert check_files(paths, settings, 0, False,
                       CheckCache(manifest, settings)) == first
    assert checked == []  # nothing decoded again
    # A header check is answered by the full check's results...
    assert check_files(paths, CheckSettings(full_decode=False), 0, False,
                       CheckCache(manifest, settings)) == first
    assert checked == []
    # ...and other clip settings have their own cache.
    check_files(paths[:1], CheckSettings(num_frames=4), 0, False,
                CheckCache(manifest, CheckSettings(num_frames=4)))
    assert checked == ['a.mp4']
    checked.clear()
    # A changed file is checked again, and only it.
    with open(paths[2], 'wb') as f:
        f.write(open(paths[0], 'rb').read())
    again = check_files(paths, settings, 0, False,
                        CheckCache(manifest, settings))
    assert checked == ['c.mp4'] and again[2].status == 'ok'


def test_header_results_do_not_answer_a_full_check(listed, checked):
    manifest, paths = listed
    headers = CheckSettings(full_decode=False)
    cache = CheckCache(manifest, headers)
    assert check_files(paths, headers, 0, False, cache)[2].status == 'ok'
    checked.clear()
    result = check_files(paths, CheckSettings(), 0, False,
                         CheckCache(manifest, CheckSettings()))
    assert sorted(checked) == ['a.mp4', 'b.mp4', 'c.mp4']
    assert result[2].status == 'truncated'


def test_cache_falls_back_to_the_user_cache_folder(listed, checked,
                                                   monkeypatch, tmp_path):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'user_cache'))
    manifest, paths = listed
    settings = CheckSettings()
    cache = CheckCache(manifest, settings)
    # The file beside the manifest cannot be written (a folder is there).
    os.mkdir(cache.candidates[0])
    check_files(paths, settings, 0, False, cache)
    assert cache.path.startswith(str(tmp_path / 'user_cache' / 'xdc_plugin'))
    assert osp.isfile(cache.path)
    checked.clear()
    check_files(paths, settings, 0, False, CheckCache(manifest, settings))
    assert checked == []


def test_folder_sources_keep_their_cache_inside(tmp_path, media_dir):
    shutil.copy(media_dir / 'timecode.mp4', tmp_path / 'a.mp4')
    settings = CheckSettings()
    cache = CheckCache(str(tmp_path), settings)
    check_files([str(tmp_path / 'a.mp4')], settings, 0, False, cache)
    assert cache.path == str(tmp_path / f'.xdc-check-{settings.digest()}'
                             '.json')
    explicit = CheckCache(str(tmp_path), settings, str(tmp_path / 'mine'))
    check_files([str(tmp_path / 'a.mp4')], settings, 0, False, explicit)
    assert osp.dirname(explicit.path) == str(tmp_path / 'mine')


def test_every_realclip_passes(realclips_dir):
    with open(osp.join(realclips_dir, 'manifest.csv')) as f:
        paths = [osp.join(realclips_dir, r['path'])
                 for r in csv.DictReader(f)]
    results = check_files(paths, progress=False)
    assert [p for p, r in zip(paths, results) if r.status != 'ok'] == []


@pytest.mark.timeout(20)
def test_special_and_missing_files_get_their_kind_at_once(tmp_path,
                                                          media_dir):
    """A FIFO (whose open would wait for a writer for ever) and a device
    are refused by type; a missing file is 'missing', not 'unreadable'."""
    os.mkfifo(tmp_path / 'fifo.mp4')
    paths = [str(tmp_path / 'fifo.mp4'), '/dev/zero',
             str(tmp_path / 'gone.mp4'), str(media_dir / 'timecode.mp4')]
    for workers in (0, 2):
        results = check_files(paths, num_workers=workers, progress=False)
        assert [r.status for r in results] == ['unreadable', 'unreadable',
                                               'missing', 'ok']
    assert results[0].detail == 'a FIFO, not a regular file: not opened'
    assert 'missing' in file_check.STATUSES


@pytest.fixture
def cache_warnings(monkeypatch):
    import xdc_plugin.data.check_cache as check_cache
    messages = []
    monkeypatch.setattr(check_cache, 'print_log',
                        lambda msg, **kw: messages.append(msg))
    return messages


@pytest.mark.timeout(20)
@pytest.mark.parametrize('bad, why', [
    ('[1, 2]', 'a JSON list, not an object of file entries'),
    ('{"a.mp4": 3}', "the entry of 'a.mp4' is not a check result"),
    ('{"a.mp4": {"stat": [1, 2], "full_decode": true, '
     '"result": {"status": "fine"}}}', "the entry of 'a.mp4' is not a"),
    ('not json', 'Expecting value'),
    (None, 'not a regular file'),  # a FIFO: reading it would block
])
def test_a_cache_file_of_the_wrong_shape_is_ignored_and_replaced(
        listed, checked, cache_warnings, bad, why):
    manifest, paths = listed
    settings = CheckSettings()
    cache = CheckCache(manifest, settings)
    beside = cache.candidates[0]
    if bad is None:
        os.mkfifo(beside)
    else:
        with open(beside, 'w') as f:
            f.write(bad)
    results = check_files(paths, settings, 0, False, cache)
    assert [r.status for r in results] == ['ok', 'ok', 'truncated']
    assert sorted(checked) == ['a.mp4', 'b.mp4', 'c.mp4']
    assert len(cache_warnings) == 1
    assert cache_warnings[0].startswith(f'ignoring the check cache {beside}')
    assert why in cache_warnings[0] and '\n' not in cache_warnings[0]
    # The bad file was replaced by a good one, used by the next check.
    assert cache.path == beside and osp.isfile(beside)
    checked.clear()
    check_files(paths, settings, 0, False, CheckCache(manifest, settings))
    assert checked == []
