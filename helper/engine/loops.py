"""The training module, its meters and validation, for every method alike.

Nothing here knows which method runs: the method object (distiller_zoo) picks its features and
names its own loss terms. Meters stay on the device and are read every --print_freq iterations,
so a step never waits for the GPU.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from distiller_zoo.base import wants_teacher_preact
from helper import dist

# The meters of a checkpoint that predates saving their names: these terms first, then the
# method's others (read on resume only).
OLD_METER_TERMS = ('ce', 'kd', 'method', 'mc')


class NonFiniteLoss(RuntimeError):
    pass


class Preempted(Exception):
    """SIGTERM/SIGINT arrived; a resumable checkpoint has been written."""


def at_least_fp32(t):
    """Losses run in fp32 under autocast; float64 (exactness tests) stays float64."""
    return t if t.dtype == torch.float64 else t.float()


def term_names(method):
    """Meter order (and log.csv's loss_* columns): the total, then the terms the method declares,
    in its order."""
    return ('loss',) + tuple(method.weights)


class StudentWithLoss(nn.Module):
    """The student and the method as one module: forward returns the logit and the loss terms.

    Being one module is what lets DistributedDataParallel wrap the student and the method's
    auxiliary modules together. The terms come back as one vector in `names` order: the weighted
    total first, then each term unweighted (0 for a term the method lacks).
    """

    def __init__(self, student, method):
        super().__init__()
        self.student = student
        self.method = method
        self.names = term_names(method)

    @property
    def preact(self):
        return self.method.preact

    @property
    def teacher_preact(self):
        return wants_teacher_preact(self.method)

    def forward(self, batch, t_feats=None, t_logit=None, epoch=1):
        x = batch['input']
        if self.method.needs_teacher:
            feats, logit = self.student(x, is_feat=True, preact=self.preact)
        else:
            feats, logit = None, self.student(x)
        # losses in fp32 even under autocast: KL and contrastive terms are precision-sensitive
        with torch.autocast(x.device.type, enabled=False):
            feats = [at_least_fp32(f) for f in feats] if feats is not None else None
            raw = self.method.loss_terms(feats, at_least_fp32(logit), t_feats, t_logit, batch, epoch)
            weights = self.method.weights
            loss = torch.stack([weights[k] * v for k, v in raw.items()]).sum()
            zero = loss.new_zeros(())
            terms = torch.stack([loss] + [raw.get(k, zero).reshape(()) for k in self.names[1:]])
        return logit, terms


def teacher_forward(teacher, x, preact, autocast):
    """Frozen teacher under inference mode; its outputs leave as normal tensors (inference tensors
    cannot be autograd targets), copied once: a cast to fp32 already copies."""
    with torch.inference_mode(), autocast():
        feats, logit = teacher(x, is_feat=True, preact=preact)
    return [_as_target(f) for f in feats], _as_target(logit)


def _as_target(t):
    out = at_least_fp32(t)
    return out if out is not t else out.clone()


def forward_backward(module, batch, teacher_out, epoch, autocast, optimizer, scaler):
    """One step up to its gradients (the optimizer step is the caller's); returns (logit, terms).
    teacher_out: the teacher's (feats, logit) for this batch, or None for a run without a teacher."""
    t_feats, t_logit = teacher_out if teacher_out is not None else (None, None)
    with autocast():
        logit, terms = module(batch, t_feats, t_logit, epoch)
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

    def __init__(self, names, device, saved=None):
        self.names = names
        self.sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)  # + correct
        self.count = 0
        self.step = 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_terms = torch.zeros(len(names), dtype=torch.bool, device=device)
        if saved:
            self.step = saved['step']
            if dist.is_main():  # saved sums are over all ranks: count them once
                self._restore_sums(saved)
                self.count = saved['count']

    def _restore_sums(self, saved):
        old = saved.get('names') or (('loss',) + OLD_METER_TERMS +
                                      tuple(n for n in self.names[1:] if n not in OLD_METER_TERMS))
        sums = saved['sums'].to(self.sums)
        for i, name in enumerate(old):
            if name in self.names:
                self.sums[self.names.index(name)] = sums[i]
        self.sums[-1] = sums[-1]   # correct predictions

    def update(self, terms, logit, target, step):
        n = target.shape[0]  # logit: None for a stage without predictions (the init stage)
        correct = (logit.detach().argmax(1) == target).sum() if logit is not None else target.new_zeros(())
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
        """epoch: its number, or the words that name it ('init epoch 2')."""
        it = int(self.first_bad.item())
        names = [t for t, bad in zip(self.names, self.bad_terms.tolist()) if bad]
        where = epoch if isinstance(epoch, str) else f'epoch {epoch}'
        return (f'loss went non-finite at {where}, iteration {it + 1} '
                f'(term: {", ".join(names[1:] or names)}); the last good checkpoint is kept')

    def _totals(self):
        sums = dist.all_reduce_sum(self.sums.clone())
        count = dist.all_reduce_sum(torch.tensor(float(self.count), device=sums.device)).item()
        return sums, int(count)

    def averages(self):
        sums, count = self._totals()
        values = (sums / max(count, 1)).tolist()
        out = dict(zip(self.names, values))
        out['acc'] = 100.0 * values[-1]
        return out

    def saved(self):
        """The epoch so far, summed over ranks (call on every rank)."""
        sums, count = self._totals()
        return {'sums': sums.cpu(), 'count': count, 'step': self.step, 'names': list(self.names)}


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
