"""DOT, the Distillation-Oriented Trainer (Zhao et al., ICCV 2023): SGD whose task gradient (CE) and
distillation gradient (every other term, milestone checking included) keep separate momenta, the
task's momentum - delta and the distillation's momentum + delta.

A step is two backward passes, as published: the distillation loss first (its gradient is kept),
then the task loss; then each parameter moves by both buffers."""
import torch

from helper import dist
from helper.errors import UsageError


class DOT(torch.optim.Optimizer):
    """Per parameter p with task gradient g_t and distillation gradient g_d (either may be absent):
    - both: task buffer <- m_t * buf + (g_t + wd * p); distillation buffer <- m_d * buf + g_d
      (weight decay counted once, in the task gradient);
    - one of them only: its buffer <- (m_t + m_d) / 2 * buf + (g + wd * p);
    a buffer starts as its first gradient (the task's with weight decay, the distillation's
    without: published); p -= lr * task buffer, then p -= lr * distillation buffer.
    State per parameter: 'momentum_buffer' (task) and 'momentum_kd_buffer' (distillation)."""

    def __init__(self, params, lr, momentum=0.9, delta=0.075, weight_decay=0.0):
        if not 0.0 <= delta <= momentum:
            raise UsageError(f'--dot_delta must be between 0 and --momentum ({momentum}), got {delta}')
        super().__init__(params, dict(lr=lr, momentum_task=momentum - delta, momentum_kd=momentum + delta,
                                      weight_decay=weight_decay))
        self._distill_grads = {}

    @torch.no_grad()
    def keep_distill_grads(self):
        """After the distillation backward: its gradients become this step's distillation gradient."""
        self._distill_grads = {p: p.grad for group in self.param_groups for p in group['params']
                               if p.grad is not None}

    @torch.no_grad()
    def step(self, closure=None):
        """After the task backward: the update with both momenta."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        distill = self._distill_grads
        self._distill_grads = {}
        for group in self.param_groups:
            m_t, m_d, wd, lr = group['momentum_task'], group['momentum_kd'], group['weight_decay'], group['lr']
            m_one = (m_t + m_d) / 2.0
            for p in group['params']:
                g_t, g_d = p.grad, distill.get(p)
                if g_t is not None:
                    _update(self.state[p], 'momentum_buffer', g_t.add(p, alpha=wd) if wd else g_t,
                            m_t if g_d is not None else m_one)
                    p.add_(self.state[p]['momentum_buffer'], alpha=-lr)
            for p in group['params']:
                g_t, g_d = p.grad, distill.get(p)
                if g_d is not None:
                    # published: a distillation-only parameter's first buffer has no weight decay
                    if g_t is None and wd and 'momentum_kd_buffer' in self.state[p]:
                        g_d = g_d.add(p, alpha=wd)
                    _update(self.state[p], 'momentum_kd_buffer', g_d, m_d if g_t is not None else m_one)
                    p.add_(self.state[p]['momentum_kd_buffer'], alpha=-lr)
        return loss


def _update(state, key, grad, momentum):
    buf = state.get(key)
    if buf is None:
        state[key] = torch.clone(grad).detach()
    else:
        buf.mul_(momentum).add_(grad)


def split_losses(terms, names, weights):
    """(task loss, distillation loss or None) from a step's term vector: CE weighted, and the sum
    of every other term with a non-zero weight (a zero-weighted term sends no gradient, as in the
    published code where it is absent)."""
    task = weights['ce'] * terms[names.index('ce')]
    parts = [weights[k] * terms[names.index(k)] for k in weights if k != 'ce' and weights[k] != 0]
    return task, (torch.stack(parts).sum() if parts else None)


def dot_forward_backward(module, batch, teacher_out, epoch, autocast, optimizer):
    """One DOT step on the plain step module (not a DDP wrapper: two backward passes per forward;
    the gradients are averaged over ranks here): returns (logit, terms) like forward_backward,
    the optimizer step included."""
    t_feats, t_logit = teacher_out if teacher_out is not None else (None, None)
    with autocast():
        logit, terms = module(batch, t_feats, t_logit, epoch)
    task, distill = split_losses(terms, module.names, module.method.weights)
    params = [p for group in optimizer.param_groups for p in group['params']]
    optimizer.zero_grad(set_to_none=True)
    if distill is not None and distill.requires_grad:   # AB/FSP add nothing after their init stage
        distill.backward(retain_graph=True)
        dist.average_gradients(params)
    optimizer.keep_distill_grads()
    optimizer.zero_grad(set_to_none=True)
    task.backward()
    dist.average_gradients(params)
    optimizer.step()
    return logit, terms


def check_dot_speed_flags(opt, scaler):
    """What DOT cannot run with: fp16's GradScaler (it would unscale the task gradient alone), and
    --step_graph (one CUDA graph holds one backward pass)."""
    if scaler.is_enabled():
        raise UsageError('--optimizer dot needs bf16 or fp32: fp16 autocast scales the gradients, and the '
                         'distillation gradient would stay scaled; drop --amp (--fast turns it on)')
    if getattr(opt, 'step_graph', False):
        raise UsageError('--optimizer dot takes two backward passes per step, which --step_graph cannot '
                         'capture; drop --step_graph')
