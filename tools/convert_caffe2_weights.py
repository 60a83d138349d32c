"""Convert a Caffe2 (VMZ) ``.pkl`` of the XDC release into a ``.pth`` in the
official PyTorch layout (no fc), loadable by ``xdc_video_encoder(weights=)``.

    python tools/convert_caffe2_weights.py \\
        r2plus1d_18_xdc_ig65m_kinetics-3ece601e.pkl xdc_ig65m_kinetics.pth
    python tools/convert_caffe2_weights.py IN.pkl OUT_DIR --hash-name NAME

Every weight must come from exactly one blob of the right shape. The 400-way
``last_out_L*`` classifier, ``pred`` and ``*_momentum`` blobs are skipped;
any other unused blob, or a missing one, is an error listing them. The name
table is ``xdc_plugin.weights.caffe2_name_table`` (VMZ naming). The ``.pkl``
is read by a restricted unpickler: a file that names anything but numpy
arrays, dtypes, containers, strings and numbers is refused unexecuted.
"""
import argparse
import pickle

from xdc_plugin.weights import (CAFFE2_IGNORED, IncompatibleWeightsError,
                                convert_caffe2_blobs, read_caffe2_pkl,
                                save_hash_named, save_state_dict)


def convert(in_path, out_path, hash_name=None, ignore=()):
    blobs = read_caffe2_pkl(in_path)
    state_dict = convert_caffe2_blobs(
        blobs, ignore=tuple(CAFFE2_IGNORED) + tuple(ignore))
    if hash_name:
        return save_hash_named(state_dict, out_path, hash_name)
    return save_state_dict(state_dict, out_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('pkl', help='Caffe2 .pkl ({"blobs": {...}})')
    parser.add_argument('out', help='output .pth (a folder with --hash-name)')
    parser.add_argument('--hash-name', metavar='NAME',
                        help='save as OUT/NAME-<sha256[:8]>.pth')
    parser.add_argument('--ignore', action='append', default=[],
                        metavar='REGEX',
                        help='also skip blobs matching REGEX (repeatable)')
    args = parser.parse_args(argv)
    try:
        path = convert(args.pkl, args.out, args.hash_name, args.ignore)
    except (IncompatibleWeightsError, pickle.UnpicklingError,
            OSError) as exc:
        parser.exit(1, f'error: {exc}\n')
    print(path)
    return path


if __name__ == '__main__':
    main()
