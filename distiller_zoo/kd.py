import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller, zero_loss
from distiller_zoo.logit_stand import KD_WEIGHT


class DistillKL(nn.Module):
    """KL(teacher || student) of temperature-T softmaxes over dim 1, summed, times T^2, per sample.

    Works on logits (N, C) and on stage maps (N, C, H, W), where the softmax runs over channels at
    each position (milestone checking)."""

    def __init__(self, T):
        super().__init__()
        self.T = T

    def forward(self, y_s, y_t):
        log_p_s = F.log_softmax(y_s / self.T, dim=1)
        p_t = F.softmax(y_t / self.T, dim=1)
        return F.kl_div(log_p_s, p_t, reduction='sum') * self.T ** 2 / y_s.shape[0]


class KD(Distiller):
    """Logit KD alone: the training loop's alpha * KL term does the work, so the method adds 0."""

    name = 'kd'
    paper = 'Hinton et al., 2015, Distilling the Knowledge in a Neural Network'
    gamma, alpha, beta = 0.1, 0.9, 0.0
    supports_logit_stand = True   # applied to the loop's KD term (helper.loops.DistillStep)

    @classmethod
    def published_weights(cls, opt):
        # logit standardization's KD: CE weight 0.1, KD weight 9 (its published defaults)
        alpha = KD_WEIGHT if getattr(opt, 'logit_stand', False) else cls.alpha
        return cls.gamma, alpha, cls.beta

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return zero_loss(s_logit)
