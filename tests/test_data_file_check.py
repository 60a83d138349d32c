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
