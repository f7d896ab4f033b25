import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller, match_size, stages


class NSTLoss(nn.Module):
    """Neuron selectivity transfer: squared MMD with a degree-2 polynomial kernel between the
    channels' L2-normalised spatial activation patterns. Takes and returns lists."""

    def forward(self, g_s, g_t):
        return [self.nst_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def nst_loss(self, f_s, f_t):
        f_s, f_t = match_size(f_s, f_t)
        f_s = F.normalize(f_s.flatten(2), dim=2)
        f_t = F.normalize(f_t.flatten(2), dim=2)
        # the teacher-teacher term has no gradient but is kept so the value is the full MMD
        return (self.poly_kernel(f_t, f_t).mean().detach() + self.poly_kernel(f_s, f_s).mean()
                - 2 * self.poly_kernel(f_s, f_t).mean())

    @staticmethod
    def poly_kernel(a, b):
        """(a_i . b_j)^2 for every channel pair: (N, C_b, C_a)."""
        return torch.bmm(b, a.transpose(1, 2)).pow(2)


class NSTMethod(Distiller):
    """Stages 1..n."""

    name = 'nst'
    order = 14
    paper = ('Huang & Wang, 2017, Like What You Like: Knowledge Distill via Neuron Selectivity '
             'Transfer')
    beta = 50.0

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.criterion = NSTLoss()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return torch.stack(self.criterion(stages(s_feats), stages(t_feats))).sum()
