import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller, match_size, stages


class Attention(nn.Module):
    """Attention transfer: per stage, the mean squared difference of the L2-normalised spatial
    attention maps mean_c(f^p). Takes and returns lists."""

    def __init__(self, p=2):
        super().__init__()
        self.p = p

    def forward(self, g_s, g_t):
        return [self.at_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def at_loss(self, f_s, f_t):
        f_s, f_t = match_size(f_s, f_t)
        return (self.at(f_s) - self.at(f_t)).pow(2).mean()

    def at(self, f):
        return F.normalize(f.pow(self.p).mean(1).flatten(1))


class ATMethod(Distiller):
    name = 'attention'
    order = 3
    paper = ('Zagoruyko & Komodakis, 2017, Paying More Attention to Attention: Improving the '
             'Performance of Convolutional Neural Networks via Attention Transfer')
    beta = 1000.0

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.criterion = Attention()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return torch.stack(self.criterion(stages(s_feats), stages(t_feats))).sum()
