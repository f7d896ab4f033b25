"""Data files are data: CIFAR pickles read without running code, images read with the file named.

`read_pickle` unpickles with an allow-list: the official CIFAR files hold only dicts, lists,
strings, numbers and numpy arrays, so any other global in a file (os.system, a class of some
package) is refused before it can run. A file that is truncated, corrupt or of another kind is a
DataFileError: one line naming the file and what to do, exit code 2.
"""
import hashlib
import io
import os
import pickle
import pickletools

from torchvision.datasets.folder import default_loader

from helper.errors import UsageError

# (module, name) of everything the official files and the copies numpy writes refer to.
ALLOWED_GLOBALS = {
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),  # pickle protocol 5
    ('_codecs', 'encode'),  # bytes written by Python 3 at pickle protocol 2 or lower
}


class DataFileError(UsageError):
    """A data file that cannot be used. Keeps its one-line message when a DataLoader worker
    re-raises it (the worker wraps the message in its traceback text)."""

    def __init__(self, message):
        marker = f'{type(self).__name__}: '
        if message.startswith('Caught ') and marker in message:
            message = message.rsplit(marker, 1)[1].strip().splitlines()[0]
        super().__init__(message)


class RefusedGlobal(pickle.UnpicklingError):
    pass


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(f'it refers to {module}.{name}, which a data file never does')
        return super().find_class(module, name)


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
        return _DataUnpickler(io.BytesIO(raw), encoding='latin1').load()
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
        reason = ' '.join(str(e).split())[:100] or type(e).__name__
        raise DataFileError(f'cannot read image {path} ({type(e).__name__}: {reason}); replace it with '
                            f'a good copy, or delete it') from None


def first_missing(paths):
    """The first path that is not a file, or None."""
    return next((p for p in paths if not os.path.isfile(p)), None)
