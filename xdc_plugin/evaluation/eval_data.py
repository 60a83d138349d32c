"""The evaluation dataset of a manifest: the data layer's ``AVClipDataset``
with a deterministic pipeline of ``num_clips`` uniformly spaced clips (or
audio windows) per file, centre crops, and the clip (``ClipSpec``) the
encoder was trained on.

Video clips are ``num_frames`` frames at ``frame_rate`` resized to
``short_side`` and centre-cropped to ``crop_size``; each comes with its
``audio_duration`` audio window centred on it, as in training. When no
video is evaluated (audio-only data such as ESC-50 and DCASE, or
``--modality audio``) only audio is decoded and the clips are the audio
windows themselves, spread uniformly over the file. A file that fails to
decode is left out of the features (the extraction counts it): evaluation
never stops on bad files.
"""
from typing import Optional, Sequence

from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.data.dataset import AVClipDataset


def eval_pipeline(spec: ClipSpec, num_clips: int,
                  modalities: Sequence[str]) -> list:
    """Transform configs of the evaluation pipeline of clip ``spec``."""
    audio_only = 'video' not in modalities
    sample = dict(spec.transform_args('SampleClip'), num_clips=num_clips,
                  mode='uniform',
                  clip_duration=spec.audio_duration if audio_only else None)
    pipeline = [
        dict(type='SampleClip', **sample),
        dict(type='DecodeAVClip', **spec.transform_args('DecodeAVClip')),
    ]
    if 'video' in modalities:
        pipeline += [
            dict(type='VideoResize', **spec.transform_args('VideoResize')),
            dict(type='VideoCrop', **spec.transform_args('VideoCrop'),
                 random=False)]
    if 'audio' in modalities:
        pipeline.append(dict(type='AudioLogMel',
                             **spec.transform_args('AudioLogMel')))
    pipeline.append(dict(type='PackAVInputs'))
    return pipeline


def build_eval_dataset(manifest: str, label_column: Optional[str],
                       spec: ClipSpec, num_clips: int,
                       modalities: Sequence[str], data_root: str = '',
                       classes=None, check_cache=True) -> AVClipDataset:
    """The manifest's files that have the streams of ``modalities`` (and
    pass the data layer's check), with the evaluation pipeline of clip
    ``spec``; ``classes`` fixes the order of string labels."""
    return AVClipDataset(
        ann_file=manifest, data_root=data_root, label_column=label_column,
        modalities=tuple(modalities),
        pipeline=eval_pipeline(spec, num_clips, modalities),
        metainfo=dict(classes=classes) if classes else None,
        check_cache=check_cache,
        # Undecodable files are left out and counted, never fatal here.
        max_undecodable_fraction=1.0)
