"""Weights files on disk: sha256 prefixes, torch.hub's cache, downloads and
the offline switch."""
import hashlib
import os
import os.path as osp
import re
from typing import Optional

import torch

from xdc_plugin.weights.errors import IncompatibleWeightsError
from xdc_plugin.weights.release import (DEFAULT_PRETRAINING,
                                        get_pretrained_cfg)

#: Environment variable: when set to 1/true/yes nothing is downloaded; the
#: weights must already be in the cache (or be given as a local file).
OFFLINE_ENV = 'XDC_OFFLINE'
# torch.hub's ``<name>-<first hex digits of sha256>.<ext>``; stricter than
# ``torch.hub.HASH_REGEX`` (at least 8 digits, a weights extension) so that
# a name such as ``epoch-1.pth`` is not read as a hash.
_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.(?:pth|pt|pkl)$')


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def hash_prefix_in_name(path: str) -> Optional[str]:
    """The sha256 prefix of a ``<name>-<hex>.pth`` file name, else None."""
    match = _HASH_IN_NAME.search(osp.basename(path))
    return match.group(1) if match else None


def check_file_hash(path: str, expected: Optional[str] = None) -> None:
    """Refuse a file whose sha256 does not start with ``expected`` (by
    default the prefix in its name; no prefix in the name, no check)."""
    expected = expected or hash_prefix_in_name(path)
    if not expected:
        return
    digest = sha256_of(path)
    if not digest.startswith(expected):
        raise IncompatibleWeightsError(
            f'{path}: sha256 {digest} does not start with {expected!r} '
            '(the hash prefix its name promises). The file is corrupt, '
            'truncated or not the released one; delete it and download '
            'again.')


def offline_from_env() -> bool:
    return os.environ.get(OFFLINE_ENV, '').lower() in ('1', 'true', 'yes')


def default_model_dir() -> str:
    """torch.hub's cache folder for weights: ``<hub_dir>/checkpoints``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def download_pretrained(pretraining: str = DEFAULT_PRETRAINING, *,
                        model_dir: Optional[str] = None,
                        base_url: Optional[str] = None,
                        progress: bool = True,
                        offline: Optional[bool] = None,
                        caffe2: bool = False) -> str:
    """Path of the released ``.pth`` (``caffe2=True``: the Caffe2 ``.pkl``)
    in the cache, downloading it if needed.

    The cache is torch.hub's (``model_dir`` defaults to
    ``torch.hub.get_dir()/checkpoints``, so ``TORCH_HOME`` moves it) and the
    file keeps its release name. A cached file is checked against the hash
    prefix of its name and used without any network access. With
    ``offline=True`` (or ``XDC_OFFLINE=1``) a missing file is an error
    instead of a download. Downloads go through
    ``torch.hub.download_url_to_file``, which checks the hash before moving
    the file into place.
    """
    cfg = get_pretrained_cfg(pretraining)
    if caffe2:
        file_name, file_hash = cfg.pkl_file_name, cfg.pkl_hash
        url = cfg.pkl_url(base_url)
    else:
        file_name, file_hash, url = (cfg.file_name, cfg.pth_hash,
                                     cfg.url(base_url))
    model_dir = model_dir or default_model_dir()
    path = osp.join(model_dir, file_name)
    if osp.isfile(path):
        check_file_hash(path, file_hash)
        return path
    if offline if offline is not None else offline_from_env():
        raise FileNotFoundError(
            f'XDC weights {cfg.name!r} are not in the cache ({path}) and '
            f'downloads are disabled ({OFFLINE_ENV} or offline=True). Put '
            f'{url} there, or pass weights=<local file>.')
    os.makedirs(model_dir, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, path, hash_prefix=file_hash,
                                       progress=progress)
    except RuntimeError as exc:
        if 'invalid hash value' in str(exc):
            raise IncompatibleWeightsError(
                f'{url}: {exc}; the download was discarded.') from exc
        raise
    return path
