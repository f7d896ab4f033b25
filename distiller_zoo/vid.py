import math

import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller, match_size, stages


class VIDLoss(nn.Module):
    """Variational information distillation: the teacher map is modelled as a Gaussian whose mean
    a 1x1-conv regressor predicts from the student map and whose per-channel variance
    softplus(log_scale) + eps is learned; the loss is its mean negative log-likelihood (up to a
    constant)."""

    def __init__(self, num_input_channels, num_mid_channel, num_target_channels,
                 init_pred_var=5.0, eps=1e-5):
        super().__init__()

        def conv1x1(c_in, c_out):
            return nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)

        self.regressor = nn.Sequential(
            conv1x1(num_input_channels, num_mid_channel), nn.ReLU(),
            conv1x1(num_mid_channel, num_mid_channel), nn.ReLU(),
            conv1x1(num_mid_channel, num_target_channels))
        # inverse softplus, so the initial variance is init_pred_var
        self.log_scale = nn.Parameter(
            math.log(math.expm1(init_pred_var - eps)) * torch.ones(num_target_channels))
        self.eps = eps

    def forward(self, input, target):
        input, target = match_size(input, target)
        mean = self.regressor(input)
        var = (F.softplus(self.log_scale) + self.eps).view(1, -1, 1, 1)
        return (0.5 * ((mean - target) ** 2 / var + torch.log(var))).mean()


class VIDMethod(Distiller):
    """Stages 1..n, one trainable VIDLoss (regressor + variance) per stage."""

    name = 'vid'
    order = 6
    paper = 'Ahn et al., 2019, Variational Information Distillation for Knowledge Transfer'
    beta = 1.0

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.trainable['vid'] = nn.ModuleList(
            VIDLoss(s[1], t[1], t[1]) for s, t in zip(stages(s_shapes), stages(t_shapes)))

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        losses = [vid(f_s, f_t) for vid, f_s, f_t
                  in zip(self.trainable['vid'], stages(s_feats), stages(t_feats))]
        return torch.stack(losses).sum()
