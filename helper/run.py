"""The one run function behind train_teacher.py, train_student.py and every search.py candidate.

`run(opt, kind)` builds data, models and the method, trains with checkpoints and logs, and
returns the run's summary (also written as summary.json). kind: 'teacher' or 'student'.
"""
import contextlib
import os
import signal
import sys
import time

import torch

import models
from dataset import get_loaders, loader_set_epoch
from distiller_zoo import METHODS, build_distiller
from distiller_zoo.base import feature_shapes
from distiller_zoo.mc import MilestoneChecking, check_mc_shapes, mc_stage_count, mc_weights, stage_weight_flags
from helper import cotrain, dist
from helper.cpu_bf16 import cpu_bf16_native
from helper.checkpoint import (WriteError, append_line, load_resumable, read_json, remove_stale_temporaries,
                               resumable_paths, save_checkpoint, save_resumable, set_aside, write_json,
                               write_text)
from helper.errors import UsageError
from helper.loops import (TERMS, DistillStep, EpochState, NonFiniteLoss, Preempted, run_init_stage,
                          train_one_epoch, validate)
from helper.options import differing_option, finalize, options_dict, run_name
from helper.progress import Progress
from helper.runlock import check_free, claim, folder_state
from helper.step_graph import make_step_graph
from helper.util import learning_rate_at, pick_device, rng_state, set_learning_rate, set_rng_state, set_seed
from models import pretrained

WRITE_ERROR_EXIT = 4  # a file of the run could not be written (disk full, quota, permissions)
LOG_COLUMNS = ('epoch', 'train_acc', 'train_loss', 'test_acc', 'test_loss', 'test_acc_top5', 'lr',
               'loss_ce', 'loss_kd', 'loss_method', 'loss_mc')


def run_dir_of(opt, kind):
    sub = 'models' if kind == 'teacher' else 'student_model'
    return os.path.join(opt.save_root, sub, run_name(opt, kind))


def model_name(opt, kind):
    return opt.model if kind == 'teacher' else opt.model_s


class StopFlag:
    """SIGTERM/SIGINT set a flag; the loop finishes its step, checkpoints and stops."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if hasattr(signal, 'SIGTERM') and _in_main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum

    def requested(self, sync_point=True):
        if self.signum is None and cotrain.stop_signal() is not None:  # caught by the co-training process
            self.signum = cotrain.stop_signal()
        if dist.active():  # ranks agree on where to stop, at --print_freq boundaries only
            if not sync_point:
                return False
            flag = torch.tensor([1.0 if self.signum else 0.0])
            flag = dist.all_reduce_sum(flag.to(_dist_device()))
            if flag.item() > 0 and self.signum is None:
                self.signum = signal.SIGTERM
        return self.signum is not None

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _in_main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def _dist_device():
    return torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() and \
        torch.distributed.get_backend() == 'nccl' else torch.device('cpu')


class Context:
    """What the loops need, by name."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def resolve_speed_flags(opt, device):
    """--fast turns on what pays off on this device: autocast on CUDA and on CPUs with native bf16
    (AMX or AVX512-BF16; emulated bf16 is several times slower than fp32), compile everywhere."""
    if opt.fast:
        opt.data_on_device = True
        opt.channels_last = True
        opt.compile = True
        if device.type == 'cuda' or (device.type == 'cpu' and cpu_bf16_native()):
            opt.amp = True
    if getattr(opt, 'teacher_batch', None) is None:
        opt.teacher_batch = 8 if opt.fast and device.type == 'cuda' else 1
    if opt.teacher_batch < 1:
        raise UsageError(f'--teacher_batch must be at least 1, got {opt.teacher_batch}')
    if opt.amp:
        if device.type == 'cuda':
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device.type == 'cpu':
            dtype = torch.bfloat16
        else:
            dtype = torch.float16
    else:
        dtype = None
    return dtype


