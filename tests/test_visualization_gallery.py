"""The cluster gallery: pages, ordering, media, failures, old files, CLI."""
import os
import shutil
import wave
from html.parser import HTMLParser

import av
import numpy as np
import pytest
from conftest import (TIMECODE_CLIP_CFG, TIMECODE_FPS, save_fitted_rounds,
                      timecode_extract_set)
from PIL import Image

from xdc_plugin.clustering.round_file import load_round, round_path
from xdc_plugin.visualization import build_gallery
from xdc_plugin.visualization.cli import main
from xdc_plugin.visualization.media import (DEFAULT_CLIP, MediaJob,
                                            render_clip)


class PageOutline(HTMLParser):
    """Sections of a gallery page, their cluster cards (attributes) and
    each card's clips (index, failed, media sources)."""

    def __init__(self, html):
        super().__init__()
        self.sections, self.charts, self.rounds = {}, 0, []
        self._section = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get('class') or '').split()
        if tag == 'section':
            self._section = self.sections.setdefault(
                attrs['data-source'], dict(order=attrs['data-order'],
                                           cards=[]))
        elif tag == 'article':
            self._section['cards'].append(dict(attrs, clips=[]))
        elif tag == 'li' and 'clip' in classes:
            self._section['cards'][-1]['clips'].append(dict(
                index=int(attrs['data-index']), failed='failed' in classes,
                media=[]))
        elif tag in ('video', 'audio', 'img') and self._section:
            clip = self._section['cards'][-1]['clips'][-1]
            clip['media'] += [attrs[k] for k in ('src', 'poster')
                              if k in attrs]
        elif tag == 'figure' and 'chart' in classes:
            self.charts += 1
        elif tag == 'a' and attrs.get('href', '').startswith('round_'):
            self.rounds.append(attrs['href'])


def outline(path):
    with open(path, encoding='utf-8') as f:
        return PageOutline(f.read())


@pytest.fixture(scope='module')
def tiny_gallery(tiny_xdc_run, tmp_path_factory):
    work, _ = tiny_xdc_run
    out = tmp_path_factory.mktemp('gallery')
    report = build_gallery(str(work), out_dir=str(out), workers=2,
                           progress=False)
    return work, out, report


def test_every_round_gets_a_page_of_its_nearest_clips(tiny_gallery):
    work, out, report = tiny_gallery
    assert set(report.pages) == {0, 'final'} and report.failed == {}
    assert (out / 'index.html').read_text() == (
        out / 'round_final.html').read_text()
    for round_id in (0, 'final'):
        round_ = load_round(round_path(str(work), round_id))
        page = outline(out / f'round_{round_id}.html')
        assert page.charts == 1
        assert page.rounds == ['round_0.html', 'round_final.html']
        assert list(page.sections) == ['audio', 'video']
        for source, section in page.sections.items():
            clusters = round_.sources[source]
            assert section['order'] == 'purity'
            assert len(section['cards']) == (clusters.counts > 0).sum()
            purities = []
            for card in section['cards']:
                k = int(card['data-cluster-id'])
                members = np.flatnonzero(clusters.labels == k)
                counts = np.bincount(round_.gt_labels[members])
                purities.append(float(card['data-purity']))
                assert purities[-1] == pytest.approx(
                    counts.max() / len(members), abs=1e-6)
                assert int(card['data-size']) == len(members)
                nearest = members[np.argsort(clusters.distances[members])]
                assert [c['index'] for c in card['clips']] == list(
                    nearest[:10])
            assert purities == sorted(purities, reverse=True)


def test_media_match_the_section_and_are_shared_by_rounds(tiny_gallery):
    _, out, report = tiny_gallery
    used = {}
    for round_id in (0, 'final'):
        for source, section in outline(
                out / f'round_{round_id}.html').sections.items():
            for card in section['cards']:
                for clip in card['clips']:
                    kinds = sorted(m.rsplit('.', 1)[1] for m in clip['media'])
                    assert kinds == (['png', 'wav'] if source == 'audio' else
                                     ['jpg', 'webm'])
                    for media in clip['media']:
                        assert (out / media).is_file()
                        used.setdefault((source, clip['index']),
                                        set()).add(media)
    # One clip, one set of files, whichever round shows it.
    assert all(len(files) == 2 for files in used.values())
    media_files = os.listdir(out / 'media')
    assert len(media_files) == len(set().union(*used.values()))
    assert report.num_clips == len({i for _, i in used})


def test_a_rebuild_reuses_the_media(tiny_gallery, tmp_path):
    work, built, _ = tiny_gallery
    out = tmp_path / 'gallery'
    shutil.copytree(built, out)
    before = {f: os.stat(out / 'media' / f).st_mtime_ns
              for f in os.listdir(out / 'media')}
    report = build_gallery(str(work), which='0', out_dir=str(out),
                           workers=1, progress=False)
    assert set(report.pages) == {0}
    after = {f: os.stat(out / 'media' / f).st_mtime_ns
             for f in os.listdir(out / 'media')}
    assert after == before


