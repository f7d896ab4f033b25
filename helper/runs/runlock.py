"""One writer per run (or search) folder: `<folder>/run.lock` names its holder.

The file holds {pid, host, started, heartbeat} and carries an flock while its holder lives (the
kernel drops the flock when the process dies, kill -9 included). A thread refreshes `heartbeat`
every HEARTBEAT_S seconds, for hosts that share the folder over a network file system where
flock may not reach across machines. A lock counts as held when its flock is taken, or when its
holder looks alive: same host and the pid runs, or another host and the heartbeat is fresh (a
heartbeat ahead of this host's clock is judged by the file's modification time instead, so a
skewed clock cannot hold a folder forever). A lock that is not held is stale and the next run
takes it over (no manual cleanup); so is one whose fields are not a holder's (wrong types). The
file is never a symbolic link (opened with O_NOFOLLOW). Release deletes the file.
"""
import errno
import json
import math
import os
import socket
import threading
import time

from helper.runs.checkpoint import WriteError
from helper.errors import UsageError

try:
    import fcntl
except ImportError:  # Windows: pid and heartbeat only
    fcntl = None

LOCK_NAME = 'run.lock'
HEARTBEAT_S = 30.0
STALE_S = 300.0  # a heartbeat older than this means the holder is gone (allows some clock skew)


class FolderBusy(UsageError):
    """Another live process holds the folder."""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _valid(info):
    """The fields a holder writes, with their types: anything else names no holder."""
    return (isinstance(info, dict) and type(info.get('pid')) is int and info['pid'] > 0
            and isinstance(info.get('host'), str) and _number(info.get('started')) and _number(info.get('heartbeat')))


def _read(fd):
    """The lock file's fields, or None when it is empty or names no valid holder."""
    for attempt in range(3):  # a read may cross a heartbeat's rewrite
        try:
            raw = os.pread(fd, 4096, 0)
            info = json.loads(raw.decode()) if raw else None
            return info if _valid(info) else None
        except (OSError, ValueError, UnicodeDecodeError):
            time.sleep(0.05)
    return None


def _open(path, flags, mode=0o666):
    """The lock file, never through a symbolic link (a link would let the lock truncate its target)."""
    try:
        return os.open(path, flags | getattr(os, 'O_NOFOLLOW', 0), mode)
    except OSError as err:
        if err.errno == errno.ELOOP or os.path.islink(path):
            raise UsageError(f'{path} is a symbolic link, which a run lock never is; delete it '
                             f'(rm {path}) and start again') from None
        raise


def _mtime(fd):
    try:
        return os.fstat(fd).st_mtime
    except OSError:
        return None


def describe(info):
    if not info:
        return 'another process (its lock file is unreadable)'
    started = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['started']))
    age = time.time() - info['heartbeat']
    beat = f'last heartbeat {age:.0f} s ago' if age >= 0 else f"heartbeat {-age:.0f} s ahead of this host's clock"
    return f"pid {info['pid']} on {info['host']} (started {started}, {beat})"


def holder_alive(info, now=None, mtime=None):
    """Whether the holder named in a lock file whose flock is free still looks alive. mtime: the
    file's modification time, which judges a heartbeat ahead of this host's clock."""
    if not info:
        return False
    now = now or time.time()
    age = now - info['heartbeat']
    if age < -HEARTBEAT_S and mtime is not None:  # another clock, or a made-up value: the file's age decides
        age = now - mtime
    if age > STALE_S:
        return False
    if info['host'] == socket.gethostname():
        return info['pid'] != os.getpid() and _pid_alive(info['pid'])
    return True


WORKER_EXIT_S = 15.0  # loader workers forked by a killed run hold its flock until they notice


def _flock(fd, shared=False):
    """True when the flock was taken (or flock is not available here)."""
    if fcntl is None:
        return True
    deadline = time.time() + WORKER_EXIT_S
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            info = _read(fd)
            dead_here = info and info['host'] == socket.gethostname() and not _pid_alive(info['pid'])
            if not dead_here or time.time() > deadline:
                return False
            time.sleep(0.2)  # the holder died; its forked workers are exiting
        except OSError:  # a file system without flock: pid and heartbeat decide
            return True


def busy_message(folder, info, what):
    return (f'{folder} is in use by {describe(info)}; wait for it to end, or stop it, before '
            f'starting this {what} again')


