import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller, Option
from helper.errors import UsageError


class ConvReg(nn.Module):
    """FitNet's regressor: maps a student map (N, C, H, W) onto the teacher's shape.

    Halves the size with a stride-2 conv, doubles it with a transposed conv, or shrinks it with
    a valid conv of kernel (1 + sH - tH, 1 + sW - tW); then BatchNorm and optionally ReLU.
    """

    def __init__(self, s_shape, t_shape, use_relu=True):
        super().__init__()
        self.use_relu = use_relu
        _, s_c, s_h, s_w = s_shape
        _, t_c, t_h, t_w = t_shape
        if s_h == 2 * t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h and s_w >= t_w:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise UsageError(f'cannot regress a student map of {s_h}x{s_w} onto a teacher map of '
                             f'{t_h}x{t_w} (needs half, double or smaller teacher size)')
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.relu(x) if self.use_relu else x


class HintLoss(nn.Module):
    """FitNet hint: mean squared error between the regressed student map and the teacher map."""

    def forward(self, f_s, f_t):
        return F.mse_loss(f_s, f_t)


class FitNetMethod(Distiller):
    """Stage opt.hint_layer of the student, through a trainable ConvReg, regressed onto the
    teacher's same stage."""

    name = 'hint'
    paper = 'Romero et al., 2015, FitNets: Hints for Thin Deep Nets'
    order = 2
    gamma, alpha, beta = 1.0, 0.0, 100.0
    options = (Option('hint_layer', type=int, default=2, choices=[0, 1, 2, 3, 4]),)

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
