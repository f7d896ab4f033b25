"""One run's folder: its file names, summary.json, log.csv, checkpoints and what state it is in.

Training (helper/engine/run.py), search.py and report.py all read run folders through this class.
"""
import csv
import os

from helper.runs.checkpoint import (append_line, has_resumable, load_resumable, read_json, remove_stale_temporaries,
                               resumable_paths, save_checkpoint, save_resumable, set_aside, write_json, write_text)
from helper.errors import UsageError
from helper.runs.runlock import check_free, claim, folder_state

SUMMARY, LOG, RESULTS = 'summary.json', 'log.csv', 'result.txt'
RESUME_KEYS = ('epoch', 'model', 'optimizer', 'scaler', 'rng', 'opt', 'history')
_NUMBER = (int, float)
RESUME_TYPES = {'epoch': (int,), 'model': (dict,), 'method': (dict,), 'optimizer': (dict,), 'scaler': (dict,),
                'rng': (dict,), 'opt': (dict,), 'history': (list,), 'best_acc': _NUMBER, 'best_epoch': (int,),
                'init_done': (bool,), 'partial': (dict, type(None)), 'init_epochs_done': (int,),
                'init_optimizer': (dict,), 'teacher_acc': _NUMBER + (type(None),), 'wall_time_s': _NUMBER}
LOG_COLUMNS = ('epoch', 'train_acc', 'train_loss', 'test_acc', 'test_loss', 'test_acc_top5', 'lr')


class RunFolder:
    """model: the trained network's name, which prefixes its checkpoint files."""

    def __init__(self, path, model=None):
        self.path = path
        self.model = model
        self.seen = None      # the watched files as validation saw them (claim compares)
        self.damaged = []     # unreadable newer checkpoints that a resume skipped
        self.lock = None
        self.identity = None  # helper.engine.identity's record of the run, where known

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def summary_path(self):
        return self.file(SUMMARY)

    @property
    def log_path(self):
        return self.file(LOG)

    @property
    def last_path(self):
        return self.file(f'{self.model}_last.pth')

    @property
    def best_path(self):
        return self.file(f'{self.model}_best.pth')

    def epoch_path(self, epoch):
        return self.file(f'ckpt_epoch_{epoch}.pth')

    # ------------------------------------------------------------ reading

    def read_summary(self):
        """summary.json as a dict; None when absent; raises OSError/ValueError when unreadable."""
        if not os.path.exists(self.summary_path):
            return None
        summary = read_json(self.summary_path)
        if not isinstance(summary, dict):
            raise ValueError(f'{SUMMARY} is not an object')
        return summary

    def read_log(self):
        """log.csv rows as dicts of strings (raises OSError/csv.Error)."""
        with open(self.log_path, newline='') as f:
            return list(csv.DictReader(f))

    def has_resumable(self):
        """The last checkpoint, or the previous one that save_resumable kept."""
        return has_resumable(self.last_path)

    def watched_files(self):
        """The files whose change means another process wrote to the folder."""
        return [self.summary_path] + resumable_paths(self.last_path)

    def check_free(self):
        """Record the folder as validation sees it; a UsageError when a live run holds it."""
        self.seen = folder_state(self.watched_files())
        check_free(self.path)

    def verdict(self):
        """('finished' | 'resumable' | 'empty', description of what is there or None)."""
        try:
            summary = self.read_summary()
        except (OSError, ValueError):
            return 'resumable', 'a run with an unreadable summary.json'
        if summary and summary.get('status') == 'finished':
            return 'finished', f"a finished run, {summary['epochs_done']}/{summary.get('epochs', '?')} epochs"
        if summary and summary.get('epochs_done'):  # killed before its first epoch ended: nothing to keep
            return 'resumable', (f"a {summary.get('status', 'unknown')} run, {summary['epochs_done']}/"
                                 f"{summary.get('epochs', '?')} epochs")
        if self.has_resumable():
            return 'resumable', 'a resumable checkpoint'
        return 'empty', None

    def load_resume(self, log=print):
        """The newest readable resumable checkpoint as plain data, or a UsageError saying why there
        is none. Newer unreadable ones are set aside when the folder is claimed."""
        ckpt, used, failed = load_resumable(self.last_path, RESUME_KEYS, RESUME_TYPES)
        if ckpt is None and not failed:
            raise UsageError(f'--resume: no checkpoint at {self.last_path}; start without --resume')
        if ckpt is None:
            tried = ', nor '.join(f'{p} ({why})' for p, why in failed)
            raise UsageError(f'--resume: cannot read {tried}; no resumable checkpoint is left: start a new --trial')
        if failed:
            log(f'--resume: {failed[0][0]} cannot be read ({failed[0][1]}); continuing from the previous '
                f'checkpoint {used} (epoch {ckpt["epoch"]}), one checkpoint interval earlier')
        self.damaged = [p for p, _ in failed]
        return ckpt

    # ------------------------------------------------------------ writing (main process only)

    def prepare(self, log=print):
        """The first write: lock the folder (a UsageError when another process wrote to it since
        check_free), then clear what earlier runs left."""
        seen = self.seen if self.seen is not None else folder_state(self.watched_files())
        self.lock = claim(self.path, seen, self.watched_files(), log=log)
        set_aside(self.damaged)
        remove_stale_temporaries(self.path)

    def release(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def write_summary(self, summary):
        write_json(summary, self.summary_path)

    def write_log(self, history, columns):
        lines = [','.join(columns)]
        for row in history:
            lines.append(','.join(_cell(row.get(c, 0.0)) for c in columns))
        write_text('\n'.join(lines) + '\n', self.log_path)

    def save_last(self, state):
        save_resumable(state, self.last_path)  # keeps the one it replaces as <model>_last.prev.pth

    def save_best(self, state):
        save_checkpoint(state, self.best_path)

    def save_epoch(self, epoch, state):
        save_checkpoint(state, self.epoch_path(epoch))

    def append_result(self, save_root, line):
        """One line in SAVE_ROOT/result.txt, the published list of finished runs."""
        append_line(os.path.join(save_root, RESULTS), line)

    def results(self, save_root):
        """The lines of SAVE_ROOT/result.txt ([] when there is none)."""
        try:
            with open(os.path.join(save_root, RESULTS)) as f:
                return f.read().splitlines()
        except OSError:
            return []


def summary_or_empty(path):
    """The summary.json of the run folder at path; {} when it is missing or unreadable."""
    try:
        return RunFolder(path).read_summary() or {}
    except (OSError, ValueError):
        return {}


def log_columns(term_names):
    """log.csv's header for a method whose meters are term_names ('loss' first)."""
    return LOG_COLUMNS + tuple(f'loss_{t}' for t in term_names[1:])


def _cell(value):
    return f'{value:.6g}' if isinstance(value, float) else str(value)


def finished(run_dir):
    """The run in run_dir has finished (its summary.json says so)."""
    try:
        return read_json(os.path.join(run_dir, 'summary.json')).get('status') == 'finished'
    except (OSError, ValueError):
        return False
