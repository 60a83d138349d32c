"""Caffe2 ``.pkl`` files are read by a restricted unpickler: numpy arrays in
every pickle dialect such files come in load, a pickle that names any other
global is refused before anything runs."""
import io
import os
import os.path as osp
import pickle
import runpy
import struct

import numpy as np
import pytest

from xdc_plugin.weights import UnsafePickleError, read_caffe2_pkl

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO_DIR, 'tools', 'convert_caffe2_weights.py')

BLOBS = {'conv1_w': np.arange(24, dtype=np.float32).reshape(2, 3, 4),
         'conv1_spatbn_relu_riv': np.linspace(0.5, 2, 5),
         'model_iter': np.int64(120000), 'lr': 0.01}


class _Python2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python 2 ``str`` (``BINSTRING``), as
    the VMZ/Caffe2 tooling (Python 2) did; reading it needs latin1."""
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode('latin1') if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = _save_py2_str


def _python2_pickle(obj):
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _assert_blobs(read):
    assert set(read) == set(BLOBS)
    for name, value in BLOBS.items():
        assert np.array_equal(read[name], value), name
        assert np.asarray(read[name]).dtype == np.asarray(value).dtype, name


@pytest.mark.parametrize('dialect', [
    'python2', 'python2 numpy1', 'protocol 2', 'protocol 4', 'protocol 5',
    'flat dict'])
def test_legitimate_pickles_load(dialect, tmp_path):
    data = {'blobs': dict(BLOBS)}
    if dialect.startswith('python2'):
        raw = _python2_pickle(data)
        assert b'_codecs' not in raw
    elif dialect == 'flat dict':
        raw = pickle.dumps(dict(BLOBS), protocol=2)
    else:
        raw = pickle.dumps(data, protocol=int(dialect[-1]))
    if dialect.endswith('numpy1'):
        # numpy 1.x wrote numpy.core.*, numpy 2.x writes numpy._core.*.
        raw = raw.replace(b'numpy._core.', b'numpy.core.')
        assert b'numpy.core.multiarray\n_reconstruct' in raw
    path = tmp_path / 'blobs.pkl'
    path.write_bytes(raw)
    _assert_blobs(read_caffe2_pkl(str(path)))


class _Hostile:
    """Unpickling it calls ``function(*args)``."""

    def __init__(self, function, *args):
        self.call = (function, args)

    def __reduce__(self):
        return self.call


def _hostile(name, target):
    """A call that creates ``target``, pickled as the global ``name``."""
    write = f'open({str(target)!r}, "w")'
    return {'posix.system': _Hostile(os.system, f'touch {target}'),
            'io.open': _Hostile(open, str(target), 'w'),
            # An allowed module (for set, complex, ...), another name.
            '__builtin__.eval': _Hostile(eval, write),
            'builtins.exec': _Hostile(exec, write)}[name]


@pytest.mark.parametrize('name,protocol', [
    ('posix.system', 2), ('io.open', 2), ('__builtin__.eval', 2),
    ('builtins.exec', 4)])
def test_hostile_pickle_refused_by_function_and_tool(name, protocol,
                                                     tmp_path, capsys):
    target = tmp_path / 'pwned'
    path = tmp_path / 'hostile.pkl'
    # Hidden among real blobs, as a crafted release file would be.
    path.write_bytes(pickle.dumps(
        {'blobs': {**BLOBS, 'comp_0_conv_1_w': _hostile(name, target)}},
        protocol=protocol))
    with pytest.raises(UnsafePickleError,
                       match=f'refusing to unpickle the global {name}:'):
        read_caffe2_pkl(str(path))
    assert not target.exists()
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(TOOL)['main']([str(path), str(tmp_path / 'out.pth')])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f'refusing to unpickle the global {name}' in err
    assert str(path) in err
    assert not target.exists()
    assert not (tmp_path / 'out.pth').exists()


def test_codecs_encode_only_for_latin1(tmp_path):
    # pickle writes bytes as _codecs.encode(text, 'latin1') at protocol 2;
    # any other codec is refused.
    raw = pickle.dumps({'blobs': {'b': b'\x00\xff'}}, protocol=2)
    assert b'_codecs\nencode' in raw and b'latin1' in raw
    path = tmp_path / 'codec.pkl'
    path.write_bytes(raw.replace(b'latin1', b'rot_13'))
    with pytest.raises(UnsafePickleError, match="encoding 'rot_13'"):
        read_caffe2_pkl(str(path))