def make_optimizer(params, opt, device):
    # one fused kernel instead of one per tensor: part of the --compile/--fast launch savings
    fused = bool(opt.compile) and device.type == 'cuda'
    return torch.optim.SGD(params, lr=opt.learning_rate, momentum=opt.momentum,
                           weight_decay=opt.weight_decay, fused=fused or None)


def compile_modules(device, *modules, graphs=True, dynamic=None):
    """torch.compile in place (state_dict keys unchanged). On CUDA with CUDA graphs: these small
    CIFAR nets are bound by kernel launches, not arithmetic. graphs=False: --step_graph captures
    the whole step itself."""
    mode = 'reduce-overhead' if device.type == 'cuda' and graphs else None
    for module in modules:
        if module is not None:
            module.compile(mode=mode, dynamic=dynamic)


def make_autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def _log(msg):
    if dist.is_main():
        print(msg, flush=True)


def _progress_factory(opt):
    def make(total, desc):
        return Progress(total, desc=desc, print_freq=opt.print_freq, enable=dist.is_main())
    return make


def load_teacher(opt, num_classes):
    path = opt.path_t
    if pretrained.is_torchvision(path):  # the main process downloads, the others wait for it
        problem = None
        if dist.is_main():
            try:
                pretrained.resolve(path)
            except UsageError as e:
                problem = str(e)
        problem = dist.broadcast_object(problem)
        if problem:
            raise UsageError(problem)
        path = pretrained.resolve(path, download=False)
    teacher, meta = models.load_model(path, opt.model_t, num_classes=num_classes)
    return teacher, meta


def _existing_results(run_dir, kind, name):
    """Describe finished or resumable results already in run_dir (None when there are none)."""
    summary = os.path.join(run_dir, 'summary.json')
    last = os.path.join(run_dir, f'{name}_last.pth')
    if os.path.exists(summary):
        try:
            s = read_json(summary)
        except (OSError, ValueError):
            return 'a run with an unreadable summary.json'
        if s.get('epochs_done'):  # a run killed before its first epoch ended has nothing to keep
            return f"a {s.get('status', 'unknown')} run, {s['epochs_done']}/{s.get('epochs', '?')} epochs"
    if any(os.path.exists(p) for p in resumable_paths(last)):
        return 'a resumable checkpoint'
    return None


RESUME_KEYS = ('epoch', 'model', 'optimizer', 'scaler', 'rng', 'opt', 'history')


def _watched_files(run_dir, last_path):
    """The files whose change means another process wrote to the run folder."""
    return [os.path.join(run_dir, 'summary.json')] + resumable_paths(last_path)


def _load_resume_checkpoint(opt, path):
    """The newest readable resumable checkpoint, and the newer files that could not be read."""
    ckpt, used, failed = load_resumable(path, RESUME_KEYS)
    if ckpt is None and not failed:
        raise UsageError(f'--resume: no checkpoint at {path}; start without --resume')
    if ckpt is None:
        tried = ', nor '.join(f'{p} ({why})' for p, why in failed)
        raise UsageError(f'--resume: cannot read {tried}; no resumable checkpoint is left: start a new --trial')
    if failed:
        _log(f'--resume: {failed[0][0]} cannot be read ({failed[0][1]}); continuing from the previous '
             f'checkpoint {used} (epoch {ckpt["epoch"]}), one checkpoint interval earlier')
    saved = ckpt.get('opt', {})
    if opt.seed_auto and 'seed' in saved:
        opt.seed = saved['seed']
    mine = options_dict(opt)
    key = differing_option(saved, mine)
    if key:
        raise UsageError(f'--resume: the checkpoint was made with --{key} {saved[key]} '
                         f'but this command has {mine[key]}; use the same options or another --trial')
    return ckpt, [p for p, _ in failed]


def run(opt, kind):
    """Train (or evaluate) one teacher or student run as the options say; returns its summary."""
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, released however the run ends
            return _run(opt, kind, held)
    finally:
        # The next run in this process (a search candidate) then starts as a fresh process
        # would: compiled graphs and their CUDA-graph memory pools are freed, not kept behind.
        if not cotrain.in_cotrain():  # co-trained runs: reset once all of them have ended
            torch.compiler.reset()


