"""Round reporting: quality records, scalars, log lines and history."""
import numpy as np
import pytest

from xdc_plugin.clustering import ClusterResult, cluster_quality
from xdc_plugin.engine.round.round_report import (format_history, format_round,
                                                  round_records, round_scalars)


def result(labels):
    labels = np.asarray(labels)
    return ClusterResult(labels=labels, centroids=np.zeros((3, 2)),
                         inertia=1.5, num_resplit=1,
                         counts=np.bincount(labels[labels >= 0],
                                            minlength=3),
                         distances=np.ones(len(labels), np.float32))


def test_records_carry_quality_agreement_probe_and_timing():
    truth = np.array([0, 0, 1, 1, 2, 2, -1])
    video, audio = [0, 0, 1, 1, 2, 2, 1], [0, 1, 1, 2, 2, 0, -1]
    probe = dict(video_linear_top1=0.75, audio_knn_top1=0.5)
    records = round_records(2, 20, dict(video=result(video),
                                        audio=result(audio)), truth, probe,
                            features='bank', seconds=3.25)
    video_record, audio_record = records
    assert video_record['nmi'] == pytest.approx(1.0)
    assert audio_record['nmi'] == pytest.approx(
        cluster_quality(audio, truth)['nmi'])
    agreement = cluster_quality(video, audio)['nmi']
    assert video_record['xmodal_nmi'] == pytest.approx(agreement)
    assert video_record['video_linear_top1'] == 0.75
    assert 'audio_knn_top1' not in video_record
    assert (video_record['smallest'], video_record['largest']) == (2, 3)
    assert round_scalars(records) == {
        'xdc/video_nmi': video_record['nmi'],
        'xdc/video_ari': video_record['ari'],
        'xdc/video_purity': video_record['purity'],
        'xdc/audio_nmi': audio_record['nmi'],
        'xdc/audio_ari': audio_record['ari'],
        'xdc/audio_purity': audio_record['purity'],
        'xdc/xmodal_nmi': agreement, 'xdc/video_linear_top1': 0.75,
        'xdc/audio_knn_top1': 0.5}
    line = format_round(records)
    assert line.startswith('XDC round 2 (epoch 20, bank features, 3.2 s): ')
    assert 'video clusters NMI=1.000' in line and 'linear_top1=0.750' in line
    assert f'agreement NMI={agreement:.3f}' in line
    table = format_history(records).splitlines()
    assert table[0] == ('| round | epoch | source | nmi | ari | purity | '
                        'xmodal_nmi | linear_top1 | knn_top1 | resplit |')
    assert table[2].endswith('| 0.750 | - | 1 |')


def test_unlabelled_data_gives_sizes_but_no_quality():
    records = round_records('final', 3, dict(joint=result([0, 1, 2])),
                            np.full(3, -1))
    assert 'nmi' not in records[0] and 'xmodal_nmi' not in records[0]
    assert round_scalars(records) == {}
    assert format_round(records) == ('XDC round final (epoch 3): joint '
                                     'clusters sizes 1-1 resplit=1')
