"""The released XDC weights, with torch (and torchvision) only.

One job per module: :mod:`.release` (the table: names, URLs, hashes, the
release's UCF101/HMDB51 numbers), :mod:`.download` (hashes, torch.hub's
cache, downloads, ``XDC_OFFLINE``), :mod:`.loading` (strict loading of the
official layout), :mod:`.caffe2_pickle` and :mod:`.caffe2` (reading and
converting the Caffe2 files without unpickling code), :mod:`.export`
(hash-named files, splitting our training model into its encoders) and
:mod:`.video_encoder` (``xdc_video_encoder``, what ``hubconf.py`` serves).
mmengine's ``xdc://`` scheme lives in ``xdc_plugin.models.xdc_scheme``.
"""
from xdc_plugin.weights.caffe2 import (CAFFE2_IGNORED, caffe2_name_table,
                                       convert_caffe2_blobs)
from xdc_plugin.weights.caffe2_pickle import (Caffe2Unpickler,
                                              UnsafePickleError,
                                              read_caffe2_pkl)
from xdc_plugin.weights.download import (OFFLINE_ENV, check_file_hash,
                                         default_model_dir,
                                         download_pretrained,
                                         hash_prefix_in_name, sha256_of)
from xdc_plugin.weights.errors import IncompatibleWeightsError
from xdc_plugin.weights.export import (export_encoders, export_name,
                                       infer_width, save_hash_named,
                                       save_state_dict,
                                       split_training_state_dict)
from xdc_plugin.weights.loading import (FC_KEYS, check_state_dict,
                                        load_official_state_dict,
                                        load_pretrained_weights,
                                        read_weights_file, reference_model,
                                        resolve_weights)
from xdc_plugin.weights.release import (BASE_URL, BASE_URL_ENV,
                                        DEFAULT_PRETRAINING, PRETRAINED_CFGS,
                                        XDC_SCHEME, PretrainedCfg,
                                        get_pretrained_cfg, list_pretrained)
from xdc_plugin.weights.video_encoder import xdc_video_encoder

__all__ = [
    'CAFFE2_IGNORED', 'caffe2_name_table', 'convert_caffe2_blobs',
    'Caffe2Unpickler', 'UnsafePickleError', 'read_caffe2_pkl', 'OFFLINE_ENV',
    'check_file_hash', 'default_model_dir', 'download_pretrained',
    'hash_prefix_in_name', 'sha256_of', 'IncompatibleWeightsError',
    'export_encoders', 'export_name', 'infer_width', 'save_hash_named',
    'save_state_dict', 'split_training_state_dict', 'FC_KEYS',
    'check_state_dict', 'load_official_state_dict', 'load_pretrained_weights',
    'read_weights_file', 'reference_model', 'resolve_weights', 'BASE_URL',
    'BASE_URL_ENV', 'DEFAULT_PRETRAINING', 'PRETRAINED_CFGS', 'XDC_SCHEME',
    'PretrainedCfg', 'get_pretrained_cfg', 'list_pretrained',
    'xdc_video_encoder'
]
