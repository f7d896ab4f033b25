"""OFD, overhaul of feature distillation (Heo et al., ICCV 2019): a 1x1 conv + BN connector per
stage maps the student's pre-ReLU stage onto the teacher's; a partial L2 skips positions where both
the teacher is below its margin and the student below the teacher. The margin of each teacher
channel is the expected value of its BN output where that is negative."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller
from helper.errors import UsageError


def margins_from_bn(bn):
    """Per channel, with s = |gamma| and m = beta of the BN before the ReLU: E[x | x < 0] of
    N(m, s^2), i.e. m - s * phi(m/s) / Phi(-m/s), or -3s where Phi(-m/s) <= 0.001."""
    out = []
    for s, m in zip(bn.weight.detach().double().abs().tolist(), bn.bias.detach().double().tolist()):
        cdf = 0.5 * math.erfc((m / s) / math.sqrt(2.0))   # Phi(-m/s)
        if cdf > 0.001:
            out.append(-s * math.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi) / cdf + m)
        else:
            out.append(-3 * s)
    return torch.tensor(out, dtype=torch.float32)


def partial_l2(source, target, margin):
    """Squared error where the teacher is positive, or where the student exceeds a teacher between
    its margin and 0; (student - margin)^2 where the teacher is at or below its margin and the
    student above it. Mean over the batch, summed over the rest."""
    margin = margin.to(source).reshape(1, -1, 1, 1)
    loss = ((source - margin) ** 2 * ((source > margin) & (target <= margin)).to(source)
            + (source - target) ** 2 * ((source > target) & (target > margin) & (target <= 0)).to(source)
            + (source - target) ** 2 * (target > 0).to(source))
    return loss.mean(dim=0).sum()


def connector(s_channels, t_channels):
    conv = nn.Conv2d(s_channels, t_channels, 1, bias=False)
    nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / t_channels))   # fan-out He init, as published
    return nn.Sequential(conv, nn.BatchNorm2d(t_channels))


class OFDMethod(Distiller):
    """Pre-ReLU stages of both; the deepest stages pair up where the counts differ. Stage i of n
    counts 1 / 2^(n - 1 - i). The margins come from the teacher's BN before each stage's last ReLU
    (bind_teacher) and are buffers of the method, so a checkpoint carries them."""

    name = 'ofd'
    order = 18
    paper = 'Heo et al., 2019, A Comprehensive Overhaul of Feature Distillation'
    gamma, alpha, beta = 1.0, 0.0, 0.001
    preact = True

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        s_stages, t_stages = list(s_shapes[1:-1]), list(t_shapes[1:-1])
        self.n = min(len(s_stages), len(t_stages))
        self.t_channels = [tuple(t)[1] for t in t_stages[-self.n:]]
        self.trainable['connectors'] = nn.ModuleList(
            connector(tuple(s)[1], c) for s, c in zip(s_stages[-self.n:], self.t_channels))
        for i, c in enumerate(self.t_channels):
            self.register_buffer(f'margin{i}', torch.zeros(c))
        self.model_t = getattr(opt, 'model_t', None) or 'this teacher'

    def bind_teacher(self, teacher):
        find = getattr(teacher, 'get_bn_before_relu', None)
        bns = find() if find is not None else None
        if not bns or len(bns) < self.n:
            raise UsageError(f'ofd needs the teacher\'s BN before each stage\'s last ReLU; {self.model_t} has none')
        for i, (bn, c) in enumerate(zip(bns[-self.n:], self.t_channels)):
            if not isinstance(bn, nn.BatchNorm2d) or bn.num_features != c:
                raise UsageError(f'ofd needs the teacher\'s BN before each stage\'s last ReLU; {self.model_t} '
                                 f'has none with {c} channels for stage {i + 1}')
            getattr(self, f'margin{i}').copy_(margins_from_bn(bn))

    def margins(self):
        return [getattr(self, f'margin{i}') for i in range(self.n)]

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        s_stages, t_stages = s_feats[1:-1][-self.n:], t_feats[1:-1][-self.n:]
        total = 0.0
        for i, (conn, f_s, f_t, margin) in enumerate(zip(self.trainable['connectors'], s_stages, t_stages,
                                                         self.margins())):
            f_s = conn(f_s)
            f_t = F.adaptive_avg_pool2d(f_t, f_s.shape[-2:])
            total = total + partial_l2(f_s, f_t, margin) / 2 ** (self.n - 1 - i)
        return total
