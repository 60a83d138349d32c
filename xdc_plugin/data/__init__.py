"""Audio-visual data pipeline: decoding, dataset, transforms, wrappers,
demo data and manifest checks. Importing registers the datasets and
transforms in the ``xdc`` registries."""
from xdc_plugin.data.dataset import AVClipDataset, read_file_list
from xdc_plugin.data.decode import (DecodeError, VideoInfo, decode_clip,
                                    probe)
from xdc_plugin.data.demo import make_demo_dataset
from xdc_plugin.data.manifest import ManifestReport, check_manifest
from xdc_plugin.data.transforms import (AudioLogMel, DecodeAVClip,
                                        PackAVInputs, SampleClip, VideoCrop,
                                        VideoFlip, VideoResize,
                                        build_pipeline, default_pipeline)
from xdc_plugin.data.wrappers import PseudoLabelDataset

__all__ = [
    'AVClipDataset', 'read_file_list', 'DecodeError', 'VideoInfo',
    'decode_clip', 'probe', 'make_demo_dataset', 'ManifestReport',
    'check_manifest', 'AudioLogMel', 'DecodeAVClip', 'PackAVInputs',
    'SampleClip', 'VideoCrop', 'VideoFlip', 'VideoResize', 'build_pipeline',
    'default_pipeline', 'PseudoLabelDataset'
]
