"""Crash-safe writes: a kill at any moment leaves either the old file or the new one, never half."""
import json
import os
import tempfile

import torch


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


def _atomic(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_parent(path)


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


def save_checkpoint(state, path):
    _atomic(path, lambda f: torch.save(state, f))


def write_json(obj, path):
    _atomic(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=True) + '\n').encode()))


def write_text(text, path):
    _atomic(path, lambda f: f.write(text.encode()))


def append_line(path, line):
    """One write() of a whole line with O_APPEND: concurrent or killed writers never split lines."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip('\n') + '\n').encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path):
    with open(path) as f:
        return json.load(f)
