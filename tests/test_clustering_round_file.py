"""round_file: what a clustering round saves, each rank its own clips, and
loading old files."""
import json
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from conftest import (TIMECODE_CLIP_CFG, TIMECODE_CLIP_DURATIONS,
                      TIMECODE_FPS, timecode_extract_set)

from xdc_plugin.clustering import FaissKMeans, FeaturePreprocessor
from xdc_plugin.clustering import round_file
from xdc_plugin.clustering.collectives import ProcessGroupCollectives
from xdc_plugin.clustering.kmeans import ClusterResult
from xdc_plugin.clustering.round_file import (FORMAT_VERSION, RoundFileError,
                                              list_round_files, load_round,
                                              part_path, round_path,
                                              save_round)
from xdc_plugin.data.decode import decode_clip
from xdc_plugin.data.transforms import AudioLogMel

CLIP = TIMECODE_CLIP_CFG


def extract_set(root, manifest='labelled.csv'):
    return timecode_extract_set(str(root / manifest))


def fitted_result(n, seed=0):
    """A real k-means fit (PCA + whitening) on three well separated blobs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, 6))
    x = (centres[np.arange(n) % 3] + rng.normal(0, 0.3, (n, 6))).astype(
        np.float32)
    kmeans = FaissKMeans(3, num_iters=10, seed=0,
                         preprocess=dict(pca_dim=4, whiten=True))
    return x, kmeans.fit(x)


def test_round_trip_keeps_clusters_distances_state_and_dataset(
        timecode_clips, tmp_path):
    dataset = extract_set(timecode_clips)
    x, video = fitted_result(len(dataset))
    _, audio = fitted_result(len(dataset), seed=1)
    path = round_path(str(tmp_path), 2)
    save_round(path, 2, 24, dict(video=video, audio=audio), dataset,
               variant='xdc', config='configs/x.yaml',
               metrics=dict(video=dict(nmi=0.5, ari=0.25, purity=0.75)),
               agreement=dict(xmodal_nmi=0.4))
    loaded = load_round(path)

    assert loaded.version == FORMAT_VERSION and loaded.missing == []
    assert (loaded.round_id, loaded.epoch, loaded.variant, loaded.config) == (
        2, 24, 'xdc', 'configs/x.yaml')
    assert loaded.metrics == dict(video=dict(nmi=0.5, ari=0.25, purity=0.75))
    assert loaded.agreement == dict(xmodal_nmi=0.4)
    assert loaded.paths == [str(timecode_clips / f'clip{i}.mp4')
                            for i in range(6)]
    assert loaded.data_root == str(timecode_clips)  # the manifest's folder
    assert loaded.classes == ['cat', 'dog']
    np.testing.assert_array_equal(loaded.gt_labels, [0, 1, 0, 1, 0, 1])
    got = loaded.sources['video']
    np.testing.assert_array_equal(got.labels, video.labels)
    np.testing.assert_array_equal(got.counts, video.counts)
    np.testing.assert_array_equal(got.centroids, video.centroids)

    # The saved state rebuilds the space k-means ran in: the distances and
    # the nearest centres recomputed there are the saved ones.
    space = FeaturePreprocessor.from_state_dict(got.preprocess)
    assert (space.pca_dim, space.whiten, space.out_dim) == (4, True, 4)
    y = space.transform(x)
    dist = np.linalg.norm(y[:, None] - got.centroids[None], axis=2)
    np.testing.assert_array_equal(dist.argmin(1), got.labels)
    np.testing.assert_allclose(dist[np.arange(len(y)), got.labels],
                               got.distances, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.tightness(), [
        got.distances[got.labels == k].mean() for k in range(3)], rtol=1e-6)


def test_clip_windows_reproduce_the_extracted_clip(timecode_clips, tmp_path):
    """The recorded window, decoded again, gives exactly what the
    extraction pipeline fed the audio encoder."""
    dataset = extract_set(timecode_clips)
    _, result = fitted_result(len(dataset))
    save_round(str(tmp_path / 'round_0.npz'), 0, 0,
               dict(audio=result), dataset)
    windows = load_round(str(tmp_path / 'round_0.npz')).windows
    span = CLIP['num_frames'] / TIMECODE_FPS
    np.testing.assert_allclose(
        windows.start_sec, [(d - span) / 2 for d in TIMECODE_CLIP_DURATIONS])
    np.testing.assert_array_equal(windows.frame_rate, TIMECODE_FPS)
    cfg = windows.clip_cfg
    logmel = AudioLogMel(cfg['n_mels'], cfg['hop_ms'], cfg['win_ms'])
    for i in (0, 1):
        _, audio = decode_clip(
            str(timecode_clips / f'clip{i}.mp4'), windows.start_sec[i],
            cfg['num_frames'], windows.frame_rate[i], cfg['audio_duration'],
            cfg['sample_rate'])
        expected = dataset[i]['audio']
        spectrogram = logmel(dict(audio=audio,
                                  sample_rate=cfg['sample_rate']))['audio']
        torch.testing.assert_close(spectrogram, expected, rtol=0, atol=0)


def test_per_cluster_purity_majority_and_unextracted_clips(timecode_clips,
                                                           tmp_path):
    dataset = extract_set(timecode_clips)  # labels 0 1 0 1 0 1
    labels = np.array([0, 1, 0, 1, 1, -1])  # clip 5 failed to decode
    distances = np.array([1, 2, 3, 4, 5, np.nan], np.float32)
    result = ClusterResult(labels=labels, centroids=np.zeros((2, 3)),
                           inertia=0.0, num_resplit=0,
                           counts=np.array([2, 3]), distances=distances)
    save_round(str(tmp_path / 'round_1.npz'), 1, 1, dict(joint=result),
               dataset)
    joint = load_round(str(tmp_path / 'round_1.npz')).sources['joint']
    np.testing.assert_allclose(joint.purity, [1.0, 2 / 3])
    np.testing.assert_array_equal(joint.majority, [0, 1])
    np.testing.assert_array_equal(joint.label_counts, [[2, 0], [1, 2]])
    np.testing.assert_allclose(joint.tightness(), [2.0, 11 / 3])
    assert joint.preprocess is None and np.isnan(joint.distances[5])


def test_a_dataset_without_labels_saves_no_purity(timecode_clips, tmp_path):
    dataset = extract_set(timecode_clips, 'unlabelled.csv')
    _, result = fitted_result(len(dataset))
    save_round(str(tmp_path / 'round_0.npz'), 0, 0, dict(video=result),
               dataset)
    loaded = load_round(str(tmp_path / 'round_0.npz'))
    assert not loaded.has_labels and loaded.missing == []
    assert loaded.classes is None
    video = loaded.sources['video']
    assert video.purity is None and video.majority is None
    assert np.isfinite(video.tightness()).all()


def test_an_old_file_loads_and_names_what_it_lacks(tmp_path):
    path = tmp_path / 'clusters' / 'round_3.npz'
    path.parent.mkdir()
    labels = np.array([0, 1, 1, 2, -1])
    np.savez(path, video_labels=labels, video_centroids=np.zeros((3, 4)),
             audio_labels=labels, audio_centroids=np.ones((3, 4)))
    loaded = load_round(str(path))
    assert loaded.version == 1 and loaded.round_id == 3
    assert set(loaded.sources) == {'video', 'audio'}
    np.testing.assert_array_equal(loaded.sources['audio'].counts, [1, 2, 1])
    assert loaded.sources['video'].distances is None
    assert set(loaded.missing) == {'distances', 'preprocess', 'paths',
                                   'labels', 'windows', 'metrics', 'run'}
    lines = loaded.describe_missing()
    assert any(line.startswith('distances: cannot show the clips nearest')
               for line in lines)
    assert list_round_files(str(tmp_path)) == {3: str(path)}


def test_rounds_are_listed_in_order_with_final_last(tmp_path):
    (tmp_path / 'clusters').mkdir()
    for rid in ('final', 10, 2, 0):
        np.savez(round_path(str(tmp_path), rid), video_labels=np.zeros(2, int),
                 video_centroids=np.zeros((1, 2)))
    (tmp_path / 'clusters' / 'round_x.npz').write_bytes(b'')
    assert list(list_round_files(str(tmp_path))) == [0, 2, 10, 'final']


def test_unreadable_and_newer_files_raise_a_clear_error(tmp_path):
    bad = tmp_path / 'round_0.npz'
    bad.write_bytes(b'not a zip file at all')
    with pytest.raises(RoundFileError, match='not a readable round file'):
        load_round(str(bad))
    newer = tmp_path / 'round_1.npz'
    np.savez(newer, format_version=np.array(FORMAT_VERSION + 1),
             meta=np.array('{}'))
    with pytest.raises(RoundFileError, match='newer than this code reads'):
        load_round(str(newer))
    foreign = tmp_path / 'round_2.npz'
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(RoundFileError, match='not a round file'):
        load_round(str(foreign))
    _, result = fitted_result(6)
    with pytest.raises(RoundFileError, match='neither a number nor'):
        save_round(str(tmp_path / 'round_4.npz'), '../x', 0,
                   dict(video=result))
    save_round(str(tmp_path / 'round_4.npz'), 4, 0, dict(video=result))
    with np.load(tmp_path / 'round_4.npz') as z:
        arrays = dict(z)
    meta = json.loads(str(arrays['meta']))
    arrays['meta'] = np.array(json.dumps(dict(meta, round='../../evil')))
    np.savez(tmp_path / 'round_4.npz', **arrays)
    with pytest.raises(RoundFileError, match='neither a number nor'):
        load_round(str(tmp_path / 'round_4.npz'))
    np.savez(tmp_path / 'round_4.npz', **dict(
        arrays, meta=np.array(json.dumps(dict(meta, data_root=['/'])))))
    with pytest.raises(RoundFileError, match=r"data_root \['/'\] is not"):
        load_round(str(tmp_path / 'round_4.npz'))
    np.savez(tmp_path / 'round_4.npz', **dict(
        arrays, meta=np.array(json.dumps(meta))))
    part = part_path(str(tmp_path / 'round_4.npz'), 0, 1)
    with np.load(part) as z:
        part_arrays = dict(z)
    for paths in ({'a': 1}, ['a.mp4', 3]):  # the paths are in the parts
        np.savez(part, **part_arrays, paths_json=np.frombuffer(
            json.dumps(paths).encode(), np.uint8))
        with pytest.raises(RoundFileError,
                           match='paths_json is not a list of paths'):
            load_round(str(tmp_path / 'round_4.npz'))
    hostile = tmp_path / 'round_3.npz'
    np.savez(hostile, video_labels=np.array([{'a': 1}], dtype=object),
             video_centroids=np.zeros(1))
    with pytest.raises(RoundFileError, match='not a readable round file'):
        load_round(str(hostile))


def test_the_hook_writes_its_run_into_the_round_files(tiny_xdc_run):
    work, runner = tiny_xdc_run
    hook = next(h for h in runner.hooks
                if type(h).__name__ == 'CrossModalClusteringHook')
    dataset = runner.train_dataloader.dataset
    for round_id, epoch in ((0, 0), ('final', 1)):
        loaded = load_round(round_path(str(work), round_id))
        assert loaded.missing == [] and loaded.has_labels
        assert (loaded.round_id, loaded.epoch, loaded.variant) == (
            round_id, epoch, 'xdc')
        assert loaded.config.endswith('xdc_demo.yaml')
        records = [r for r in hook.history if r['round'] == round_id]
        assert loaded.metrics == {
            r['source']: {m: r[m] for m in ('nmi', 'ari', 'purity')}
            for r in records}
        assert loaded.agreement == {'xmodal_nmi': records[0]['xmodal_nmi']}
        assert loaded.paths == [osp.abspath(dataset.get_data_info(i)['path'])
                                for i in range(9)]
        assert all(osp.isfile(p) for p in loaded.paths)
        assert loaded.classes == list(dataset.metainfo['classes'])
        for clusters in loaded.sources.values():
            assert clusters.counts.sum() == 9
            assert (clusters.distances >= 0).all()
        # 3 s demo clips at 15 fps: the 8-frame clip is centred.
        np.testing.assert_allclose(loaded.windows.start_sec,
                                   (3.0 - 8 / 15) / 2)


def ranks_of(world_size):
    """Collectives of each rank of ``world_size`` ranks, for calling
    ``save_round`` of every rank in turn in one process (its one collective
    sums the failures: none here)."""
    return [SimpleNamespace(rank=r, world_size=world_size,
                            all_reduce_sum=lambda tensor: tensor)
            for r in range(world_size)]


def save_by_ranks(path, results, dataset, world_size):
    for collectives in reversed(ranks_of(world_size)):  # rank 0 last
        save_round(path, 1, 2, results, dataset, variant='xdc',
                   collectives=collectives)


def test_parts_of_any_world_size_load_as_the_same_round(timecode_clips,
                                                        tmp_path):
    dataset = extract_set(timecode_clips)
    _, video = fitted_result(len(dataset))
    whole = round_path(str(tmp_path / 'one'), 1)
    save_by_ranks(whole, dict(video=video), dataset, 1)
    expected = load_round(whole)
    # 4 ranks for 6 clips: parts of 1 and 2 clips; 8 ranks: empty parts.
    for world in (4, 8):
        path = round_path(str(tmp_path / f'world{world}'), 1)
        save_by_ranks(path, dict(video=video), dataset, world)
        loaded = load_round(path)
        assert loaded.version == FORMAT_VERSION == 3
        assert loaded.paths == expected.paths
        for name in ('gt_labels', ):
            np.testing.assert_array_equal(getattr(loaded, name),
                                          getattr(expected, name))
        np.testing.assert_array_equal(loaded.windows.start_sec,
                                      expected.windows.start_sec)
        got, want = loaded.sources['video'], expected.sources['video']
        assert got.labels.dtype == np.int32
        for name in ('labels', 'distances', 'centroids', 'counts', 'purity',
                     'majority', 'label_counts'):
            np.testing.assert_array_equal(getattr(got, name),
                                          getattr(want, name))
        assert list_round_files(str(tmp_path / f'world{world}')) == {1: path}


def _write_worker(rank, world_size, init_file, out_dir, dataset, results,
                  fail_rank):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    read, written = [], []
    get_data_info = dataset.get_data_info
    dataset.get_data_info = lambda i: read.append(i) or get_data_info(i)
    write = round_file._write_npz

    def recorded_write(arrays, path, *args, **kwargs):
        if rank == fail_rank:
            raise OSError(28, 'No space left on device')
        written.append(osp.basename(path))
        write(arrays, path, *args, **kwargs)

    round_file._write_npz = recorded_write
    error = None
    try:
        save_round(round_path(out_dir, 0), 0, 0, results, dataset,
                   collectives=ProcessGroupCollectives())
    except (OSError, RoundFileError) as exc:
        error = f'{type(exc).__name__}: {exc}'
    with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(read=read, written=written, error=error), f)
    torch_dist.destroy_process_group()


def write_by_two_ranks(tmp_path, dataset, results, fail_rank=-1):
    mp.start_processes(_write_worker, nprocs=2, start_method='fork', args=(
        2, str(tmp_path / 'init'), str(tmp_path), dataset, results,
        fail_rank))
    return [json.loads((tmp_path / f'rank{r}.json').read_text())
            for r in range(2)]


def test_each_rank_reads_and_writes_only_its_own_clips(timecode_clips,
                                                       tmp_path):
    dataset = extract_set(timecode_clips)
    _, video = fitted_result(len(dataset))
    _, audio = fitted_result(len(dataset), seed=1)
    results = dict(video=video, audio=audio)
    ranks = write_by_two_ranks(tmp_path, dataset, results)
    assert [r['error'] for r in ranks] == [None, None]
    # Rank 0 reads and writes the clips 0-2 only, plus the index file; the
    # index holds nothing per clip.
    assert sorted(ranks[0]['read']) == [0, 1, 2]
    assert sorted(ranks[1]['read']) == [3, 4, 5]
    assert ranks[0]['written'] == ['round_0.part-00000-of-00002.npz',
                                   'round_0.npz']
    assert ranks[1]['written'] == ['round_0.part-00001-of-00002.npz']
    path = round_path(str(tmp_path), 0)
    with np.load(path) as index:
        per_clip = [k for k in index.files if '_pca_' not in k and not
                    k.endswith(('_centroids', '_counts', 'meta', 'version'))]
    assert per_clip == []
    for part, rows in ((0, [0, 3]), (1, [3, 6])):
        with np.load(part_path(path, part, 2)) as arrays:
            assert arrays['rows'].tolist() == rows
            assert len(arrays['video_labels']) == 3
    loaded = load_round(path)
    for source, result in results.items():
        np.testing.assert_array_equal(loaded.sources[source].labels,
                                      result.labels)
        np.testing.assert_array_equal(loaded.sources[source].distances,
                                      result.distances)
    assert loaded.paths == [str(timecode_clips / f'clip{i}.mp4')
                            for i in range(6)]


def test_a_rank_that_cannot_write_its_part_stops_every_rank(timecode_clips,
                                                            tmp_path):
    dataset = extract_set(timecode_clips)
    _, video = fitted_result(len(dataset))
    ranks = write_by_two_ranks(tmp_path, dataset, dict(video=video),
                               fail_rank=1)
    assert ranks[1]['error'] == ('OSError: [Errno 28] No space left on '
                                 'device')
    assert ranks[0]['error'].startswith('RoundFileError: ')
    assert '1 other rank(s) could not write their part' in ranks[0]['error']
    # No index: the round is not listed.
    assert list_round_files(str(tmp_path)) == {}


def test_a_missing_or_foreign_part_is_a_clear_error(timecode_clips,
                                                    tmp_path):
    dataset = extract_set(timecode_clips)
    _, video = fitted_result(len(dataset))
    _, other = fitted_result(len(dataset), seed=1)
    path = round_path(str(tmp_path), 1)
    save_by_ranks(path, dict(video=video), dataset, 2)
    part = part_path(path, 1, 2)
    kept = open(part, 'rb').read()
    os.remove(part)
    with pytest.raises(RoundFileError,
                       match='incomplete round: part 1 of 2 is missing'):
        load_round(path)
    # A part of another fit of the same round (a run stopped while writing
    # the round again) is never mixed in.
    save_round(path, 1, 2, dict(video=other), dataset,
               collectives=ranks_of(2)[1])
    with pytest.raises(RoundFileError, match='another write of this round'):
        load_round(path)
    open(part, 'wb').write(kept)
    assert load_round(path).num_clips == 6


def test_a_format_2_file_still_loads(tmp_path):
    """The single file rank 0 wrote before format 3 (layout of
    ``xdc_plugin`` until this format, int64 labels, stored statistics)."""
    meta = dict(classes=['cat', 'dog'], clip_cfg=dict(CLIP), round=4,
                epoch=8, variant='xdc', config='configs/x.yaml',
                metrics=dict(video=dict(nmi=0.5, ari=0.2, purity=0.75)),
                agreement={}, sources=['video'],
                preprocess=dict(video=dict(
                    pca_dim=None, whiten=False, l2_normalize=True,
                    eps=1e-6, in_dim=2, out_dim=2)))
    paths = ['/data/a.mp4', '/data/b.mp4', '/data/c.mp4']
    path = round_path(str(tmp_path), 4)
    os.makedirs(osp.dirname(path))
    np.savez_compressed(
        path, format_version=np.array(2), meta=np.array(json.dumps(meta)),
        paths_json=np.frombuffer(json.dumps(paths).encode(), np.uint8),
        gt_labels=np.array([0, 1, 1]), clip_start_sec=np.array([1., 2, 3]),
        clip_frame_rate=np.array([15., 15, 30]),
        video_labels=np.array([1, 0, 0]),
        video_centroids=np.zeros((2, 2), np.float32),
        video_counts=np.array([2, 1]),
        video_distances=np.array([0.5, 1.5, 2.5], np.float32),
        video_label_counts=np.array([[0, 2], [1, 0]]),
        video_purity=np.array([1.0, 1.0]), video_majority=np.array([1, 0]))
    loaded = load_round(path)
    assert (loaded.version, loaded.round_id, loaded.epoch) == (2, 4, 8)
    assert loaded.missing == [] and loaded.paths == paths
    assert loaded.classes == ['cat', 'dog'] and loaded.has_labels
    np.testing.assert_array_equal(loaded.windows.frame_rate, [15, 15, 30])
    video = loaded.sources['video']
    assert video.labels.dtype == np.int32
    np.testing.assert_array_equal(video.labels, [1, 0, 0])
    np.testing.assert_array_equal(video.label_counts, [[0, 2], [1, 0]])
    np.testing.assert_allclose(video.tightness(), [2.0, 0.5])
    assert list_round_files(str(tmp_path)) == {4: path}
