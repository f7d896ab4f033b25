"""The one run function behind train_teacher.py, train_student.py and every search.py candidate.

`run(opt, kind, context)` builds the experiment (helper.engine.experiment), checks its run folder
(helper.runs.run_folder) and trains it (helper.engine.trainer); it returns the run's summary, also written as
summary.json. kind: 'teacher' or 'student'; context: what a co-trained run shares with its group
(helper.engine.context.RunContext), a run alone by default.
"""
import contextlib
import os
import signal
import sys

import torch

import models
from helper.engine import compile_policy, identity
from helper import dist
from helper.runs.checkpoint import WriteError
from helper.engine.dry_run import dry_run, no_trained_model
from helper.engine.context import RunContext
from helper.errors import UsageError
from helper.engine.experiment import build_experiment, make_autocast, resolve_speed_flags, trained_model_name
from helper.engine.loops import NonFiniteLoss, Preempted, validate
from helper.engine.options import differing_option, finalize, options_dict, run_name
from helper.runs.run_folder import RunFolder, summary_or_empty
from helper.engine.trainer import Trainer
from helper.engine.util import pick_device, set_seed

WRITE_ERROR_EXIT = WriteError.exit_code  # a file of the run could not be written (disk full, quota, permissions)


def run_dir_of(opt, kind):
    """SAVE_ROOT/{models,student_model}/<readable name>_id-<identity hash>, or the folder of the
    same name without the hash where an older version made this very run."""
    sub = 'models' if kind == 'teacher' else 'student_model'
    readable = os.path.join(opt.save_root, sub, run_name(opt, kind))
    path = identity.folder_name(readable, identity.identity(opt, kind))
    if not os.path.exists(path) and _older_folder_is(readable, opt):
        return readable
    return path


def _older_folder_is(path, opt):
    """Whether the folder an older version named without the hash holds this run: its
    summary.json records the same options (or, for --resume, it has only a checkpoint)."""
    if not os.path.isdir(path):
        return False
    folder = RunFolder(path)
    try:
        summary = folder.read_summary()
    except (OSError, ValueError):
        summary = None
    saved = summary.get('options') if isinstance(summary, dict) else None
    if not isinstance(saved, dict):
        return bool(opt.resume) and has_resumable_file(path)  # the resume compares its options
    return identity.records_this_run(saved, opt)


def has_resumable_file(path):
    return any(name.endswith('_last.pth') or name.endswith('_last.prev.pth') for name in os.listdir(path))


def run_folder_of(opt, kind):
    folder = RunFolder(run_dir_of(opt, kind), trained_model_name(opt, kind))
    folder.identity = identity.identity(opt, kind)
    return folder


def run(opt, kind, context=None):
    """Train (or evaluate) one teacher or student run as the options say; returns its summary."""
    context = context or RunContext()
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, released however the run ends
            return _run(opt, kind, held, context)
    finally:
        # The next run in this process (a search candidate) then starts as a fresh process
        # would: compiled graphs and their CUDA-graph memory pools are freed, not kept behind.
        if context.alone:  # co-trained runs: their group resets once all of them have ended
            torch.compiler.reset()


def _run(opt, kind, held, context):
    opt = finalize(opt, kind)
    device = pick_device(opt.device)
    opt, amp_dtype = resolve_speed_flags(opt, device)
    dist.init(device)
    if opt.sync_bn and dist.world_size() > 1 and device.type != 'cuda':
        raise UsageError('--sync_bn needs CUDA GPUs (SyncBatchNorm does not run on the CPU); drop it')
    if opt.seed_auto:  # each rank drew its own; the shards and the shuffle need one shared seed
        opt = opt.replace(seed=dist.broadcast_object(opt.seed))
    if opt.scale_lr:
        opt = opt.replace(learning_rate=opt.learning_rate * dist.world_size())
    folder = run_folder_of(opt, kind)
    held.callback(folder.release)
    ckpt = None
    if opt.extend:  # the folder of the run as made; it goes on to --extend epochs
        opt = opt.replace(epochs=opt.extend, resume=True)
        folder.identity = dict(folder.identity, extended_to=opt.extend)
    if not opt.test:
        ckpt = checked_start(opt, folder, context.log)  # before anything is written
        if ckpt is not None and ckpt['epoch'] >= opt.epochs and not ckpt.get('partial') and says_finished(folder):
            return finished_summary(folder, context.log)  # nothing to do, and nothing in the folder is touched
        # all epochs trained but the last records failed (a full disk): the trainer writes them
        if ckpt is not None and opt.seed_auto:  # a resume replays the run's own seed
            opt = opt.replace(seed=ckpt['opt']['seed'])
    set_seed(opt.seed)
    if opt.dry_run:  # the same checks as above, then the data, teacher and shapes; nothing written
        return dry_run(opt, kind, folder, device, amp_dtype, ckpt)
    exp = build_experiment(opt, kind, device)
    if opt.test:
        return evaluate_only(opt, folder, exp, device, make_autocast(device, amp_dtype), context.log)
    opt = compile_policy.choose(opt, exp, device, ckpt)  # --fast compiles only where it pays
    return Trainer(opt, kind, exp, folder, device, amp_dtype, ckpt, context).fit(exp.test_loader)


