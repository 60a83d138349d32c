"""ClipSpec: one clip read from a pipeline (configs or built transforms)
through one table, the log-mel frame count the transform really gives, and
the centred (feature-extraction) version of a training pipeline."""
import pytest
import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

from xdc_plugin.data.clip_spec import PIPELINE_ARGS, ClipSpec
from xdc_plugin.data.transforms import AudioLogMel, centred_pipeline
from xdc_plugin.registry import SCOPE, TRANSFORMS

TRAIN = [
    dict(type='SampleClip', num_frames=4, frame_rate=30, mode='random'),
    dict(type='DecodeAVClip', audio_duration=1.5, sample_rate=8000),
    dict(type='VideoResize', short_side=64),
    dict(type='VideoCrop', size=56, random=True),
    dict(type='VideoFlip', prob=0.5),
    dict(type='VideoColorJitter'),
    dict(type='AudioLogMel', n_mels=32, hop_ms=20),
    dict(type='AudioGain'),
    dict(type='PackAVInputs')]
SPEC = ClipSpec(num_frames=4, frame_rate=30, short_side=64, crop_size=56,
                audio_duration=1.5, sample_rate=8000, n_mels=32, hop_ms=20)


def _built(pipeline):
    with DefaultScope.overwrite_default_scope(SCOPE):
        return Compose(pipeline).transforms


def test_configs_and_built_transforms_give_the_same_clip():
    from_cfg = ClipSpec.from_pipeline(TRAIN)
    assert from_cfg == SPEC
    assert from_cfg.transforms == {'SampleClip', 'DecodeAVClip',
                                   'VideoResize', 'VideoCrop', 'AudioLogMel'}
    built = ClipSpec.from_pipeline(_built(TRAIN))
    assert built == SPEC and built.transforms == from_cfg.transforms
    # A scoped type name counts; what a pipeline does not say is default.
    assert ClipSpec.from_pipeline([dict(type='xdc.VideoCrop', size=32)]) == \
        ClipSpec(crop_size=32)
    assert ClipSpec.from_pipeline([]) == ClipSpec()
    # Given settings, then the pipeline's, which win.
    assert ClipSpec.from_pipeline(TRAIN[:1], num_frames=2, n_mels=64) == \
        ClipSpec(num_frames=4, frame_rate=30, n_mels=64)


@pytest.mark.parametrize('kind', sorted(PIPELINE_ARGS))
def test_every_table_row_is_an_argument_and_attribute_of_its_transform(
        kind):
    """A transform built with a spec's arguments reads back as that spec."""
    args = SPEC.transform_args(kind)
    (built, ) = _built([dict(type=kind, **args)])
    assert ClipSpec.from_pipeline([built]).transform_args(kind) == args


def test_transform_defaults_are_the_spec_defaults():
    default = ClipSpec()
    for kind in PIPELINE_ARGS:
        (built, ) = _built([dict(type=kind)])
        assert ClipSpec.from_pipeline([built]).transform_args(kind) == \
            default.transform_args(kind), kind


@pytest.mark.parametrize('duration, rate, hop_ms, win_ms', [
    (2.0, 16000, 10, 25), (2.0, 16000, 20, 25), (1.5, 8000, 20, 25),
    (0.96, 22050, 10, 30), (3.0, 44100, 15, 40)])
def test_logmel_frames_are_what_the_transform_gives(duration, rate, hop_ms,
                                                    win_ms):
    spec = ClipSpec(audio_duration=duration, sample_rate=rate, n_mels=24,
                    hop_ms=hop_ms, win_ms=win_ms)
    waveform = torch.randn(1, 1, round(duration * rate))
    out = AudioLogMel(24, hop_ms, win_ms)(dict(audio=waveform,
                                               sample_rate=rate))['audio']
    assert tuple(out.shape[1:]) == spec.audio_shape


def test_centred_pipeline_keeps_the_clip_and_drops_the_augmentations():
    centred = centred_pipeline(TRAIN)
    assert centred == [
        dict(type='SampleClip', num_frames=4, frame_rate=30, mode='center'),
        dict(type='DecodeAVClip', audio_duration=1.5, sample_rate=8000),
        dict(type='VideoResize', short_side=64),
        dict(type='VideoCrop', size=56, random=False),
        dict(type='AudioLogMel', n_mels=32, hop_ms=20),
        dict(type='PackAVInputs')]
    assert ClipSpec.from_pipeline(centred) == SPEC
    assert TRAIN[0]['mode'] == 'random'  # the train configs are untouched
    # Several clips per file become one centred clip.
    assert centred_pipeline([dict(type='SampleClip', num_clips=3,
                                  mode='uniform')]) == \
        [dict(type='SampleClip', mode='center')]


def test_a_random_resized_crop_becomes_resize_and_centre_crop():
    assert centred_pipeline([dict(type='xdc.VideoRandomResizedCrop',
                                  size=48, scale=[0.3, 1.0])]) == [
        dict(type='VideoResize', short_side=48),
        dict(type='VideoCrop', size=48, random=False)]


@TRANSFORMS.register_module(name='ForeignTransformOfTheTest', force=True)
class ForeignTransform(BaseTransform):
    """A transform that is not one of ours: nothing says its centred form."""

    def transform(self, results):
        return results


@pytest.mark.parametrize('kind', ['ForeignTransformOfTheTest',
                                  'NoSuchTransform'])
def test_a_transform_without_a_centred_form_is_refused(kind):
    with pytest.raises(ValueError, match=f'{kind} of the train pipeline has '
                       'no centred form'):
        centred_pipeline(TRAIN[:1] + [dict(type=kind)])
