"""The trainer: one run's epochs, steps, checkpoints and logs, for every method alike."""
import os
import signal
import sys
import threading
import time

import torch

from dataset import loader_set_epoch
from helper.engine import compile_policy
from helper import dist
from helper.runs.checkpoint import TensorBoardLog, WriteError
from helper.engine.context import RunContext
from helper.engine.dot import DOT, check_dot_speed_flags, dot_forward_backward
from helper.errors import UsageError
from helper.engine.experiment import compile_modules, compile_teacher, make_autocast, make_optimizer
from helper.engine.loops import EpochState, NonFiniteLoss, Preempted, StudentWithLoss, forward_backward, validate
from helper.engine.options import options_dict
from helper.engine.progress import Progress
from helper.runs.run_folder import log_columns
from helper.engine.step_graph import make_step_graph
from helper.engine.teacher_batch import teacher_stream
from helper.engine.util import learning_rate_at, rng_state, set_learning_rate, set_rng_state, set_seed


class Trainer:
    """Trains exp (helper.engine.experiment) into folder (helper.runs.run_folder.RunFolder); ckpt: the
    checkpoint to resume from, or None; context: what the run shares with a co-training group
    (helper.engine.context.RunContext; default: a run alone)."""

    def __init__(self, opt, kind, exp, folder, device, amp_dtype, ckpt=None, context=None):
        self.opt, self.kind, self.exp, self.folder, self.device = opt, kind, exp, folder, device
        self.context = context or RunContext()
        self.student, self.teacher, self.method = exp.student, exp.teacher, exp.method
        self.train_loader, self.channels_last = exp.train_loader, opt.channels_last
        self.autocast = make_autocast(device, amp_dtype)
        self.module = StudentWithLoss(self.student, self.method).to(device)
        self.columns = log_columns(self.module.names)
        self._prepare_teacher()
        params = list(self.student.parameters()) + list(self.method.core.trainable.parameters())
        self.optimizer = make_optimizer(params, opt, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.dot = isinstance(self.optimizer, DOT)
        if self.dot:
            check_dot_speed_flags(opt, self.scaler)
        self.history, self.best_acc, self.best_epoch, self.start_epoch = [], 0.0, 0, 1
        self.init_done, self.init_epochs_done, self.init_optimizer, self.partial = False, 0, None, None
        self.teacher_acc, self.wall_before, self.started = None, 0.0, time.time()
        if ckpt is not None:
            self._restore(ckpt)
        self.train_module = dist.wrap(self.module, device, opt.sync_bn)
        self.step_graph = make_step_graph(opt, device, self.train_module, self.optimizer, amp_dtype,
                                          self.module.preact, self.log)
        self.compiled = bool(opt.compile) and self._compile()
        self.n_params = sum(p.numel() for p in self.student.parameters())
        self.tb, self.tb_iter = None, None
        self.epochs_saved = self.start_epoch - 1  # the epochs the resumable checkpoint holds
        self.main_stage = MainStage(self)

    def _compile(self):
        graphs, shared = self.step_graph is None, self.context.shared_teacher
        try:  # DOT: no CUDA graphs for the step, which takes two backward passes per forward
            compile_modules(self.device, self.train_module, graphs=graphs and not self.dot)
            if shared is None or not shared.module_compiled:  # a group's teacher compiles once
                compile_teacher(self.device, self.teacher, graphs=graphs)
                if shared is not None:
                    shared.module_compiled = True
            return True
        except Exception as e:  # platforms without a compiler toolchain
            self.log(f'--compile unavailable here ({type(e).__name__}: {e}); running eager')
            return False

    def _prepare_teacher(self):
        if self.channels_last:
            self.module.to(memory_format=torch.channels_last)
        shared = self.context.shared_teacher
        if self.teacher is not None and shared is not None and shared.module is not None:
            self.teacher = shared.module  # prepared by the group's first run
            return
        if self.teacher is not None:
            self.teacher.to(self.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            if self.channels_last:
                self.teacher.to(memory_format=torch.channels_last)
            if shared is not None:  # the group's first run: its teacher serves every later run
                shared.module = self.teacher

    def _restore(self, ckpt):
        self.student.load_state_dict(ckpt['model'])
        if self.kind == 'student':
            self.method.core.load_state_dict(ckpt['method'])
        self.optimizer.load_state_dict(ckpt['optimizer'])
        self.scaler.load_state_dict(ckpt['scaler'])
        self.history, self.best_acc, self.best_epoch = ckpt['history'], ckpt['best_acc'], ckpt['best_epoch']
        # an older log.csv keeps its columns (e.g. an always-zero loss_method)
        self.columns += tuple(k for row in self.history[:1] for k in row
                              if k.startswith('loss_') and k not in self.columns)
        self.start_epoch, self.init_done, self.partial = ckpt['epoch'] + 1, ckpt['init_done'], ckpt.get('partial')
        self.init_epochs_done, self.init_optimizer = ckpt.get('init_epochs_done', 0), ckpt.get('init_optimizer')
        self.teacher_acc, self.wall_before = ckpt.get('teacher_acc'), ckpt.get('wall_time_s', 0.0)
        set_rng_state(ckpt['rng'])

    def progress(self, total, desc):
        return Progress(total, desc=self.context.describe(desc), print_freq=self.opt.print_freq,
                        enable=dist.is_main())

    def log(self, msg):
        self.context.log(msg)

    # ------------------------------------------------------------ records

    def summary(self, status, epochs_done):
        opt, student_run = self.opt, self.kind == 'student'
        return {'status': status, 'kind': self.kind, 'model_s': self.folder.model,
                'model_t': opt.model_t if student_run else None, 'distill': opt.distill if student_run else None,
                'mc': int(opt.mc) if student_run else 0, 'block_depth': opt.block_depth,
                'dataset': opt.dataset, 'trial': opt.trial, 'best_acc': self.best_acc,
                'best_epoch': self.best_epoch, 'last_acc': self.history[-1]['test_acc'] if self.history else None,
                'teacher_acc': self.teacher_acc, 'params': self.n_params,
                'extra_params': self.method.core.extra_parameters(), 'epochs': opt.epochs,
                'epochs_done': epochs_done, 'wall_time_s': round(self.wall_time(), 2),
                'run_dir': self.folder.path, 'options': options_dict(opt), 'requested_options': opt.requested,
                'identity': self.folder.identity,
                # log.csv's loss_* columns are unweighted: what each term counts in the total
                'term_weights': {t: float(w) for t, w in self.method.weights.items()}}

    def wall_time(self):
        return self.wall_before + time.time() - self.started

    def checkpoint(self, epoch, partial=None):
        """The resumable checkpoint (plain data): everything --resume needs to continue exactly."""
        return {'epoch': epoch, 'model': self.student.state_dict(),
                'method': self.method.core.state_dict() if self.kind == 'student' else {},
                'optimizer': self.optimizer.state_dict(), 'scaler': self.scaler.state_dict(),
                'rng': rng_state(), 'opt': options_dict(self.opt), 'requested_options': self.opt.requested,
                'history': self.history,
                'best_acc': self.best_acc, 'best_epoch': self.best_epoch, 'init_done': self.init_done,
                'partial': partial, 'teacher_acc': self.teacher_acc, 'wall_time_s': self.wall_time()}

    def save(self, status, epochs_done, checkpoint=None):
        """On the main process: the resumable checkpoint (if given), log.csv and summary.json."""
        if not dist.is_main():
            return
        if checkpoint is not None:
            self.folder.save_last(checkpoint)
            self.epochs_saved = checkpoint['epoch']
        self.folder.write_log(self.history, self.columns)
        self.folder.write_summary(self.summary(status, epochs_done))

    def epoch_outputs(self, epoch, row, new_best):
        """TensorBoard scalars, the best weights and the periodic ckpt_epoch_N.pth of one epoch."""
        for key in ('train_acc', 'train_loss', 'test_acc', 'test_loss', 'test_acc_top5', 'lr'):
            self.tb.add_scalar(key.replace('_', '/', 1), row[key], epoch)
        for term in self.module.names[1:]:
            self.tb.add_scalar(f'loss/{term}', row[f'loss_{term}'], epoch)
        weights, opt = self.student.state_dict(), self.opt
        if new_best:
            best = {'epoch': epoch, 'model': weights, 'best_acc': row['test_acc'], 'block_depth': opt.block_depth}
            if self.kind == 'teacher':
                best['accuracy'] = row['test_acc']
            self.folder.save_best(best)
        if epoch % opt.save_freq == 0 or epoch == opt.epochs:
            periodic = {'epoch': epoch, 'model': weights, 'accuracy': row['test_acc'], 'opt': options_dict(opt)}
            if self.kind == 'teacher':
                periodic['optimizer'] = self.optimizer.state_dict()
            self.folder.save_epoch(epoch, periodic)

    # ------------------------------------------------------------ training

    def fit(self, test_loader):
        """Train to --epochs (or stop on a signal with a resumable checkpoint); the summary."""
        opt = self.opt
        marks = [time.time()]  # start, first epoch, then each epoch's end
        fresh = self.start_epoch == 1 and not self.partial
        self.announce(test_loader)
        self.claim_folder()
        try:
            if dist.is_main():
                self.tb = TensorBoardLog(self.folder.file('tb'), purge_step=self.start_epoch)
                self.save('running', self.start_epoch - 1)
            if self.start_epoch > opt.epochs and not self.partial:
                self.log(f'{self.folder.path} is already finished; nothing to resume')
                done = dict(self.summary('finished', opt.epochs), wall_time_s=round(self.wall_before, 2))
                if dist.is_main():
                    self.folder.write_summary(done)
                    if self.result_line(done) not in self.folder.results(opt.save_root):  # its write failed
                        self.folder.append_result(opt.save_root, self.result_line(done))
                return done
            self.where = 'in the init stage'
            with self.context.catching_signals():
                self.run_init_stage()
                marks.append(time.time())
                for epoch in range(self.start_epoch, opt.epochs + 1):
                    self.run_epoch(epoch, test_loader)
                    marks.append(time.time())
            if fresh:
                self.record_costs(marks)
            self.close_tb()
            return self.finish()
        except Preempted:
            self.log(f'stopped by signal {self.where} (checkpoint written). To continue, rerun '
                     f'the same command with --resume')
            raise
        except RuntimeError as err:
            self.stop_if_a_worker_died_of_the_signal(err)
            self.record_failure(err)
            raise
        except BaseException as err:
            self.record_failure(err)
            raise
        finally:
            self.close_tb(quiet=sys.exc_info()[1] is not None)  # the first error is the one reported

    def stop_if_a_worker_died_of_the_signal(self, err):
        """Preempted, at the last checkpoint, when err is a loader worker's death while a stop
        signal is being handled (the worker got it too); otherwise nothing."""
        signum = self.context.stop.signum
        if not signum or dist.active() or 'DataLoader worker' not in str(err):
            return
        if threading.current_thread() is threading.main_thread():  # the other workers' deaths: no more errors
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.log(f'stopped by signal (a loader worker ended with it; the checkpoint of epoch {self.epochs_saved} '
                 f'is kept). To continue, rerun the same command with --resume')
        if dist.is_main():
            self.folder.write_summary(self.summary('stopped', self.epochs_saved))
        raise Preempted(signum) from None

    def close_tb(self, quiet=False):
        writers, self.tb, self.tb_iter = (self.tb, self.tb_iter), None, None
        for tb in writers:
            if tb is None:
                continue
            try:
                tb.close()
            except OSError:
                if not quiet:
                    raise

    def record_failure(self, err):
        """summary.json says 'failed' with the one-line reason (when it can still be written)."""
        if not dist.is_main():
            return
        reason = ' '.join(str(err).split()) or type(err).__name__
        try:
            self.folder.write_summary(dict(self.summary('failed', self.epochs_saved), error=reason))
        except OSError:
            pass  # a full disk: the error itself is reported

    def record_costs(self, marks):
        """Start-up and epoch times of a whole fresh run, for --fast's later compile decisions."""
        core = self.method.core
        if (dist.is_main() and self.context.alone  # a group's runs share their time
                and not (getattr(core, 'has_init_stage', False) and self.opt.init_epochs > 0)):
            startup, *epochs = [b - a for a, b in zip(marks, marks[1:])]
            compile_policy.record(self.opt, self.device, epochs, len(self.train_loader), self.compiled, startup)

    def claim_folder(self):
        """The first write: the main process locks the run folder; every rank stops if it lost
        the folder to another process."""
        problem = None
        if dist.is_main():
            try:
                self.folder.prepare(self.log)
            except (UsageError, WriteError) as e:
                problem = e
        problem = dist.broadcast_object(problem)
        if problem:
            raise problem

    def announce(self, test_loader):
        opt = self.opt
        self.log(f'run folder: {self.folder.path}')
        depth = f' ({",".join(map(str, opt.block_depth))})' if opt.block_depth else ''
        self.log(f'{self.kind} {self.folder.model}{depth}: {self.n_params:,} parameters; device {self.device}'
            f'{"; world size " + str(dist.world_size()) if dist.active() else ""}')
        if self.teacher is not None:
            shared = self.context.shared_teacher
            if self.teacher_acc is None and shared is not None:
                self.teacher_acc = shared.accuracy  # the group's teacher, measured once
            if self.teacher_acc is None:
                self.teacher_acc = validate(self.teacher, test_loader, self.device, self.autocast,
                                            self.channels_last)['acc']
            if shared is not None and shared.accuracy is None:
                shared.accuracy = self.teacher_acc
            self.log(f'teacher {opt.model_t} accuracy: {self.teacher_acc:.2f}')

    def finish(self):
        opt, result = self.opt, self.summary('finished', self.opt.epochs)
        if dist.is_main():
            self.folder.write_summary(result)
            self.folder.append_result(opt.save_root, self.result_line(result))
            self.log(f'best accuracy {self.best_acc:.2f} (epoch {self.best_epoch}), last {result["last_acc"]:.2f}; '
                     f'summary: {self.folder.summary_path}')
        return result

    def result_line(self, result):
        # the folder's name: with its identity suffix it tells apart runs that share a readable name
        return f'{os.path.basename(self.folder.path)}\tbest {self.best_acc:.2f}\tlast {result["last_acc"]:.2f}'

    def run_init_stage(self):
        """The published init stage of AB, FT and FSP, epoch by epoch through the same loop; a stop
        checkpoints the init epochs done (and the part of one), which --resume continues."""
        core, opt = self.method.core, self.opt
        if getattr(core, 'has_init_stage', False) and not self.init_done and opt.init_epochs > 0:
            core.to(self.device)
            stage = InitStage(self, core, self.student, self.init_optimizer)
            self.log(f'init stage of {opt.distill}: {opt.init_epochs} epochs at lr {stage.lr:g}, '
                     f'{sum(p.numel() for p in stage.params)} parameters')
            for epoch in range(self.init_epochs_done + 1, opt.init_epochs + 1):
                done, state = init_epoch(self, stage, epoch, self.take_partial(epoch, 'init'))
                if done:
                    self.log(f'init epoch {epoch}: loss {state.averages()["loss"]:.4f}')
                if not done or self.context.stop.requested():
                    partial = None if done else dict(state.saved(), epoch=epoch, stage='init')
                    self.save('stopped', 0, dict(self.checkpoint(0, partial), init_epochs_done=epoch - (not done),
                                                 init_optimizer=stage.optimizer.state_dict()))
                    self.where = f'after init epoch {epoch}' if done else \
                        f'in init epoch {epoch} after iteration {state.step}'
                    raise Preempted(self.context.stop.signum)
        self.init_done = True

    def take_partial(self, epoch, stage):
        """What a mid-epoch checkpoint saved of this epoch of this stage ('main' or 'init'), once."""
        partial, self.partial = self.partial, None
        if partial and partial.get('epoch') == epoch and partial.get('stage', 'main') == stage:
            return partial
        return None

    def run_epoch(self, epoch, test_loader):
        """One epoch, its validation and its records; Preempted when a stop was requested."""
        opt, stop = self.opt, self.context.stop
        lr = learning_rate_at(epoch, opt)
        set_learning_rate(self.optimizer, lr)
        start_epoch_data(self, epoch)
        state = EpochState(self.module.names, self.device, self.take_partial(epoch, 'main'))
        started = time.time()
        if not self.train_epoch(epoch, state):
            saved = dict(state.saved(), epoch=epoch)  # every rank: sums over ranks
            self.save('stopped', epoch - 1, self.checkpoint(epoch - 1, saved))
            self.where = f'in epoch {epoch} after iteration {state.step}'
            raise Preempted(stop.signum)
        train = state.averages()
        test = validate(self.student, test_loader, self.device, self.autocast, self.channels_last)
        row = {'epoch': epoch, 'train_acc': train['acc'], 'train_loss': train['loss'], 'test_acc': test['acc'],
               'test_loss': test['loss'], 'test_acc_top5': test['acc_top5'], 'lr': lr}
        row.update((f'loss_{t}', train[t]) for t in self.module.names[1:])
        self.history.append(row)
        new_best = row['test_acc'] > self.best_acc or self.best_epoch == 0  # 0% is a best too
        if new_best:  # on every rank (the test metrics are all-reduced): one summary everywhere
            self.best_acc, self.best_epoch = row['test_acc'], epoch
        self.log(f'epoch {epoch}/{opt.epochs}: train acc {train["acc"]:.2f} loss {train["loss"]:.4f} | '
                 f'test acc {test["acc"]:.2f} top5 {test["acc_top5"]:.2f} loss {test["loss"]:.4f} | lr {lr:g} | '
                 f'{time.time() - started:.1f} s')
        if dist.is_main():
            self.epoch_outputs(epoch, row, new_best)
        self.save('running', epoch, self.checkpoint(epoch))
        if stop.requested() and epoch < opt.epochs:
            self.save('stopped', epoch)
            self.where = f'after epoch {epoch}'
            raise Preempted(stop.signum)

    def train_epoch(self, epoch, state, stage=None):
        """Train one epoch of a stage (the main one by default) until the loader ends or a stop is
        requested. True if the epoch completed."""
        return train_epoch(self, stage or self.main_stage, epoch, state)

    def tb_iteration(self, logit, terms, target, step):
        """This iteration's own loss terms, batch accuracy and lr, at a step counted over the run."""
        if self.tb_iter is None:
            # steps count iterations, not epochs: a writer of their own, which on a resume drops
            # what an earlier process logged from this step on
            self.tb_iter = TensorBoardLog(self.folder.file(os.path.join('tb', 'iterations')), purge_step=step)
        values = terms.detach().float().tolist()
        self.tb_iter.add_scalar('train_iter/loss', values[0], step)
        for name, value in zip(self.module.names[1:], values[1:]):
            self.tb_iter.add_scalar(f'train_iter/loss_{name}', value, step)
        acc = (logit.detach().argmax(1) == target).float().mean().item() * 100
        self.tb_iter.add_scalar('train_iter/acc', acc, step)
        self.tb_iter.add_scalar('train_iter/lr', self.optimizer.param_groups[0]['lr'], step)

    def step(self, batch, teacher_out, epoch, state, it, epoch_t=None):
        """One optimizer step on one batch already on the device: (logit, loss terms).
        teacher_out: the teacher's (feats, logit) for it, or None without a teacher."""
        epoch_arg = epoch if epoch_t is None else epoch_t
        try:
            if self.step_graph is not None:  # --step_graph: the optimizer step is in the graph
                return self.step_graph.step(batch, teacher_out, epoch_arg)
            if self.dot:  # the plain module under DDP too: it averages the gradients itself
                module = getattr(self.train_module, 'module', self.train_module)
                return dot_forward_backward(module, batch, teacher_out, epoch_arg, self.autocast, self.optimizer)
            logit, terms = forward_backward(self.train_module, batch, teacher_out, epoch_arg, self.autocast,
                                            self.optimizer, self.scaler)
        except RuntimeError as err:
            self.raise_if_weights_broken(state, epoch, it, err)
            raise
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return logit, terms

    def raise_if_weights_broken(self, state, epoch, it, err):
        """A step that fails on non-finite weights (an SVD refuses NaN input, say) is a non-finite
        loss or gradient of an earlier step: report that, not a traceback from inside the method."""
        if state.first_bad.item() >= 0:  # a term went bad first (no collective: other ranks may not fail)
            raise NonFiniteLoss(state.non_finite_message(epoch)) from err
        params = [p for group in self.optimizer.param_groups for p in group['params']]
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise NonFiniteLoss(f'the weights went non-finite before epoch {epoch}, iteration {it + 1} (a '
                                f'gradient was non-finite while the loss was finite), and that iteration '
                                f'failed ({type(err).__name__.lstrip("_")}); the last good checkpoint '
                                f'is kept') from err


def start_epoch_data(ctx, loader_epoch):
    """Seed the epoch: its order and sampling replay on resume."""
    set_seed(ctx.opt.seed * 1000 + loader_epoch)
    loader_set_epoch(ctx.train_loader, loader_epoch)


def train_epoch(ctx, stage, epoch, state):
    """The loop of every stage: one epoch until the loader ends or a stop is requested; True if it
    completed. ctx: a Trainer, or what of one the loop reads (opt, train_loader, teacher, device,
    channels_last, autocast, context, progress)."""
    opt, n_steps, skip, where = ctx.opt, len(ctx.train_loader), state.step, stage.where(epoch)
    stage.begin(epoch)
    if ctx.teacher is not None:
        ctx.teacher.eval()
    progress = ctx.progress(n_steps - skip, stage.desc(epoch))
    # batches on the device, the resume skip done, and the teacher's outputs (--teacher_batch)
    for it, batch, teacher_out in teacher_stream(ctx, (stage.name, epoch), skip, stage.preact):
        logit, terms = stage.step(batch, teacher_out, epoch, state, it)
        state.update(terms, logit, batch['target'], it)
        state.step = it + 1
        boundary = (it + 1) % opt.print_freq == 0 or it + 1 == n_steps
        if boundary:
            state.check_finite(where)
            avg = state.averages()
            progress.update(1, **{k: avg[k] for k in stage.shown})
        else:
            progress.update(1)
        stage.after_step(logit, terms, batch['target'], (epoch - 1) * n_steps + it + 1)
        if ctx.context.stop.requested(sync_point=boundary):
            state.check_finite(where)
            progress.close()
            return False
    progress.close()
    state.check_finite(where)
    return True


class MainStage:
    """The main stage: the student and the method's modules on the method's terms (Trainer.step)."""
    name, shown = 'main', ('loss', 'acc')

    def __init__(self, trainer):
        self.trainer, self.preact = trainer, trainer.module.teacher_preact

    def begin(self, epoch):
        self.trainer.train_module.train()
        # the step gets the epoch as a tensor: a compiled step sees a new value, not a new constant
        self.epoch_t = torch.tensor(float(epoch), device=self.trainer.device)

    def desc(self, epoch):
        return f'epoch {epoch}/{self.trainer.opt.epochs}'

    def where(self, epoch):
        return epoch

    def step(self, batch, teacher_out, epoch, state, it):
        return self.trainer.step(batch, teacher_out, epoch, state, it, self.epoch_t)

    def after_step(self, logit, terms, target, run_step):
        """run_step: iterations since the run began."""
        t = self.trainer
        if t.tb is not None and run_step % t.opt.tb_freq == 0:
            t.tb_iteration(logit, terms, target, run_step)


# init epoch k draws the loader's epoch INIT_LOADER_EPOCH + k: orders of its own, apart from the main epochs'
INIT_LOADER_EPOCH = 10 ** 6


class InitStage:
    """Published init stage of AB, FT and FSP: only the method's init modules train, on its init
    loss, with SGD at method.init_lr(opt) (momentum and weight decay as the main stage's).
    ctx: as train_epoch's; saved: the init optimizer's state from a checkpoint, or None."""
    name, shown, names = 'init', ('loss',), ('loss',)

    def __init__(self, ctx, method, student, saved=None):
        self.opt = opt = ctx.opt
        self.method, self.student, self.autocast = method, student, ctx.autocast
        self.modules, self.preact, self.lr = method.init_modules(student), method.preact, method.init_lr(opt)
        self.params = [p for p in self.modules.parameters() if p.requires_grad]
        student_ids = {id(p) for p in student.parameters()}
        self.needs_student = any(id(p) in student_ids for p in self.params)
        self.optimizer = torch.optim.SGD(self.params, lr=self.lr, momentum=opt.momentum,
                                         weight_decay=opt.weight_decay)
        if saved:
            self.optimizer.load_state_dict(saved)

    def begin(self, epoch):
        self.modules.train()

    def desc(self, epoch):
        return f'init {epoch}/{self.opt.init_epochs}'

    def where(self, epoch):
        return f'init epoch {epoch}'

    def step(self, batch, teacher_out, epoch, state, it):
        s_feats = None
        if self.needs_student:
            with self.autocast():
                s_feats, _ = self.student(batch['input'], is_feat=True, preact=self.preact)
            s_feats = [f.float() for f in s_feats]
        loss = self.method.init_loss(s_feats, teacher_out[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(self.params)
        self.optimizer.step()
        return None, loss.detach().float().view(1)

    def after_step(self, logit, terms, target, run_step):
        pass


def init_epoch(ctx, stage, epoch, partial=None):
    """One epoch of the init stage (ctx: as train_epoch's): (whether it completed, its EpochState)."""
    start_epoch_data(ctx, INIT_LOADER_EPOCH + epoch)
    state = EpochState(stage.names, ctx.device, partial)
    return train_epoch(ctx, stage, epoch, state), state
