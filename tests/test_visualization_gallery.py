"""The cluster gallery: pages, ordering, media, failures, old files, CLI."""
import os
import os.path as osp
import shutil
import wave
from html.parser import HTMLParser

import av
import numpy as np
import pytest
from conftest import (TIMECODE_CLIP_CFG, TIMECODE_FPS, save_fitted_rounds,
                      timecode_extract_set)
from PIL import Image

from xdc_plugin.clustering.round_file import (load_round, part_path,
                                              round_path)
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


class VisibleText(HTMLParser):
    """The text a page shows (no attributes, no style)."""

    def __init__(self, html):
        super().__init__()
        self.parts, self._style = [], False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self._style = tag == 'style'

    def handle_data(self, data):
        if not self._style:
            self.parts.append(data)


def test_the_config_shows_by_name_its_path_only_as_a_tooltip(tiny_gallery):
    work, out, _ = tiny_gallery
    recorded = load_round(round_path(str(work), 'final')).config
    assert osp.isabs(recorded)
    html = (out / 'round_final.html').read_text()
    name = osp.basename(recorded)
    assert f'<dd title="{recorded}">{name}</dd>' in html
    shown = ' '.join(VisibleText(html).parts)
    assert name in shown and osp.dirname(recorded) not in shown


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


@pytest.fixture
def request_counter():
    """A local HTTP server and the list of requests it received."""
    import http.server
    import threading
    seen = []

    class Counting(http.server.BaseHTTPRequestHandler):
        def handle(self):
            seen.append(self.client_address)
            super().handle()

        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}', seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def opened(monkeypatch, tmp_path):
    """The paths PyAV opens for reading, in this process and the forked
    media workers (which inherit the patch), read back as a list."""
    log = tmp_path / 'opened.txt'
    log.touch()
    real = av.open

    def spy(file, mode='r', **kwargs):
        if mode == 'r':
            with open(log, 'a') as f:
                f.write(f'{file}\n')
        return real(file, mode, **kwargs)
    monkeypatch.setattr(av, 'open', spy)
    return lambda: log.read_text().splitlines()


def _replace_paths(round_file, paths, drop_root=False):
    """Rewrite a one-part round's clip paths (in its part file) and drop
    its dataset root (in its index), as a hand-made round could hold
    them."""
    import json
    part = part_path(round_file, 0, 1)
    with np.load(part) as z:
        arrays = {k: z[k] for k in z.files}
    arrays['paths_json'] = np.frombuffer(json.dumps(paths).encode(),
                                         np.uint8)
    np.savez_compressed(part, **arrays)
    if drop_root:
        with np.load(round_file) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays['meta']))
        del meta['data_root']
        arrays['meta'] = np.array(json.dumps(meta))
        np.savez(round_file, **arrays)


def test_only_files_under_the_dataset_root_are_read(
        timecode_clips, tmp_path, request_counter, opened, capsys):
    """A round file listing a URL and files outside the dataset root (one
    through '..'): no request reaches the server, neither file is opened,
    each is counted as not read; the other clips are shown."""
    url, requests = request_counter
    data = tmp_path / 'data'
    shutil.copytree(timecode_clips, data)
    outside = tmp_path / 'outside'
    outside.mkdir()
    shutil.copy(timecode_clips / 'clip1.mp4', outside / 'secret.mp4')
    shutil.copy(timecode_clips / 'clip2.mp4', outside / 'escape.mp4')
    work = tmp_path / 'work'
    save_fitted_rounds(work, timecode_extract_set(str(data / 'labelled.csv')),
                       ['final'])
    round_file = round_path(str(work), 'final')
    assert load_round(round_file).data_root == str(data)
    paths = load_round(round_file).paths
    hostile = {0: f'{url}/clip0.mp4', 1: str(outside / 'secret.mp4'),
               2: f'{data}/../outside/escape.mp4'}
    for i, path in hostile.items():
        paths[i] = path
    _replace_paths(round_file, paths)
    built = len(opened())  # the dataset's build

    assert main([str(work), '--workers', '1']) == 0
    out, err = capsys.readouterr()
    assert requests == []
    shown = opened()[built:]
    assert not any('outside' in p or p.startswith('http') for p in shown)
    assert {osp.basename(p) for p in shown} == {'clip3.mp4', 'clip4.mp4',
                                                'clip5.mp4'}
    assert f'clips are read only under {data} (the dataset root recorded' \
        in out
    assert '0 failed, 3 not read' in out
    assert ('note: 3 clips not read (outside_root: 2, url: 1): the gallery '
            'reads only files under the dataset root, never a URL') in err
    assert f"not read '{url}/clip0.mp4': url: a URL, never fetched" in err
    assert f"not read '{outside / 'secret.mp4'}': outside_root: outside " \
        f'the dataset root {data}' in err
    page = outline(work / 'gallery' / 'index.html')
    clips = {c['index']: c for s in page.sections.values()
             for card in s['cards'] for c in card['clips']}
    assert {i for i, c in clips.items() if c['failed']} == set(hostile)
    assert 'not read<br>(url)' in (work / 'gallery' / 'index.html').read_text()

    # --data-root chooses another root: now only its files are read.
    capsys.readouterr()
    assert main([str(work), '--workers', '1', '--data-root', str(outside),
                 '--out', str(tmp_path / 'g2')]) == 0
    out, _ = capsys.readouterr()
    assert '0 failed, 4 not read' in out and requests == []
    assert str(outside / 'secret.mp4') in opened()


def test_a_round_file_without_a_root_shows_no_clip(timecode_clips, tmp_path,
                                                   opened):
    work = tmp_path / 'work'
    dataset = timecode_extract_set(str(timecode_clips / 'labelled.csv'))
    save_fitted_rounds(work, dataset, ['final'])
    round_file = round_path(str(work), 'final')
    _replace_paths(round_file, load_round(round_file).paths, drop_root=True)
    before = opened()  # the dataset's build
    report = build_gallery(str(work), out_dir=str(tmp_path / 'g'),
                           workers=1, progress=False)
    assert opened() == before and report.num_clips == 0
    assert len(report.refused) == 6 and all(
        why == 'no_root: its round file records no dataset root: pass '
        '--data-root' for why in report.refused.values())
    report = build_gallery(str(work), out_dir=str(tmp_path / 'g'),
                           workers=1, progress=False,
                           data_root=str(timecode_clips))
    assert report.refused == {} and report.num_clips == 6


def test_bad_arguments_get_one_line(timecode_clips, tmp_path, capsys):
    dataset = timecode_extract_set(str(timecode_clips / 'labelled.csv'))
    save_fitted_rounds(tmp_path, dataset, ['final'])
    for flag in ('--top-clusters', '--clips-per-cluster', '--workers'):
        with pytest.raises(SystemExit):
            main([str(tmp_path), flag, '0'])
        err = capsys.readouterr().err
        assert f'argument {flag}: must be >= 1, got 0' in err
    (tmp_path / 'a_file').write_text('')
    for args, says in (
            (['--data-root', str(tmp_path / 'nowhere')],
             f'--data-root {tmp_path / "nowhere"} is not a folder'),
            (['--out', str(tmp_path / 'a_file')],
             f'cannot write the gallery into {tmp_path / "a_file"}: ')):
        assert main([str(tmp_path), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f'visualize_clusters: {says}')
        assert err.count('\n') == 1
