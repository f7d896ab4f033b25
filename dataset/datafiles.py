"""Data files are data: CIFAR pickles read without running code, images read with the file named.

`read_pickle` unpickles with an allow-list: the official CIFAR files hold only dicts, lists,
strings, numbers and numpy arrays, so any other global in a file (os.system, a class of some
package) is refused before it can run. Nothing from a file reaches numpy's constructors as state
either (a forged dtype state crashes them): arrays and scalars are rebuilt here from raw bytes, a
numeric dtype of NUMERIC_DTYPES and a shape, and anything else is refused. A file that is
truncated, corrupt or of another kind is a DataFileError: one line naming the file and what to
do, exit code 2.
"""
import hashlib
import io
import math
import os
import pickle
import pickletools

import numpy as np

from torchvision.datasets.folder import default_loader

from helper.errors import UsageError

class DataFileError(UsageError):
    """A data file that cannot be used. Keeps its one-line message when a DataLoader worker
    re-raises it (the worker wraps the message in its traceback text)."""

    def __init__(self, message):
        marker = f'{type(self).__name__}: '
        if message.startswith('Caught ') and marker in message:
            message = message.rsplit(marker, 1)[1].strip().splitlines()[0]
        super().__init__(message)


class RefusedGlobal(pickle.UnpicklingError):
    """What makes a file not a data file (a global, a dtype or an array state data never has)."""


NUMERIC_DTYPES = {'b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8'}


class _NdArray:
    """Stands for numpy.ndarray, which a file names only as _reconstruct's first argument."""


class _DType:
    """A numpy dtype as a file describes it: a numeric name and a byte order, nothing more."""

    def __init__(self, name, align=False, copy=True):
        if not isinstance(name, str) or name not in NUMERIC_DTYPES:
            raise RefusedGlobal(f'it holds a numpy dtype {str(name)[:20]!r}, not one of the numeric '
                                f'types of data files')
        self.name, self.order = name, '='

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 5 and isinstance(state[1], str)
                and state[1] in '<>|=' and len(state[1]) == 1 and state[2:5] == (None, None, None)):
            raise RefusedGlobal('it holds a numpy dtype state that numeric data never has')
        self.order = state[1]

    def numpy(self):
        dtype = np.dtype(self.name)
        return dtype.newbyteorder(self.order) if self.order in '<>' else dtype


def _array(raw, dtype, shape, order='C'):
    """A new array from raw bytes, after checking every part (numpy gets none of the file's state)."""
    if isinstance(raw, str):
        raw = raw.encode('latin1')  # the bytes of a Python 2 file
    if not (isinstance(raw, (bytes, bytearray)) and isinstance(dtype, _DType) and isinstance(shape, tuple)
            and all(type(n) is int and n >= 0 for n in shape) and order in ('C', 'F')):
        raise RefusedGlobal('it holds an array state that numeric data never has')
    dtype = dtype.numpy()
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise RefusedGlobal(f'it holds an array of shape {shape} whose data has {len(raw)} bytes')
    return np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape, order=order)


class _Array:
    """What _reconstruct returns: BUILD gives it (version, shape, dtype, is_fortran, raw bytes)."""

    value = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[3], bool)):
            raise RefusedGlobal('it holds an array state that numeric data never has')
        self.value = _array(state[4], state[2], state[1], 'F' if state[3] else 'C')


def _reconstruct(cls, shape, typecode):
    if cls is not _NdArray:
        raise RefusedGlobal('it rebuilds an array of another class than numpy.ndarray')
    return _Array()


def _scalar(dtype, raw=None):
    return _array(raw, dtype, ())[()]


def _encode(text, encoding='utf-8'):
    """Bytes as Python 3 pickles them at protocol 2 or lower: _codecs.encode(str, 'latin1')."""
    if not (isinstance(text, str) and encoding in ('latin1', 'latin-1')):
        raise RefusedGlobal('it encodes text with something other than latin1')
    return text.encode('latin1')


def _empty_bytes(*args):
    """Empty bytes as Python 3 pickles them at protocol 2 or lower: bytes()."""
    if args:
        raise RefusedGlobal('it calls bytes() with arguments')
    return b''


# (module, name) of everything the official files and the copies numpy writes refer to, and what
# this reader builds in its place
_NUMPY_CORE = ('numpy.core', 'numpy._core')
STAND_INS = {('numpy', 'ndarray'): _NdArray, ('numpy', 'dtype'): _DType, ('_codecs', 'encode'): _encode,
             ('__builtin__', 'bytes'): _empty_bytes, ('builtins', 'bytes'): _empty_bytes}
for _core in _NUMPY_CORE:
    STAND_INS.update({(f'{_core}.multiarray', '_reconstruct'): _reconstruct, (f'{_core}.multiarray', 'scalar'): _scalar,
                      (f'{_core}.numeric', '_frombuffer'): _array})  # _frombuffer: pickle protocol 5


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in STAND_INS:
            raise RefusedGlobal(f'it refers to {module}.{name}, which a data file never does')
        return STAND_INS[module, name]


def _plain(obj):
    """The loaded object with the stand-ins replaced by what they built (dicts, lists, tuples, arrays)."""
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, _Array):
        if obj.value is None:
            raise RefusedGlobal('it holds an array without its data')
        return obj.value
    if isinstance(obj, _DType):
        return obj.numpy()
    if obj is _NdArray:
        raise RefusedGlobal('it refers to numpy.ndarray outside an array')
    return obj


def read_pickle(path, remedy):
    """Unpickle a data file with the allow-list (latin1 strings, as the Python 2 files need).

    The opcodes are walked first without running them: a truncated or garbled file then fails
    on a length it cannot satisfy instead of allocating it.
    """
    try:
        with open(path, 'rb') as f:
            raw = f.read()
        for _ in pickletools.genops(raw):
            pass
        return _plain(_DataUnpickler(io.BytesIO(raw), encoding='latin1').load())
    except RefusedGlobal as e:
        raise DataFileError(f'{path} is not a data file ({e}); it was not loaded: {remedy}') from None
    except OSError as e:
        raise DataFileError(f'cannot read {path} ({e.strerror or e}); {remedy}') from None
    except Exception as e:  # truncated or corrupt: EOFError, UnpicklingError, ValueError, ...
        reason = ' '.join(str(e).split())[:100] or type(e).__name__
        raise DataFileError(f'{path} is truncated or corrupt ({type(e).__name__}: {reason}); {remedy}') from None


def md5_of(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path, expected, remedy):
    if md5_of(path) != expected:
        raise DataFileError(f'{path} has the official name and size but not the official md5 '
                            f'(expected {expected}): it is damaged; {remedy}')


def read_image(path):
    """An image as RGB, or a DataFileError naming it (missing, truncated, not an image)."""
    try:
        return default_loader(path)
    except Exception as e:
        raise unreadable_image(path, e) from None


def unreadable_image(path, err):
    """The one-line DataFileError for an image file that cannot be decoded."""
    reason = ' '.join(str(err).split())[:100] or type(err).__name__
    return DataFileError(f'cannot read image {path} ({type(err).__name__}: {reason}); replace it with '
                         f'a good copy, or delete it')


def first_missing(paths):
    """The first path that is not a file, or None."""
    return next((p for p in paths if not os.path.isfile(p)), None)
