"""Export the encoders of an XDC training checkpoint (mmengine format).

    python tools/export_encoder.py work_dirs/xdc/epoch_10.pth exported/
    python tools/export_encoder.py CKPT OUT_DIR --name xdc_k400 \
        [--trust-checkpoint]

Writes, and prints the paths of:

* ``OUT_DIR/<name>_video-<sha256[:8]>.pth``: the video encoder in the
  official release layout (no prefix, no fc), loadable by the official
  ``R2Plus1D18`` + ``load_state_dict(strict=False)``, by
  ``xdc_video_encoder(weights=...)`` and by ``torch.hub.load(<repo>,
  'xdc_video_encoder', source='local', weights=...)`` (width 1 only; the
  hash prefix in the name is torch.hub's ``check_hash`` convention);
* ``OUT_DIR/<name>_audio-<sha256[:8]>.pth``: the audio encoder's state dict
  (``audio_encoder.`` prefix removed; the release has no audio layout).

An encoder trained as a ``HostBackbone`` (mmaction2's X3D, a pytorchvideo
hub model, ...) is written in its backbone's own layout, which loads with
every key into the host's backbone built from the same config (see the
project page, "Host backbones").

The checkpoint is read with ``weights_only=True`` and the allow-list of
``xdc_plugin/engine/runner/checkpoint.py`` (what our training checkpoints
hold); ``--trust-checkpoint`` unpickles fully a checkpoint you made
yourself that holds more (e.g. one written by plain mmengine).
"""
import argparse

from xdc_plugin.engine.runner.checkpoint import load_training_checkpoint
from xdc_plugin.weights import export_encoders, export_name


def export(checkpoint, out_dir, name=None, trusted=False, width=None):
    """``{'video': path, 'audio': path or None}`` (see the module doc)."""
    state_dict = load_training_checkpoint(checkpoint, trusted=trusted)
    return export_encoders(state_dict, out_dir,
                           name or export_name(checkpoint), width)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='mmengine training checkpoint')
    parser.add_argument('out_dir')
    parser.add_argument('--name', help='file name stem (no "-"); default '
                        'xdc_<checkpoint stem>')
    parser.add_argument('--width', type=float, help='video encoder width '
                        'multiplier (default: inferred)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow a full unpickle of your own checkpoint')
    args = parser.parse_args(argv)
    try:
        paths = export(args.checkpoint, args.out_dir, args.name,
                       args.trust_checkpoint, args.width)
    except (ValueError, OSError) as exc:  # incl. IncompatibleWeightsError
        parser.exit(1, f'error: {exc}\n')
    print(f'video encoder: {paths["video"]}')
    if paths['audio']:
        print(f'audio encoder: {paths["audio"]}')
    else:
        print('audio encoder: none in the checkpoint')
    return paths


if __name__ == '__main__':
    main()
