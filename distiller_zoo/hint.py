import torch.nn.functional as F
from torch import nn

from crd.modules import ConvReg
from distiller_zoo.base import Distiller
from helper.errors import UsageError


class HintLoss(nn.Module):
    """FitNet hint: mean squared error between the regressed student map and the teacher map."""

    def forward(self, f_s, f_t):
        return F.mse_loss(f_s, f_t)


class FitNet(Distiller):
    """Stage opt.hint_layer of the student, through a trainable ConvReg, regressed onto the
    teacher's same stage."""

    name = 'hint'
    paper = 'Romero et al., 2015, FitNets: Hints for Thin Deep Nets'
    gamma, alpha, beta = 1.0, 0.0, 100.0

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.layer = opt.hint_layer
        last = min(len(s_shapes), len(t_shapes)) - 2   # the pooled vector is no hint
        if not 0 <= self.layer <= last:
            raise UsageError(f'--hint_layer must be between 0 and {last} for these models, '
                             f'got {self.layer}')
        self.trainable['regress'] = ConvReg(s_shapes[self.layer], t_shapes[self.layer])
        self.criterion = HintLoss()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return self.criterion(self.trainable['regress'](s_feats[self.layer]), t_feats[self.layer])
