"""Decoupled Knowledge Distillation (Zhao et al., CVPR 2022): the logit KL split into a target-class
term (TCKD) and a non-target term (NCKD), weighted separately."""
import torch
import torch.nn.functional as F

from distiller_zoo.base import Distiller, Option
from distiller_zoo.logit_stand import KD_WEIGHT, standardize


def dkd_loss(s_logit, t_logit, target, alpha, beta, T):
    """alpha * TCKD + beta * NCKD at temperature T, each summed over the batch times T^2 / N.

    TCKD: KL of the binary (target, rest) probabilities. NCKD: KL of the softmaxes over the
    non-target classes, the target removed by subtracting 1000 from its scaled logit (published)."""
    gt = F.one_hot(target.reshape(-1), s_logit.shape[1]).to(torch.bool)
    p_s = F.softmax(s_logit / T, dim=1)
    p_t = F.softmax(t_logit / T, dim=1)

    def binary(p):
        p_gt = (p * gt).sum(1, keepdim=True)
        return torch.cat([p_gt, (p * ~gt).sum(1, keepdim=True)], dim=1)

    scale = T ** 2 / target.shape[0]
    tckd = F.kl_div(torch.log(binary(p_s)), binary(p_t), reduction='sum') * scale
    mask = 1000.0 * gt.to(s_logit.dtype)
    nckd = F.kl_div(F.log_softmax(s_logit / T - mask, dim=1), F.softmax(t_logit / T - mask, dim=1),
                    reduction='sum') * scale
    return alpha * tckd + beta * nckd


def warmup_factor(epoch, warmup):
    """The published linear warm-up of the DKD loss: min(epoch / warmup, 1), epochs from 1.
    epoch may be a tensor (the compiled step's): then the factor is one, with no host value."""
    if torch.is_tensor(epoch):
        return (epoch / warmup).clamp(max=1.0)
    return min(epoch / warmup, 1.0)


class DKDMethod(Distiller):
    """Logits only. The warm-up follows the step's epoch argument, which the trainer passes as a
    tensor: a compiled step sees a new value each epoch, not a new constant (no recompiles)."""

    name = 'dkd'
    paper = 'Zhao et al., 2022, Decoupled Knowledge Distillation'
    gamma, alpha, beta = 1.0, 0.0, 1.0
    order = 15
    supports_logit_stand = True
    # mdistiller CFG.DKD; dkd_T omitted: the resolved --kd_T
    options = (Option('dkd_alpha', published=1.0, tag='a', help='DKD weight of TCKD (default 1)'),
               Option('dkd_beta', published=8.0, tag='b', help='DKD weight of NCKD (default 8)'),
               Option('dkd_T', check='positive', tag='T', help='DKD temperature (default: --kd_T)'),
               Option('dkd_warmup', published=20.0, check='positive', tag='w',
                      help='DKD loss scaled by min(epoch / warmup, 1) (default 20)'))

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.dkd_alpha, self.dkd_beta = opt.dkd_alpha, opt.dkd_beta
        self.T = opt.dkd_T
        self.warmup = opt.dkd_warmup
        self.logit_stand = opt.logit_stand

    @classmethod
    def published_weights(cls, opt):
        # --logit_stand: LS multiplies DKD's alpha and beta by its kd weight (default 9), which is -b here
        return cls.gamma, cls.alpha, KD_WEIGHT if opt.logit_stand else cls.beta

    @classmethod
    def complete_options(cls, opt):
        super().complete_options(opt)
        if opt.dkd_T is None:
            opt.dkd_T = opt.kd_T

    def warmup_scale(self, epoch):
        return warmup_factor(epoch, self.warmup)

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        if self.logit_stand:
            s_logit, t_logit = standardize(s_logit), standardize(t_logit)
        loss = dkd_loss(s_logit, t_logit, batch['target'], self.dkd_alpha, self.dkd_beta, self.T)
        return {'method': self.warmup_scale(epoch) * loss}
