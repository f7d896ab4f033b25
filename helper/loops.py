"""One training step, one epoch, validation and the init stage, for every method alike.

Nothing here knows which distillation method runs: the method object (distiller_zoo) picks its
features and computes its own loss. Meters stay on the device and are read every --print_freq
iterations, so a step never waits for the GPU.
"""
import signal

import torch
import torch.nn as nn
import torch.nn.functional as F

from distiller_zoo.logit_stand import standardize
from helper import dist

TERMS = ('loss', 'ce', 'kd', 'method', 'mc')  # order of the loss terms in the meters


class NonFiniteLoss(RuntimeError):
    pass


class Preempted(Exception):
    """SIGTERM/SIGINT arrived; a resumable checkpoint has been written."""


def at_least_fp32(t):
    """Losses run in fp32 under autocast; float64 (exactness tests) stays float64."""
    return t if t.dtype == torch.float64 else t.float()


def kd_loss(s_logit, t_logit, T, logit_stand=False):
    """Hinton's KD: KL(teacher || student) at temperature T, times T^2, averaged over the batch.
    logit_stand: on standardized logits, T the base temperature (Sun et al., 2024)."""
    if logit_stand:
        s_logit, t_logit = standardize(s_logit), standardize(t_logit)
    p_s = F.log_softmax(s_logit / T, dim=1)
    p_t = F.softmax(t_logit / T, dim=1)
    return F.kl_div(p_s, p_t, reduction='sum') * (T ** 2) / s_logit.shape[0]


class DistillStep(nn.Module):
    """Student plus the method's trainable modules: one forward returns every loss term.

    Being one module is what lets DistributedDataParallel wrap the student and its auxiliary
    modules together. Without a method it is plain cross-entropy training (train_teacher.py).
    """

    def __init__(self, student, method=None, mc=None, opt=None):
        super().__init__()
        self.student = student
        self.method = method
        self.mc = mc
        if method is not None:
            self.gamma, self.alpha, self.beta = opt.gamma, opt.alpha, opt.beta
            self.mc_weight, self.kd_T = opt.mc_weight, opt.kd_T
            self.logit_stand = bool(getattr(opt, 'logit_stand', False))

    @property
    def preact(self):
        return bool(self.method is not None and self.method.preact)

    def forward(self, batch, t_feats=None, t_logit=None):
        x, target = batch['input'], batch['target']
        if self.method is None:
            logit = self.student(x)
            with torch.autocast(x.device.type, enabled=False):
                ce = F.cross_entropy(at_least_fp32(logit), target)
            zero = ce.new_zeros(())
            return logit, torch.stack([ce, ce, zero, zero, zero])
        feats, logit = self.student(x, is_feat=True, preact=self.preact)
        # losses in fp32 even under autocast: KL and contrastive terms are precision-sensitive
        with torch.autocast(x.device.type, enabled=False):
            feats = [at_least_fp32(f) for f in feats]
            logit_f = at_least_fp32(logit)
            ce = F.cross_entropy(logit_f, target)
            kd = kd_loss(logit_f, t_logit, self.kd_T, self.logit_stand)
            method = self.method(feats, logit_f, t_feats, t_logit, batch)
            mc = self.mc(feats, t_feats) if self.mc is not None else ce.new_zeros(())
            loss = self.gamma * ce + self.alpha * kd + self.beta * (method + self.mc_weight * mc)
        return logit, torch.stack([loss, ce, kd, method.reshape(()), mc.reshape(())])

    def set_epoch(self, epoch):
        if self.method is not None:
            self.method.set_epoch(epoch)


def teacher_forward(teacher, x, preact, autocast):
    """Frozen teacher under inference mode; cloned so the features can be autograd targets."""
    with torch.inference_mode(), autocast():
        feats, logit = teacher(x, is_feat=True, preact=preact)
    return [at_least_fp32(f).clone() for f in feats], at_least_fp32(logit).clone()


def forward_backward(step_module, teacher, batch, preact, autocast, optimizer, scaler, teacher_out=None):
    """One step up to its gradients (the optimizer step is the caller's); returns (logit, terms).
    teacher_out: the teacher's (feats, logit) for this batch when computed already."""
    t_feats = t_logit = None
    if teacher_out is not None:
        t_feats, t_logit = teacher_out
    elif teacher is not None:
        t_feats, t_logit = teacher_forward(teacher, batch['input'], preact, autocast)
    with autocast():
        logit, terms = step_module(batch, t_feats, t_logit)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms[0]).backward()
    return logit, terms