def _run(opt, kind, held):
    opt = finalize(opt, kind)
    if opt.dry_run:
        print(f'options OK: {run_name(opt, kind)}')
        return {'status': 'dry_run', 'run_dir': run_dir_of(opt, kind)}
    device = pick_device(opt.device)
    amp_dtype = resolve_speed_flags(opt, device)
    dist.init(device)
    if opt.sync_bn and dist.world_size() > 1 and device.type != 'cuda':
        raise UsageError('--sync_bn needs CUDA GPUs (SyncBatchNorm does not run on the CPU); drop it')
    if opt.seed_auto:  # each rank drew its own; the shards and the shuffle need one shared seed
        opt.seed = dist.broadcast_object(opt.seed)
    if opt.scale_lr and not getattr(opt, 'lr_scaled', False):
        opt.learning_rate *= dist.world_size()
        opt.lr_scaled = True
    name = model_name(opt, kind)
    run_dir = run_dir_of(opt, kind)
    last_path = os.path.join(run_dir, f'{name}_last.pth')

    # Everything that can fail on bad input happens before anything is written.
    ckpt, damaged, seen = None, [], None
    if not opt.test:
        problem = None
        if dist.is_main():
            seen = folder_state(_watched_files(run_dir, last_path))
            existing = _existing_results(run_dir, kind, name)
            try:
                check_free(run_dir)  # a live run holds the folder: refuse, --resume or not
                if opt.resume:
                    ckpt, damaged = _load_resume_checkpoint(opt, last_path)
            except UsageError as e:
                problem = str(e)
            if not problem and not opt.resume and existing:
                problem = (f'{run_dir} already holds {existing}; add --resume to continue it, '
                           f'or choose another --trial')
        problem = dist.broadcast_object(problem)
        if problem:
            raise UsageError(problem)
        ckpt = dist.broadcast_object(ckpt)
        if ckpt is not None and opt.seed_auto:
            opt.seed = ckpt['opt']['seed']
    set_seed(opt.seed)
    train_loader, test_loader, info = get_loaders(opt, device)
    student = models.build_model(name, num_classes=info['num_classes'], block_depth=opt.block_depth)
    teacher = method = mc = None
    if kind == 'student':
        teacher, _ = load_teacher(opt, info['num_classes'])
        size = info.get('image_size', 32)
        method_cls = METHODS[opt.distill]
        s_shapes = feature_shapes(student, method_cls.preact, size)
        t_shapes = feature_shapes(teacher, method_cls.preact, size)
        method = build_distiller(opt.distill, opt, s_shapes, t_shapes, info['n_data'])
        if opt.mc:
            n_stages = mc_stage_count(opt.model_s)
            check_mc_shapes(s_shapes, t_shapes, n_stages)
            mc = MilestoneChecking(opt.kd_T, mc_weights(opt.model_s, opt.block_depth, n_stages,
                                                         stage_weight_flags(opt)))
    autocast = make_autocast(device, amp_dtype)
    if opt.test:
        return _evaluate_only(opt, kind, name, run_dir, student, teacher, test_loader, device, autocast)

    step_module = DistillStep(student, method, mc, opt if kind == 'student' else None).to(device)
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    if opt.channels_last:
        step_module.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    params = list(student.parameters()) + (list(method.trainable.parameters()) if method is not None else [])
    optimizer = make_optimizer(params, opt, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    history, best_acc, best_epoch, start_epoch, init_done, partial = [], 0.0, 0, 1, False, None
    teacher_acc, wall_before = None, 0.0
    if ckpt is not None:
        student.load_state_dict(ckpt['model'])
        if method is not None:
            method.load_state_dict(ckpt['method'])
        optimizer.load_state_dict(ckpt['optimizer'])
        scaler.load_state_dict(ckpt['scaler'])
        history, best_acc, best_epoch = ckpt['history'], ckpt['best_acc'], ckpt['best_epoch']
        start_epoch, init_done, partial = ckpt['epoch'] + 1, ckpt['init_done'], ckpt.get('partial')
        teacher_acc, wall_before = ckpt.get('teacher_acc'), ckpt.get('wall_time_s', 0.0)
        set_rng_state(ckpt['rng'])

    train_module = dist.wrap(step_module, device, opt.sync_bn)
    step_graph = make_step_graph(opt, device, train_module, optimizer, amp_dtype, step_module.preact, _log)
    if opt.compile:
        try:
            compile_modules(device, train_module, graphs=step_graph is None)
            # the teacher sees a few fixed batch sizes (--teacher_batch chunks, the test batch):
            # kernels specialised to each, not one dynamic-shape graph
            compile_modules(device, teacher, graphs=step_graph is None, dynamic=False)
        except Exception as e:  # platforms without a compiler toolchain
            _log(f'--compile unavailable here ({type(e).__name__}: {e}); running eager')

    ctx = Context(opt=opt, device=device, step_module=train_module, teacher=teacher, optimizer=optimizer,
                  scaler=scaler, autocast=autocast, channels_last=opt.channels_last,
                  train_loader=train_loader, progress=_progress_factory(opt), log=_log, tb=None,
                  shared_teacher=cotrain.shared_teacher(), step_graph=step_graph)
    n_params = sum(p.numel() for p in student.parameters())
    _log(f'run folder: {run_dir}')
    depth = f' ({",".join(map(str, opt.block_depth))})' if opt.block_depth else ''
    _log(f'student {name}{depth}: {n_params:,} parameters; device {device}'
         f'{"; world size " + str(dist.world_size()) if dist.active() else ""}')
    if teacher is not None and teacher_acc is None:
        teacher_acc = validate(teacher, test_loader, device, autocast, opt.channels_last)['acc']
    if teacher is not None:
        _log(f'teacher {opt.model_t} accuracy: {teacher_acc:.2f}')

    started = time.time()
    state = {'history': history, 'best_acc': best_acc, 'best_epoch': best_epoch, 'init_done': init_done,
             'teacher_acc': teacher_acc}

    def summary(status, epochs_done):
        last = history[-1]['test_acc'] if history else None
        return {'status': status, 'kind': kind, 'model_s': name,
                'model_t': opt.model_t if kind == 'student' else None,
                'distill': opt.distill if kind == 'student' else None,
                'mc': int(getattr(opt, 'mc', 0)), 'block_depth': opt.block_depth, 'dataset': opt.dataset,
                'trial': opt.trial, 'best_acc': state['best_acc'], 'best_epoch': state['best_epoch'],
                'last_acc': last, 'teacher_acc': teacher_acc, 'params': n_params, 'epochs': opt.epochs,
                'epochs_done': epochs_done, 'wall_time_s': round(wall_before + time.time() - started, 2),
                'run_dir': run_dir, 'options': options_dict(opt)}

    def checkpoint(epoch, partial_state=None):
        return {'epoch': epoch, 'model': student.state_dict(),
                'method': method.state_dict() if method is not None else {},
                'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(), 'rng': rng_state(),
                'opt': options_dict(opt), 'history': history, 'best_acc': state['best_acc'],
                'best_epoch': state['best_epoch'], 'init_done': state['init_done'], 'partial': partial_state,
                'teacher_acc': teacher_acc, 'wall_time_s': wall_before + time.time() - started}

    main = dist.is_main()
    tb = None
    problem = None
    if main:  # the first write: take the folder's lock (lost a race with another process: refuse)
        try:
            held.callback(claim(run_dir, seen, _watched_files(run_dir, last_path), log=_log).release)
        except UsageError as e:
            problem = str(e)
    problem = dist.broadcast_object(problem)
    if problem:
        raise UsageError(problem)
    if main:
        set_aside(damaged)
        remove_stale_temporaries(run_dir)
        from torch.utils.tensorboard import SummaryWriter
        tb = SummaryWriter(os.path.join(run_dir, 'tb'), purge_step=start_epoch)
        ctx.tb = tb
        write_json(summary('running', start_epoch - 1), os.path.join(run_dir, 'summary.json'))
        _write_log(run_dir, history)

    if ckpt is not None and ckpt['epoch'] >= opt.epochs and not ckpt.get('partial'):
        _log(f'{run_dir} is already finished; nothing to resume')
        if tb is not None:
            tb.close()
        done = summary('finished', opt.epochs)
        done['wall_time_s'] = round(wall_before, 2)
        if main:
            write_json(done, os.path.join(run_dir, 'summary.json'))
        return done

    def save_init_progress(init_epochs_done):
        if main:
            save_resumable(dict(checkpoint(0), init_epochs_done=init_epochs_done), last_path)

    epoch, stopped = start_epoch, 'in the init stage'
    try:
        with StopFlag() as stop:
            ctx.stop_requested = stop.requested
            if method is not None and method.has_init_stage and not state['init_done'] and opt.init_epochs > 0:
                method.to(device)
                run_init_stage(ctx, method, student, ckpt.get('init_epochs_done', 0) if ckpt else 0,
                               save_init_progress)
            state['init_done'] = True
            for epoch in range(start_epoch, opt.epochs + 1):
                lr = learning_rate_at(epoch, opt)
                set_learning_rate(optimizer, lr)
                set_seed(opt.seed * 1000 + epoch)  # the epoch's order and sampling replay on resume
                loader_set_epoch(train_loader, epoch)
                resumed = partial if partial and partial.get('epoch') == epoch else None
                partial = None
                epoch_state = EpochState(device, resumed)
                epoch_started = time.time()
                if not train_one_epoch(ctx, epoch, epoch_state):
                    saved = dict(epoch_state.saved(), epoch=epoch)  # every rank: sums over ranks
                    if main:
                        save_resumable(checkpoint(epoch - 1, saved), last_path)
                        write_json(summary('stopped', epoch - 1), os.path.join(run_dir, 'summary.json'))
                    stopped = f'in epoch {epoch} after iteration {epoch_state.step}'
                    raise Preempted(stop.signum)
                train = epoch_state.averages()
                test = validate(student, test_loader, device, autocast, opt.channels_last)
                row = {'epoch': epoch, 'train_acc': train['acc'], 'train_loss': train['loss'],
                       'test_acc': test['acc'], 'test_loss': test['loss'], 'test_acc_top5': test['acc_top5'],
                       'lr': lr, 'loss_ce': train['ce'], 'loss_kd': train['kd'], 'loss_method': train['method'],
                       'loss_mc': train['mc']}
                history.append(row)
                new_best = row['test_acc'] > state['best_acc'] or state['best_epoch'] == 0  # 0% is a best too
                if new_best:  # on every rank (the test metrics are all-reduced): one summary everywhere
                    state['best_acc'], state['best_epoch'] = row['test_acc'], epoch
                _log(f'epoch {epoch}/{opt.epochs}: train acc {train["acc"]:.2f} loss {train["loss"]:.4f} | '
                     f'test acc {test["acc"]:.2f} top5 {test["acc_top5"]:.2f} loss {test["loss"]:.4f} | lr {lr:g} | '
                     f'{time.time() - epoch_started:.1f} s')
                if main:
                    _epoch_outputs(opt, kind, name, run_dir, student, optimizer, epoch, row, new_best, tb)
                    save_resumable(checkpoint(epoch), last_path)
                    _write_log(run_dir, history)
                    write_json(summary('running', epoch), os.path.join(run_dir, 'summary.json'))
                if stop.requested() and epoch < opt.epochs:
                    if main:
                        write_json(summary('stopped', epoch), os.path.join(run_dir, 'summary.json'))
                    stopped = f'after epoch {epoch}'
                    raise Preempted(stop.signum)
    except Preempted:
        _log(f'stopped by signal {stopped} (checkpoint written). To continue, rerun '
             f'the same command with --resume')
        raise
    except NonFiniteLoss:
        if main:
            write_json(summary('failed', len(history)), os.path.join(run_dir, 'summary.json'))
        raise
    finally:
        if tb is not None:
            tb.close()

    result = summary('finished', opt.epochs)
    if main:
        write_json(result, os.path.join(run_dir, 'summary.json'))
        append_line(os.path.join(opt.save_root, 'result.txt'),
                    f'{run_name(opt, kind)}\tbest {state["best_acc"]:.2f}\tlast {result["last_acc"]:.2f}')
        _log(f'best accuracy {state["best_acc"]:.2f} (epoch {state["best_epoch"]}), '
             f'last {result["last_acc"]:.2f}; summary: {os.path.join(run_dir, "summary.json")}')
    return result


def _epoch_outputs(opt, kind, name, run_dir, student, optimizer, epoch, row, new_best, tb):
    for key in ('train_acc', 'train_loss', 'test_acc', 'test_loss', 'test_acc_top5', 'lr'):
        tb.add_scalar(key.replace('_', '/', 1), row[key], epoch)
    for term in TERMS[1:]:
        tb.add_scalar(f'loss/{term}', row[f'loss_{term}'], epoch)
    weights = student.state_dict()
    if new_best:
        best = {'epoch': epoch, 'model': weights, 'best_acc': row['test_acc'], 'block_depth': opt.block_depth}
        if kind == 'teacher':
            best['accuracy'] = row['test_acc']
        save_checkpoint(best, os.path.join(run_dir, f'{name}_best.pth'))
    if epoch % opt.save_freq == 0 or epoch == opt.epochs:
        periodic = {'epoch': epoch, 'model': weights, 'accuracy': row['test_acc'], 'opt': options_dict(opt)}
        if kind == 'teacher':
            periodic['optimizer'] = optimizer.state_dict()
        save_checkpoint(periodic, os.path.join(run_dir, f'ckpt_epoch_{epoch}.pth'))


def _write_log(run_dir, history):
    lines = [','.join(LOG_COLUMNS)]
    for row in history:
        lines.append(','.join(f'{row[c]:.6g}' if isinstance(row[c], float) else str(row[c]) for c in LOG_COLUMNS))
    write_text('\n'.join(lines) + '\n', os.path.join(run_dir, 'log.csv'))


def _evaluate_only(opt, kind, name, run_dir, student, teacher, test_loader, device, autocast):
    path = os.path.join(run_dir, f'{name}_best.pth')
    if not os.path.exists(path):
        raise UsageError(f'--test 1: no trained model at {path}; train it first (same options, without --test)')
    state, _ = models.read_state_dict(path)
    student.load_state_dict(state)
    student.to(device)
    out = {'status': 'test', 'run_dir': run_dir, 'student': validate(student, test_loader, device, autocast)}
    _log(f'{name}: test acc {out["student"]["acc"]:.2f} top5 {out["student"]["acc_top5"]:.2f} '
         f'loss {out["student"]["loss"]:.4f}')
    if teacher is not None:
        teacher.to(device)
        out['teacher'] = validate(teacher, test_loader, device, autocast)
        _log(f'teacher {opt.model_t}: test acc {out["teacher"]["acc"]:.2f}')
    return out


def main(kind, parser, argv=None):
    """Script entry: one-line errors with exit code 2, non-zero exit after a preemption."""
    try:
        opt = parser.parse_args(argv)
        run(opt, kind)
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except Preempted as e:
        sig = e.args[0] if e.args else signal.SIGTERM
        return 128 + int(sig) if isinstance(sig, int) else 1
    except NonFiniteLoss as e:
        print(f'error: {e}', file=sys.stderr)
        return 3
    except WriteError as e:
        print(f'error: {e}; the previous checkpoint is intact: free space (or fix the permissions), '
              f'then rerun the same command with --resume', file=sys.stderr)
        return WRITE_ERROR_EXIT
    finally:
        dist.cleanup()
    return 0
