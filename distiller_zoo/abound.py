import torch
from torch import nn

from distiller_zoo.base import Distiller, stages
from distiller_zoo.hint import ConvReg
from helper.errors import UsageError


class Connector(nn.Module):
    """AB's per-stage connectors: identity where channels and size already match, else a ConvReg
    without ReLU (the AB loss needs the sign of the pre-activation)."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        if len(s_shapes) != len(t_shapes):
            raise UsageError(f'AB needs as many student stages as teacher stages, got '
                             f'{len(s_shapes)} and {len(t_shapes)}')
        self.s_shapes, self.t_shapes = s_shapes, t_shapes
        self.connectors = nn.ModuleList(
            nn.Identity() if s[1] == t[1] and s[2] == t[2] else ConvReg(s, t, use_relu=False)
            for s, t in zip(s_shapes, t_shapes))

    def forward(self, g_s):
        return [conn(f) for conn, f in zip(self.connectors, g_s)]


class ABLoss(nn.Module):
    """Activation-boundary loss: a hinge-squared penalty wherever the (connected) student
    pre-activation is on the wrong side of margin for the sign of the teacher pre-activation.
    Stage i of n is weighted 2^(i-n+1), divided by the batch size and scaled by 3/1000 as
    published. Takes and returns lists."""

    def __init__(self, feat_num, margin=1.0):
        super().__init__()
        self.w = [2 ** (i - feat_num + 1) for i in range(feat_num)]
        self.margin = margin

    def forward(self, g_s, g_t):
        bsz = g_s[0].shape[0]
        return [w * self.criterion_alternative_l2(s, t) / bsz / 1000 * 3
                for w, s, t in zip(self.w, g_s, g_t)]

    def criterion_alternative_l2(self, source, target):
        m = self.margin
        off = (source > -m) & (target <= 0)    # teacher neuron inactive, student not below -m
        on = (source <= m) & (target > 0)      # teacher neuron active, student not above m
        loss = (source + m).pow(2) * off.float() + (source - m).pow(2) * on.float()
        return loss.abs().sum()


class ABMethod(Distiller):
    """Pre-activation stages 1..n. Everything happens in the init stage (student feature modules
    and a connector trained on the AB loss); the main stage adds nothing, as published, and the
    connector is not used there."""

    name = 'abound'
    order = 12
    paper = ('Heo et al., 2019, Knowledge Transfer via Distillation of Activation Boundaries '
             'Formed by Hidden Neurons')
    beta = 1.0
    preact = True
    has_init_stage = True
    terms = {}   # no term of its own in the main stage

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.frozen['connector'] = Connector(stages(s_shapes), stages(t_shapes))
        self.criterion = ABLoss(len(stages(s_shapes)))

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        return {}  # the main stage adds nothing, as published

    def init_modules(self, student):
        return nn.ModuleDict({'connector': self.frozen['connector'],
                              'student': student.get_feat_modules()})

    def init_loss(self, s_feats, t_feats):
        t_feats = [f.detach() for f in t_feats]
        g_s = self.frozen['connector'](stages(s_feats))
        return torch.stack(self.criterion(g_s, stages(t_feats))).sum()
