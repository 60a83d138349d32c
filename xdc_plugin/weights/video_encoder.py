"""``xdc_video_encoder``: the official hub entry point, loading strictly."""
from typing import Optional

from xdc_plugin.encoders import R2Plus1D18, init_classifier
from xdc_plugin.weights.loading import load_pretrained_weights
from xdc_plugin.weights.release import DEFAULT_PRETRAINING, XDC_SCHEME


def xdc_video_encoder(pretraining: Optional[str] = DEFAULT_PRETRAINING,
                      num_classes: int = 400, progress: bool = True,
                      weights: Optional[str] = None, *,
                      bn_momentum: float = 0.1,
                      model_dir: Optional[str] = None,
                      offline: Optional[bool] = None,
                      **kwargs) -> R2Plus1D18:
    """R(2+1)D-18 with released XDC weights (all layers but the fc).

    Same name and defaults as the official hub entry point, with strict
    loading. The fc (``512 x num_classes``; ``num_classes=0`` gives no fc
    and 512-d pooled features) is freshly initialised: weight ~ N(0, 0.01),
    bias 0.

    Args:
        pretraining: a name of :data:`PRETRAINED_CFGS` (``tools/
            download_weights.py --list`` prints them), or None for no
            weights.
        num_classes: size of the new classifier.
        progress: show a download progress bar.
        weights: a local ``.pth`` in the official layout (or one written
            by ``tools/export_encoder.py`` / ``convert_caffe2_weights.py``)
            used instead of the release; a ``-<hex>`` hash prefix in its
            name is verified.
        bn_momentum: PyTorch BatchNorm momentum of the returned model.
            The release builds its model with ``momentum=0.9`` to copy
            Caffe2, but PyTorch's momentum is the weight of the *new* batch
            (Caffe2's is that of the running value), so 0.9 makes the
            running statistics follow the last batch almost entirely when
            fine-tuning. We default to PyTorch's 0.1 (the Caffe2 0.9
            semantic, up to the 0.9/0.1 swap); pass ``bn_momentum=0.9`` to
            reproduce the official object exactly. Eval-mode outputs do not
            depend on it.
        model_dir: weights cache (default ``torch.hub.get_dir()/
            checkpoints``).
        offline: never download (default: ``XDC_OFFLINE`` env variable).
        **kwargs: passed to :class:`R2Plus1D18` (e.g. ``dropout``).
    """
    model = R2Plus1D18(num_classes=num_classes, bn_momentum=bn_momentum,
                       **kwargs)
    if weights is not None:
        load_pretrained_weights(model, weights)
    elif pretraining is not None:
        load_pretrained_weights(model, XDC_SCHEME + pretraining,
                                model_dir=model_dir, progress=progress,
                                offline=offline)
    if model.fc is not None:
        init_classifier(model.fc)
    return model