def checked_start(opt, folder, log):
    """The checkpoint to resume (None for a fresh run), or a UsageError when a live process holds
    the folder, the folder holds a run that this command would overwrite, or --resume has nothing
    to continue."""
    problem = ckpt = None
    if dist.is_main():
        try:
            folder.check_free()  # a live run holds the folder: refuse, --resume or not
            if opt.resume:
                ckpt = resume_checkpoint(opt, folder, log)
            else:
                verdict, existing = folder.verdict()
                how = ('--extend EPOCHS continues it to more epochs' if verdict == 'finished'
                       else 'add --resume to continue it')
                if verdict != 'empty':
                    problem = f'{folder.path} already holds {existing}; {how}, or choose another --trial'
        except UsageError as e:
            problem = str(e)
    problem = dist.broadcast_object(problem)
    if problem:
        raise UsageError(problem)
    return dist.broadcast_object(ckpt)


def says_finished(folder):
    try:
        return (folder.read_summary() or {}).get('status') == 'finished'
    except (OSError, ValueError):
        return False


def finished_summary(folder, log):
    """A --resume of a run that has trained all its epochs: say so, write nothing; its summary."""
    log(f'{folder.path} is already finished; nothing to resume (--extend EPOCHS continues it to more epochs)')
    try:
        summary = folder.read_summary()
    except (OSError, ValueError):
        summary = None
    return summary or {'status': 'finished', 'run_dir': folder.path}


def resume_checkpoint(opt, folder, log):
    if not folder.has_resumable():
        near_miss(opt, folder)
    ckpt = folder.load_resume(log)
    saved = ckpt.get('opt', {})
    if opt.seed_auto and 'seed' in saved:
        opt = opt.replace(seed=saved['seed'])
    mine = options_dict(opt)
    key = differing_option(saved, mine, ignore=('epochs',) if opt.extend else ())
    if key:
        raise UsageError(f'--resume: the checkpoint was made with --{key} {saved[key]} '
                         f'but this command has {mine[key]}; use the same options or another --trial')
    return ckpt


def near_miss(opt, folder):
    """--resume found no run with these options: a UsageError naming the first option in which a
    run of the same name (another identity) differs, if there is one."""
    import glob
    readable = folder.path.rsplit('_id-', 1)[0]
    mine = options_dict(opt)
    for path in sorted(glob.glob(glob.escape(readable) + '_id-*')) + [readable]:
        saved = summary_or_empty(path).get('options')
        key = differing_option(saved, mine, ignore=('epochs',) if opt.extend else ()) if saved else None
        if key:
            raise UsageError(f'--resume: no run with these options at {folder.path}; {path} was made with '
                             f'--{key} {saved[key]} but this command has {mine[key]}; use the same options, '
                             f'or start without --resume')


def evaluate_only(opt, folder, exp, device, autocast, log):
    if not os.path.exists(folder.best_path):
        raise no_trained_model(folder)
    state, meta = models.read_state_dict(folder.best_path)
    exp.student.load_state_dict(state)
    exp.student.to(device)
    out = {'status': 'test', 'run_dir': folder.path,
           'student': validate(exp.student, exp.test_loader, device, autocast)}
    log(f'--test 1: evaluated {folder.best_path} (the best weights, epoch {meta.get("epoch", "?")})')
    log(f'{folder.model}: test acc {out["student"]["acc"]:.2f} top5 {out["student"]["acc_top5"]:.2f} '
        f'loss {out["student"]["loss"]:.4f}')
    if exp.teacher is not None:
        exp.teacher.to(device)
        out['teacher'] = validate(exp.teacher, exp.test_loader, device, autocast)
        log(f'teacher {opt.model_t}: test acc {out["teacher"]["acc"]:.2f}')
    return out


def exit_code(err):
    """The process exit status for a run that ended with err: 2 bad input, 3 non-finite loss,
    4 a file could not be written, 128 + signal number after a preemption (as a shell reports a
    process killed by it)."""
    if isinstance(err, UsageError):
        return 2
    if isinstance(err, NonFiniteLoss):
        return 3
    if isinstance(err, WriteError):
        return WRITE_ERROR_EXIT
    if isinstance(err, Preempted):
        sig = err.args[0] if err.args else signal.SIGTERM
        return 128 + int(sig) if isinstance(sig, int) else 1
    raise TypeError(f'no exit code for {type(err).__name__}')


def main(kind, parser, argv=None):
    """Script entry: one-line errors with exit code 2, non-zero exit after a preemption."""
    try:
        opt = parser.parse_args(argv)
        run(opt, kind)
    except (UsageError, NonFiniteLoss) as e:
        print(f'error: {e}', file=sys.stderr)
        return exit_code(e)
    except Preempted as e:
        return exit_code(e)
    except WriteError as e:
        print(f'error: {e}; free space (or fix the permissions), then rerun the same command, with --resume '
              f'if the run has a checkpoint (the last one is intact)', file=sys.stderr)
        return exit_code(e)
    finally:
        dist.cleanup()
    return 0