def to_device(batch, device, channels_last=False):
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if channels_last:
        out['input'] = out['input'].contiguous(memory_format=torch.channels_last)
    return out


class EpochState:
    """Device-side sums of one epoch's loss terms and hits; survives a mid-epoch checkpoint."""

    def __init__(self, device, saved=None):
        self.sums = torch.zeros(len(TERMS) + 1, dtype=torch.float64, device=device)  # + correct
        self.count = 0
        self.step = 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_terms = torch.zeros(len(TERMS), dtype=torch.bool, device=device)
        if saved:
            self.step = saved['step']
            if dist.is_main():  # saved sums are over all ranks: count them once
                self.sums.copy_(saved['sums'])
                self.count = saved['count']

    def update(self, terms, logit, target, step):
        n = target.shape[0]
        correct = (logit.detach().argmax(1) == target).sum()
        self.sums += torch.cat([terms.detach().double() * n, correct.double().view(1)])
        self.count += n
        finite = torch.isfinite(terms.detach())
        first = (self.first_bad < 0) & ~finite.all()
        self.bad_terms = torch.where(first, ~finite, self.bad_terms)
        self.first_bad = torch.where(first, torch.full_like(self.first_bad, step), self.first_bad)

    def check_finite(self, epoch):
        """Raise naming the epoch, iteration and term where the loss first went non-finite."""
        first_bad = dist.all_reduce_sum(self.first_bad.clamp(min=-1).clone() + 1)
        if first_bad.item() > 0:
            raise NonFiniteLoss(self.non_finite_message(epoch))

    def non_finite_message(self, epoch):
        it = int(self.first_bad.item())
        names = [t for t, bad in zip(TERMS, self.bad_terms.tolist()) if bad]
        return (f'loss went non-finite at epoch {epoch}, iteration {it + 1} '
                f'(term: {", ".join(names[1:] or names)}); the last good checkpoint is kept')

    def _totals(self):
        sums = dist.all_reduce_sum(self.sums.clone())
        count = dist.all_reduce_sum(torch.tensor(float(self.count), device=sums.device)).item()
        return sums, int(count)

    def averages(self):
        sums, count = self._totals()
        values = (sums / max(count, 1)).tolist()
        out = dict(zip(TERMS, values))
        out['acc'] = 100.0 * values[-1]
        return out

    def saved(self):
        """The epoch so far, summed over ranks (call on every rank)."""
        sums, count = self._totals()
        return {'sums': sums.cpu(), 'count': count, 'step': self.step}


def train_one_epoch(ctx, epoch, state):
    """Train until the loader ends or a stop is requested. Returns True if the epoch completed."""
    step_module, opt = ctx.step_module, ctx.opt
    unwrapped(step_module).set_epoch(epoch)
    step_module.train()
    if ctx.teacher is not None:
        ctx.teacher.eval()
    n_steps = len(ctx.train_loader)
    skip = state.step
    progress = ctx.progress(n_steps - skip, f'epoch {epoch}/{opt.epochs}')
    from helper.teacher_batch import teacher_stream  # imported here: that module imports this one
    for it, batch, teacher_out in teacher_stream(ctx, epoch, skip, step_module_preact(ctx)):
        graph = getattr(ctx, 'step_graph', None)  # --step_graph: the optimizer step is in the graph
        try:
            if graph is not None:
                logit, terms = graph.step(batch, teacher_out)
            else:
                logit, terms = forward_backward(step_module, ctx.teacher, batch, step_module_preact(ctx),
                                                ctx.autocast, ctx.optimizer, ctx.scaler, teacher_out)
        except RuntimeError as err:
            raise_if_weights_broken(ctx, state, epoch, it, err)
            raise
        if graph is None:
            ctx.scaler.step(ctx.optimizer)
            ctx.scaler.update()
        state.update(terms, logit, batch['target'], it)
        state.step = it + 1
        if (it + 1) % opt.print_freq == 0 or it + 1 == n_steps:
            state.check_finite(epoch)
            avg = state.averages()
            progress.update(1, loss=avg['loss'], acc=avg['acc'])
            if ctx.tb is not None and (it + 1) % opt.tb_freq == 0:
                ctx.tb.add_scalar('train/loss_iter', avg['loss'], (epoch - 1) * n_steps + it + 1)
        else:
            progress.update(1)
        if ctx.stop_requested(sync_point=(it + 1) % opt.print_freq == 0 or it + 1 == n_steps):
            state.check_finite(epoch)
            progress.close()
            return False
    progress.close()
    state.check_finite(epoch)
    return True


