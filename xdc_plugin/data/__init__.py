"""Audio-visual data: decoding, file lists and checks, the dataset, its
registered transforms and the demo data. Importing registers the datasets
and transforms in the ``xdc`` registries."""
from xdc_plugin.data.augment import (AudioGain, AudioMask, VideoColorJitter,
                                     VideoRandomResizedCrop)
from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.data.dataset import AVClipDataset
from xdc_plugin.data.decode import (DecodeError, VideoInfo, decode_clip,
                                    decode_clips, probe)
from xdc_plugin.data.demo import DemoAVDataset, make_demo_dataset
from xdc_plugin.data.file_check import CheckSettings, check_file, check_files
from xdc_plugin.data.manifest import FileList, read_file_list
from xdc_plugin.data.manifest_check import ManifestReport, check_manifest
from xdc_plugin.data.seeding import seeded_rng
from xdc_plugin.data.transforms import (AudioLogMel, DecodeAVClip,
                                        PackAVInputs, SampleClip, VideoCrop,
                                        VideoFlip, VideoResize)

__all__ = [
    'AudioGain', 'AudioMask', 'VideoColorJitter', 'VideoRandomResizedCrop',
    'AVClipDataset', 'ClipSpec', 'DemoAVDataset', 'seeded_rng',
    'DecodeError',
    'VideoInfo', 'decode_clip', 'decode_clips', 'probe', 'make_demo_dataset',
    'CheckSettings', 'check_file', 'check_files', 'FileList',
    'read_file_list', 'ManifestReport', 'check_manifest', 'AudioLogMel',
    'DecodeAVClip', 'PackAVInputs', 'SampleClip', 'VideoCrop', 'VideoFlip',
    'VideoResize'
]
