"""The official XDC release (github.com/HumamAlwassel/XDC, release
``model_weights``): one :class:`PretrainedCfg` per model.

The release ships only R(2+1)D-18 video encoders, in the key layout of
torchvision's ``VideoResNet`` without ``fc``, each as a PyTorch ``.pth`` and
as the Caffe2 ``.pkl`` it was converted from. File names carry the first 8
hex digits of the file's sha256 (torch.hub's convention).
"""
import dataclasses
import os
from typing import Dict, Optional

BASE_URL = ('https://github.com/HumamAlwassel/XDC/releases/download/'
            'model_weights/')
#: Environment variable overriding :data:`BASE_URL` (a mirror, a ``file://``
#: folder laid out like the release).
BASE_URL_ENV = 'XDC_WEIGHTS_BASE_URL'
DEFAULT_PRETRAINING = 'r2plus1d_18_xdc_ig65m_kinetics'
XDC_SCHEME = 'xdc://'


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """One released model. Accuracies are the release README's: top-1
    video-level, full fine-tuning, mean over the three splits."""
    name: str
    pretrained_on: str
    ucf101: float
    hmdb51: float
    pth_hash: str
    pkl_hash: str

    @property
    def file_name(self) -> str:
        return f'{self.name}-{self.pth_hash}.pth'

    @property
    def pkl_file_name(self) -> str:
        return f'{self.name}-{self.pkl_hash}.pkl'

    def url(self, base_url: Optional[str] = None) -> str:
        return _join_url(base_url or base_url_from_env(), self.file_name)

    def pkl_url(self, base_url: Optional[str] = None) -> str:
        return _join_url(base_url or base_url_from_env(), self.pkl_file_name)


PRETRAINED_CFGS: Dict[str, PretrainedCfg] = {cfg.name: cfg for cfg in (
    PretrainedCfg('r2plus1d_18_xdc_ig65m_kinetics', 'XDC on IG-Kinetics',
                  95.5, 68.9, 'f24f6ffb', '3ece601e'),
    PretrainedCfg('r2plus1d_18_xdc_ig65m_random', 'XDC on IG-Random',
                  94.6, 66.5, '189d23f4', 'dcd2dc42'),
    PretrainedCfg('r2plus1d_18_xdc_audioset', 'XDC on AudioSet',
                  93.0, 63.7, 'f29ffe8f', '6508c8a5'),
    PretrainedCfg('r2plus1d_18_fs_kinetics', 'fully-supervised Kinetics',
                  94.2, 65.1, '622bdad9', '1b1f26af'),
    PretrainedCfg('r2plus1d_18_fs_imagenet', 'fully-supervised ImageNet',
                  84.0, 48.1, 'ff446670', '0ee8b845'),
)}


def base_url_from_env() -> str:
    return os.environ.get(BASE_URL_ENV) or BASE_URL


def _join_url(base: str, file_name: str) -> str:
    return base.rstrip('/') + '/' + file_name


def release_name(source: str) -> Optional[str]:
    """The release name ``source`` refers to (``xdc://<name>`` or a bare
    ``<name>`` of the table), else None (e.g. a local file path)."""
    if source.startswith(XDC_SCHEME):
        return source[len(XDC_SCHEME):]
    return source if source in PRETRAINED_CFGS else None


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The entry of ``name`` (``xdc://`` prefix allowed)."""
    name = release_name(name) or name
    try:
        return PRETRAINED_CFGS[name]
    except KeyError:
        raise KeyError(f'Unknown XDC pretraining {name!r}; choose one of '
                       f'{sorted(PRETRAINED_CFGS)}') from None


def list_pretrained() -> str:
    """The release table as text (``tools/download_weights.py --list``)."""
    header = ('name', 'pretrained on', 'UCF101', 'HMDB51', 'PyTorch file',
              'Caffe2 file')
    rows = [header] + [
        (c.name, c.pretrained_on, f'{c.ucf101:.1f}', f'{c.hmdb51:.1f}',
         c.file_name, c.pkl_file_name) for c in PRETRAINED_CFGS.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ['  '.join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
             for r in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    lines += ['', f'default: {DEFAULT_PRETRAINING}',
              f'base URL: {base_url_from_env()}',
              'UCF101/HMDB51: top-1 after full fine-tuning, mean of 3 splits '
              '(release README).']
    return '\n'.join(lines)
