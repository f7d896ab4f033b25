import torch
from torch import nn

from distiller_zoo.base import Distiller, match_size, require_equal_channels


class FSP(nn.Module):
    """Flow of solution procedure: for each pair of consecutive maps (bottom, top) the C_bot x C_top
    matrix of spatially averaged channel products; the loss is the mean squared difference of the
    student and teacher matrices. Takes the feature lists, returns one loss per pair."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        require_equal_channels('FSP', s_shapes, t_shapes)

    def forward(self, g_s, g_t):
        return [(s - t).pow(2).mean() for s, t in zip(self.compute_fsp(g_s), self.compute_fsp(g_t))]

    @staticmethod
    def compute_fsp(g):
        out = []
        for bot, top in zip(g[:-1], g[1:]):
            bot, top = match_size(bot, top)
            bot = bot.flatten(2)    # N, C_bot, HW
            top = top.flatten(2)    # N, C_top, HW
            out.append(torch.einsum('nbx,ntx->ntb', bot, top) / bot.shape[2])
        return out


class FSPMethod(Distiller):
    """Stem and stages (feats[:-1]); needs equal channels in student and teacher. Everything
    happens in the init stage (student feature modules trained on the FSP loss); the main stage
    adds nothing, as published."""

    name = 'fsp'
    order = 9
    paper = ('Yim et al., 2017, A Gift from Knowledge Distillation: Fast Optimization, Network '
             'Minimization and Transfer Learning')
    beta = 50.0
    has_init_stage = True
    terms = {}   # no term of its own in the main stage

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.criterion = FSP(s_shapes[:-1], t_shapes[:-1])

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        return {}  # the main stage adds nothing, as published

    def init_modules(self, student):
        return nn.ModuleDict({'student': student.get_feat_modules()})

    def init_loss(self, s_feats, t_feats):
        t_feats = [f.detach() for f in t_feats]
        return torch.stack(self.criterion(s_feats[:-1], t_feats[:-1])).sum()
