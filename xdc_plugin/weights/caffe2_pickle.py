"""Reading a Caffe2 (VMZ) ``.pkl`` without running code from it.

A plain ``pickle.load`` calls whatever global the file names, so a crafted
``.pkl`` can run any command. :class:`Caffe2Unpickler` admits only the
globals such files hold: numpy's array, scalar and dtype reconstruction
(numpy 1.x ``numpy.core`` and 2.x ``numpy._core`` module paths), the
``_codecs.encode`` latin-1 call Python 3 writes for bytes in protocol 2,
and plain containers. Anything else raises :class:`UnsafePickleError`
naming the global before it is looked up, let alone called.
"""
import codecs
import collections
import pickle
from typing import Any, Callable, Dict, Mapping, Tuple

from xdc_plugin.weights.download import check_file_hash
from xdc_plugin.weights.errors import IncompatibleWeightsError

_NUMPY_CORE_PACKAGES = ('numpy.core', 'numpy._core')  # numpy 1.x, 2.x
# Python 2 pickles (and Python 3 ones at protocol < 3) say __builtin__.
_BUILTIN_MODULES = ('builtins', '__builtin__')
_LATIN1 = ('latin1', 'latin-1')


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global that a Caffe2 weights file never holds."""


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` restricted to what pickle writes for bytes."""
    if encoding not in _LATIN1:
        raise UnsafePickleError(
            f'_codecs.encode with encoding {encoding!r} (pickles encode '
            'bytes as latin1 only)')
    return codecs.encode(text, 'latin1')


def _allowed_globals() -> Dict[Tuple[str, str], Callable[..., Any]]:
    """``{(module, name): object}``; the numpy functions are taken from the
    numpy in use (via its own ``__reduce__``), whatever path the file
    names."""
    import numpy as np
    array = np.zeros(1)
    numpy_functions = {
        ('multiarray', '_reconstruct'): array.__reduce__()[0],
        ('multiarray', 'scalar'): np.float32(0).__reduce__()[0],
        ('numeric', '_frombuffer'): array.__reduce_ex__(5)[0],  # protocol 5
    }
    allowed = {(f'{package}.{module}', name): function
               for package in _NUMPY_CORE_PACKAGES
               for (module, name), function in numpy_functions.items()}
    allowed[('numpy', 'ndarray')] = np.ndarray
    allowed[('numpy', 'dtype')] = np.dtype
    allowed[('_codecs', 'encode')] = _latin1_bytes
    allowed[('collections', 'OrderedDict')] = collections.OrderedDict
    for module in _BUILTIN_MODULES:
        for plain in (set, frozenset, complex, bytearray):
            allowed[(module, plain.__name__)] = plain
    return allowed


class Caffe2Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :func:`_allowed_globals`."""

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f'refusing to unpickle the global {module}.{name}: a Caffe2 '
                'weights file holds only numpy arrays, dtypes, plain '
                'containers, strings and numbers. This file is not one '
                '(it may be crafted to run code); nothing was executed.'
            ) from None


def read_caffe2_pkl(path: str) -> Dict[str, Any]:
    """Blobs of a VMZ/Caffe2 ``.pkl``: a pickled ``{'blobs': {name:
    ndarray}}`` (or a flat dict), written by Python 2, hence latin1.

    Read with :class:`Caffe2Unpickler`; a ``-<hex>`` hash prefix in the name
    (the release's files) is checked first."""
    check_file_hash(path)
    with open(path, 'rb') as f:
        try:
            data = Caffe2Unpickler(f, encoding='latin1').load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f'{path}: {exc}') from None
    if isinstance(data, Mapping) and 'blobs' in data:
        data = data['blobs']
    if not isinstance(data, Mapping):
        raise IncompatibleWeightsError(
            f'{path}: expected a dict of blobs, got {type(data).__name__}')
    return {str(k): v for k, v in data.items()}