def check_free(folder, what='run'):
    """Raise FolderBusy when a live process holds `folder`. Reads only, writes nothing."""
    path = os.path.join(folder, LOCK_NAME)
    try:
        fd = _open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError:
        return  # unreadable lock file: acquire() decides
    try:
        free = _flock(fd, shared=True)
        info = _read(fd)
        if not free or holder_alive(info, mtime=_mtime(fd)):
            raise FolderBusy(busy_message(folder, info, what))
    finally:
        os.close(fd)


def shown_status(folder, status):
    """The status to show for a run whose summary.json says `status` (reads only): a 'running' run
    that no live process holds was stopped (kill -9, a lost node)."""
    if status != 'running':
        return status
    try:
        check_free(folder)
    except FolderBusy:
        return status
    try:
        fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDONLY)
    except OSError:  # no lock: an older version's run, or copied here; nothing to tell
        return status
    try:
        info = _read(fd) or {}
    finally:
        os.close(fd)
    beat = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(info.get('heartbeat', 0))))
    return f"stopped (stale lock: pid {info.get('pid')}, last heartbeat {beat}); rerun with --resume"


class RunLock:
    """The lock on one folder, held from acquire() to release()."""

    def __init__(self, folder, what='run', log=print):
        self.folder, self.what, self.log = folder, what, log
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd = None
        self._stop = threading.Event()
        self._thread = None
        self.info = None

    def acquire(self):
        """Take the lock; FolderBusy when a live process holds it, WriteError when the lock cannot
        be written (disk full): then nothing of this attempt is left, no lock file, no new folder."""
        made = _missing_folders(self.folder)
        try:
            os.makedirs(self.folder, exist_ok=True)
            return self._take()
        except (UsageError, OSError) as err:
            if self.fd is not None:
                _remove(self.path)
                os.close(self.fd)
                self.fd = None
            for folder in made:  # deepest first; only while empty
                try:
                    os.rmdir(folder)
                except OSError:
                    break
            if isinstance(err, (UsageError, WriteError)):
                raise
            raise WriteError(self.path, err) from err

    def _take(self):
        for _ in range(20):
            fd = _open(self.path, os.O_RDWR | os.O_CREAT)
            if not _flock(fd):
                info = _read(fd)
                os.close(fd)
                raise FolderBusy(busy_message(self.folder, info, self.what))
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder deleted it between our open and our flock: try again
                os.close(fd)
                continue
            previous = _read(fd)
            if holder_alive(previous, mtime=_mtime(fd)):
                os.close(fd)
                raise FolderBusy(busy_message(self.folder, previous, self.what))
            if previous:
                self.log(f'taking over the stale lock of {describe(previous)} on {self.folder}')
            elif os.fstat(fd).st_size:
                self.log(f'taking over {self.path}, which names no valid holder (wrong or missing fields)')
            self.fd = fd
            now = time.time()
            self.info = {'pid': os.getpid(), 'host': socket.gethostname(), 'started': now, 'heartbeat': now}
            self._write()
            self._thread = threading.Thread(target=self._beat, name='run-lock-heartbeat', daemon=True)
            self._thread.start()
            return self
        raise FolderBusy(f'{self.folder}: could not take {self.path} (it keeps changing); try again')

    def _write(self):
        data = json.dumps(self.info).encode()
        os.pwrite(self.fd, data, 0)  # then cut: a reader never finds the file empty
        os.ftruncate(self.fd, len(data))

    def _beat(self):
        while not self._stop.wait(HEARTBEAT_S):
            self.info['heartbeat'] = time.time()
            try:
                self._write()
            except OSError:
                pass  # a full disk stops the run elsewhere; an old heartbeat only matters across hosts

    def release(self):
        if self.fd is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        _remove(self.path)  # while still holding the flock: a waiter then retries on a new file
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _missing_folders(folder):
    """The folders that makedirs(folder) would create, deepest first."""
    missing, path = [], os.path.abspath(folder)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def folder_state(paths):
    """(path, size, mtime) of those that exist: what claim() compares to see whether a folder changed."""
    state = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        state.append((path, st.st_size, st.st_mtime_ns))
    return state


def claim(folder, seen, watched, what='run', log=print):
    """Lock `folder` for this process, after checking that the files in `watched` are still as
    they were when the command was validated (`seen`, from folder_state): another process may
    have written them in between. Returns the held RunLock."""
    lock = RunLock(folder, what, log).acquire()
    if folder_state(watched) != seen:
        lock.release()
        raise FolderBusy(f'{folder} changed while this {what} was starting (another process wrote to it); '
                         f'run the command again')
    return lock
