"""The released XDC weights: list them, or fetch them into the cache.

    python tools/download_weights.py --list
    python tools/download_weights.py r2plus1d_18_xdc_ig65m_kinetics
    python tools/download_weights.py --caffe2 r2plus1d_18_xdc_audioset

Files go to torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), named as in
the release and checked against the hash prefix of their name; afterwards
``xdc_video_encoder(...)`` and ``xdc://<name>`` work offline
(``XDC_OFFLINE=1``).
"""
import argparse

from xdc_plugin.weights import (PRETRAINED_CFGS, download_pretrained,
                                list_pretrained)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('names', nargs='*', metavar='NAME',
                        help='released models to fetch: ' +
                        ', '.join(PRETRAINED_CFGS))
    parser.add_argument('--list', action='store_true',
                        help='print the release table')
    parser.add_argument('--caffe2', action='store_true',
                        help='fetch the Caffe2 .pkl instead (convert it with '
                        'tools/convert_caffe2_weights.py)')
    parser.add_argument('--model-dir', help='cache folder')
    args = parser.parse_args(argv)
    if args.list or not args.names:
        print(list_pretrained())
    for name in args.names:
        print(download_pretrained(name, model_dir=args.model_dir,
                                  caffe2=args.caffe2))


if __name__ == '__main__':
    main()