def test_clip_media_show_the_extraction_window(timecode_clips, tmp_path):
    """clip0 is 4 s: the 0.8 s clip starts at 1.6 s, so the 2 s audio
    window and the preview cover 1.0-3.0 s: frames 10-29 (grey 20 + 3 i)
    and the 440 Hz tone."""
    cfg = dict(DEFAULT_CLIP, **TIMECODE_CLIP_CFG)
    job = MediaJob(str(timecode_clips / 'clip0.mp4'), 1.6, TIMECODE_FPS,
                   cfg, {'video', 'audio'})
    result = render_clip(job, str(tmp_path))
    assert result.error is None
    webm, jpg = (tmp_path / f for f in result.files['video'])
    with av.open(str(webm)) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == 'vp9'
        greys = [f.to_ndarray(format='gray').mean()
                 for f in video.decode(stream)]
    assert len(greys) == 20
    assert greys[0] == pytest.approx(50, abs=3)
    assert greys[-1] == pytest.approx(107, abs=3)
    assert Image.open(jpg).size == (32, 32)
    wav, png = (tmp_path / f for f in result.files['audio'])
    with wave.open(str(wav)) as audio:
        assert (audio.getframerate(), audio.getnframes()) == (16000, 32000)
        samples = np.frombuffer(audio.readframes(32000), '<i2')
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(32000, 1 / 16000)[spectrum.argmax()] == \
        pytest.approx(440, abs=2)
    assert Image.open(png).size == (160, 64)


def test_without_labels_and_with_a_clip_that_fails(timecode_clips, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(timecode_clips, data)
    dataset = timecode_extract_set(str(data / 'unlabelled.csv'))
    save_fitted_rounds(tmp_path / 'work', dataset, [0, 1])
    broken = data / 'clip1.mp4'
    broken.write_bytes(b'no longer a video ' * 100)
    report = build_gallery(str(tmp_path / 'work'),
                           out_dir=str(tmp_path / 'g'), workers=2,
                           progress=False)
    assert list(report.failed) == [str(broken)]
    assert report.failed[str(broken)].startswith('unreadable')
    page_text = (tmp_path / 'g' / 'index.html').read_text()
    assert 'by tightness' in page_text and 'could not decode' in page_text
    page = outline(tmp_path / 'g' / 'round_1.html')
    for section in page.sections.values():
        assert section['order'] == 'tightness'
        tightness = [float(c['data-tightness']) for c in section['cards']]
        assert tightness == sorted(tightness)
        assert not any('data-purity' in c for c in section['cards'])
        clips = [clip for c in section['cards'] for clip in c['clips']]
        assert sorted(c['index'] for c in clips) == list(range(6))
        for clip in clips:
            assert clip['failed'] == (clip['index'] == 1)
            assert bool(clip['media']) != clip['failed']


def old_round(work, round_id):
    path = work / 'clusters' / f'round_{round_id}.npz'
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, video_labels=np.array([0, 1, 1]),
             video_centroids=np.zeros((2, 4)),
             audio_labels=np.array([1, 0, 0]),
             audio_centroids=np.zeros((2, 4)))


def test_old_round_files_get_a_clear_message(tmp_path, capsys):
    old_round(tmp_path, 0)
    old_round(tmp_path, 'final')
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'no round can be shown' in err
    assert 'round 0 (round_0.npz, format 1) lacks:' in err
    assert 'distances: cannot show the clips nearest each centre' in err
    assert 'paths: cannot show any clip' in err
    assert 'Train again with this version' in err
    assert main([str(tmp_path), '--round', 'final']) == 2
    assert 'cannot show round final' in capsys.readouterr().err


def test_old_rounds_beside_new_ones_are_noted(timecode_clips, tmp_path,
                                              capsys):
    dataset = timecode_extract_set(str(timecode_clips / 'labelled.csv'))
    old_round(tmp_path, 0)
    save_fitted_rounds(tmp_path, dataset, [1])
    assert main([str(tmp_path), '--workers', '1']) == 0
    captured = capsys.readouterr()
    assert 'note: round 0 (round_0.npz, format 1) lacks: distances' in \
        captured.err
    assert '1 round page(s), ' in captured.out
    page = (tmp_path / 'gallery' / 'index.html').read_text()
    assert 'round 0 (round_0.npz, format 1) lacks' in page
    assert 'No quality metric to chart' in page  # these rounds have none


def test_cli_rejects_unknown_rounds_and_empty_work_dirs(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert 'no round files in' in capsys.readouterr().err
    old_round(tmp_path, 0)
    assert main([str(tmp_path), '--round', '7']) == 2
    assert "no round '7'; rounds: [0]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), '--round', 'last'])


def test_joint_clusters_show_picture_and_sound(timecode_clips, tmp_path):
    """CDC clusters both modalities together: one section, whose clips
    carry the video preview, the audio and its spectrogram."""
    dataset = timecode_extract_set(str(timecode_clips / 'labelled.csv'))
    save_fitted_rounds(tmp_path, dataset, ['final'], sources=('joint', ))
    report = build_gallery(str(tmp_path), out_dir=str(tmp_path / 'g'),
                           workers=1, progress=False)
    assert report.failed == {}
    page = outline(tmp_path / 'g' / 'index.html')
    assert list(page.sections) == ['joint']
    assert 'Joint clusters [look and listen]' in (
        tmp_path / 'g' / 'index.html').read_text()
    clips = [c for card in page.sections['joint']['cards']
             for c in card['clips']]
    assert len(clips) == 6
    for clip in clips:
        assert sorted(m.rsplit('.', 1)[1] for m in clip['media']) == [
            'jpg', 'png', 'wav', 'webm']