def raise_if_weights_broken(ctx, state, epoch, it, err):
    """A step that fails on non-finite weights (an SVD refuses NaN input, say) is a non-finite
    loss or gradient of an earlier step: report that, not a traceback from deep inside the method."""
    if state.first_bad.item() >= 0:  # a loss term went bad first (no collective here: other ranks may not fail)
        raise NonFiniteLoss(state.non_finite_message(epoch)) from err
    params = [p for group in ctx.optimizer.param_groups for p in group['params']]
    if not all(bool(torch.isfinite(p).all()) for p in params):
        raise NonFiniteLoss(f'the weights went non-finite before epoch {epoch}, iteration {it + 1} (a gradient '
                            f'was non-finite while the loss was finite), and that iteration failed '
                            f'({type(err).__name__.lstrip("_")}); the last good checkpoint is kept') from err


def unwrapped(step_module):
    """The DistillStep inside a DistributedDataParallel wrapper."""
    return step_module.module if hasattr(step_module, 'module') else step_module


def step_module_preact(ctx):
    return unwrapped(ctx.step_module).preact


@torch.no_grad()
def validate(model, loader, device, autocast, channels_last=False):
    """Top-1, top-5 (percent) and mean cross-entropy over the whole test set (all ranks)."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n
    for batch in loader:
        batch = to_device(batch, device, channels_last)
        with autocast():
            logit = model(batch['input'])
        logit = logit.float()
        target = batch['target']
        k5 = min(5, logit.shape[1])
        top = logit.topk(k5, dim=1).indices.eq(target.view(-1, 1))
        sums += torch.stack([F.cross_entropy(logit, target, reduction='sum').double(),
                             top[:, :1].any(1).sum().double(), top.any(1).sum().double(),
                             torch.tensor(float(target.shape[0]), dtype=torch.float64, device=device)])
    sums = dist.all_reduce_sum(sums)
    loss, top1, top5, n = sums.tolist()
    n = max(n, 1)
    return {'acc': 100.0 * top1 / n, 'acc_top5': 100.0 * top5 / n, 'loss': loss / n}


def run_init_stage(ctx, method, student, epochs_done=0, save_progress=None):
    """Published init stage of AB, FT and FSP: train only the method's init modules on its loss.

    A stop request ends it after the current init epoch; save_progress(n) records n epochs done.
    """
    opt = ctx.opt
    modules = method.init_modules(student)
    params = [p for p in modules.parameters() if p.requires_grad]
    student_ids = {id(p) for p in student.parameters()}
    needs_student = any(id(p) in student_ids for p in params)
    optimizer = torch.optim.SGD(params, lr=method.init_lr(opt), momentum=opt.momentum,
                                weight_decay=opt.weight_decay)
    ctx.log(f'init stage of {opt.distill}: {opt.init_epochs} epochs at lr {method.init_lr(opt):g}, '
            f'{sum(p.numel() for p in params)} parameters')
    for epoch in range(epochs_done + 1, opt.init_epochs + 1):
        modules.train()
        ctx.teacher.eval()
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        progress = ctx.progress(len(ctx.train_loader), f'init {epoch}/{opt.init_epochs}')
        for batch in ctx.train_loader:
            batch = to_device(batch, ctx.device, ctx.channels_last)
            t_feats, _ = teacher_forward(ctx.teacher, batch['input'], method.preact, ctx.autocast)
            s_feats = None
            if needs_student:
                with ctx.autocast():
                    s_feats, _ = student(batch['input'], is_feat=True, preact=method.preact)
                s_feats = [f.float() for f in s_feats]
            loss = method.init_loss(s_feats, t_feats)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(params)
            optimizer.step()
            total += loss.detach().double()
            progress.update(1)
        progress.close()
        avg = dist.all_reduce_sum(total).item() / (len(ctx.train_loader) * dist.world_size())
        if avg != avg or avg in (float('inf'), float('-inf')):
            raise NonFiniteLoss(f'init stage loss went non-finite at init epoch {epoch}')
        ctx.log(f'init epoch {epoch}: loss {avg:.4f}')
        if ctx.stop_requested():
            if save_progress is not None:
                save_progress(epoch)
            raise Preempted(signal.SIGTERM)
