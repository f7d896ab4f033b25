"""Crash-safe writes: a kill at any moment leaves either the old file or the new one, never half.

Resumable checkpoints also keep their predecessor (`<name>.prev.pth`), so a newest checkpoint that
cannot be read costs one checkpoint interval, not the run. A failed write (disk full, quota,
permissions) raises WriteError naming the file; the file it would have replaced stays as it was.
"""
import json
import os
import shutil
import tempfile
import threading
import time

import torch

# Test-only: seconds to pause inside each checkpoint write, so a test can kill the process there.
WRITE_DELAY_ENV = 'CRD_TEST_CHECKPOINT_WRITE_DELAY_S'


class WriteError(OSError):
    """A file could not be written; scripts stop with exit code 4."""

    exit_code = 4

    def __init__(self, path, err):
        super().__init__(err.errno, err.strerror or str(err))
        self.path = path

    def __str__(self):
        return f'cannot write {self.path}: [Errno {self.errno}] {self.strerror}'

    def __reduce__(self):  # sent between DDP ranks
        return WriteError, (self.path, OSError(self.errno, self.strerror))


def _quiet_writer_thread(args):
    """TensorBoard's writer thread ends on a write error, which its next call raises again: no
    traceback from the thread, the error is reported once (as a WriteError)."""
    if type(args.thread).__name__ == '_AsyncWriterThread' and isinstance(args.exc_value, OSError):
        return
    _quiet_writer_thread.previous(args)


class TensorBoardLog:
    """TensorBoard's event files in folder, whose write errors (disk full) are WriteErrors like
    every other file's. Its writer thread keeps an error until the next call or close()."""

    def __init__(self, folder, purge_step):
        from torch.utils.tensorboard import SummaryWriter
        if threading.excepthook is not _quiet_writer_thread:
            _quiet_writer_thread.previous, threading.excepthook = threading.excepthook, _quiet_writer_thread
        self.folder = folder
        self.writer = self._call(SummaryWriter, folder, purge_step=purge_step)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as err:
            raise WriteError(self.folder, err) from err

    def add_scalar(self, tag, value, step):
        self._call(self.writer.add_scalar, tag, value, step)

    def close(self):
        self._call(self.writer.close)


def fsync_parent(path):
    """Make a rename into path's folder durable (not possible on every platform)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)) or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def umask():
    """The process's umask, read without changing it where the system shows it (os.umask sets it)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _test_delay():
    delay = float(os.environ.get(WRITE_DELAY_ENV) or 0)
    if delay > 0:
        time.sleep(delay)


def _atomic(path, write, keep_previous=None, delay=False):
    try:
        _atomic_write(path, write, keep_previous, delay)
    except WriteError:
        raise
    except OSError as err:
        raise WriteError(path, err) from err


def _atomic_write(path, write, keep_previous, delay):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        if hasattr(os, 'fchmod'):  # mkstemp makes 0600; outputs follow the user's umask
            os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            if delay:
                _test_delay()
            os.fsync(f.fileno())
        if keep_previous and os.path.exists(path):
            _keep_copy(path, keep_previous)
            if delay:
                _test_delay()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_parent(path)


def _keep_copy(path, dest):
    """dest becomes the content of path, atomically (a hard link where the file system has them)."""
    folder = os.path.dirname(os.path.abspath(dest))
    tmp = os.path.join(folder, f'.{os.path.basename(dest)}.{os.getpid()}.tmp')
    if os.path.exists(tmp):
        os.unlink(tmp)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


def remove_stale_temporaries(folder):
    """Delete the temporary files of writes that a kill -9 interrupted (never a finished file)."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith('.') and name.endswith('.tmp'):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


class _KeepsWriteErrors:
    """A file whose failed write() is remembered: torch.save turns it into a RuntimeError."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self):
        return self.f.flush()


def _torch_save(state, f):
    out = _KeepsWriteErrors(f)
    try:
        torch.save(state, out)
    except RuntimeError:
        if out.error is not None:
            raise out.error from None
        raise


def save_checkpoint(state, path):
    _atomic(path, lambda f: _torch_save(state, f), delay=True)


def previous_path(path):
    """Where save_resumable keeps the checkpoint it replaced: x_last.pth -> x_last.prev.pth."""
    root, ext = os.path.splitext(path)
    return root + '.prev' + ext


def resumable_paths(path):
    """The resumable checkpoints behind `path`, newest first."""
    return [path, previous_path(path)]


def has_resumable(path):
    """`path`, or the previous checkpoint save_resumable kept beside it, exists: a run to --resume."""
    return any(os.path.exists(p) for p in resumable_paths(path))


def save_resumable(state, path):
    """Like save_checkpoint, but the checkpoint it replaces stays readable as previous_path(path)."""
    _atomic(path, lambda f: _torch_save(state, f), keep_previous=previous_path(path), delay=True)


def _wrong_field(ckpt, types):
    """The first field of ckpt that is present with another type than types[field], or None."""
    for key, kinds in types.items():
        value = ckpt.get(key)
        if key in ckpt and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            return key
    return None


def load_resumable(path, required=(), types=None):
    """(checkpoint, the path it came from, [(path, why not) for each newer one that failed]).

    Tries `path`, then its predecessor. A file is skipped when torch.load(weights_only=True) fails,
    when it lacks one of the `required` keys or when a field has another type than `types` says
    ({key: tuple of types}). The checkpoint is None when none could be read.
    """
    failed = []
    for candidate in resumable_paths(path):
        if not os.path.exists(candidate):
            continue
        try:
            ckpt = torch.load(candidate, map_location='cpu', weights_only=True)
            missing = [k for k in required if k not in ckpt] if isinstance(ckpt, dict) else ['its fields']
            if missing:
                raise ValueError(f'not a resumable checkpoint: no {missing[0]}')
            wrong = _wrong_field(ckpt, types or {})
            if wrong:
                raise ValueError(f'not a resumable checkpoint: its {wrong} is a {type(ckpt[wrong]).__name__}')
        except Exception as e:  # truncated, corrupt or foreign file
            reason = ' '.join(str(e).split())[:120] or type(e).__name__
            failed.append((candidate, f'{type(e).__name__}: {reason}'))
            continue
        return ckpt, candidate, failed
    return None, None, failed


def set_aside(paths):
    """Rename unreadable checkpoints to <name>.damaged, so rotation never keeps them as the previous one."""
    for path in paths:
        try:
            os.replace(path, path + '.damaged')
        except OSError:
            pass


def write_json(obj, path):
    _atomic(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=True) + '\n').encode()))


def write_text(text, path):
    _atomic(path, lambda f: f.write(text.encode()))


def write_bytes(write, path):
    """path written by write(f) on a binary file, atomically."""
    _atomic(path, write)


def append_line(path, line):
    """One write() of a whole line with O_APPEND: concurrent or killed writers never split lines."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides
        try:
            os.write(fd, (line.rstrip('\n') + '\n').encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise WriteError(path, err) from err


def read_json(path):
    with open(path) as f:
        return json.load(f)
