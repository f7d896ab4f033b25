import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller, match_size

# students whose paraphraser trains at lr 0.01: the published list, by exact name (my* students,
# wrn_10_2 and every other model train it at --learning_rate, as published)
INIT_LR_001 = ('resnet8', 'resnet14', 'resnet20', 'resnet32', 'resnet44', 'resnet56',
               'resnet110', 'resnet8x4', 'resnet32x4', 'wrn_16_1', 'wrn_16_2', 'wrn_40_1',
               'wrn_40_2')


def _conv_stack(conv, in_c, mid_c, out_c, use_bn):
    layers = []
    for c_in, c_out in ((in_c, mid_c), (mid_c, out_c), (out_c, out_c)):
        layers += [conv(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out) if use_bn else nn.Identity(),
                   nn.LeakyReLU(0.1, inplace=True)]
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """FT's paraphraser: a conv autoencoder on the teacher's last map; the encoder output (k * C
    channels) is the teacher factor."""

    def __init__(self, t_shape, k=0.5, use_bn=False):
        super().__init__()
        c = t_shape[1]
        f = int(c * k)
        self.encoder = _conv_stack(nn.Conv2d, c, c, f, use_bn)
        self.decoder = _conv_stack(nn.ConvTranspose2d, f, f, c, use_bn)

    def forward(self, f_s, is_factor=False):
        factor = self.encoder(f_s)
        if is_factor:
            return factor
        return factor, self.decoder(factor)


class Translator(nn.Module):
    """FT's translator: maps the student's last map to a factor shaped like the teacher's."""

    def __init__(self, s_shape, t_shape, k=0.5, use_bn=True):
        super().__init__()
        c = s_shape[1]
        self.encoder = _conv_stack(nn.Conv2d, c, c, int(t_shape[1] * k), use_bn)

    def forward(self, f_s):
        return self.encoder(f_s)


class FactorTransfer(nn.Module):
    """Factor transfer: distance between the L2-normalised mean_c(factor^p1) maps, L1 (p2=1) or
    mean of p2-th powers."""

    def __init__(self, p1=2, p2=1):
        super().__init__()
        self.p1 = p1
        self.p2 = p2

    def forward(self, f_s, f_t):
        return self.factor_loss(f_s, f_t)

    def factor_loss(self, f_s, f_t):
        f_s, f_t = match_size(f_s, f_t)
        diff = self.factor(f_s) - self.factor(f_t)
        return diff.abs().mean() if self.p2 == 1 else diff.pow(self.p2).mean()

    def factor(self, f):
        return F.normalize(f.pow(self.p1).mean(1).flatten(1))


class FTMethod(Distiller):
    """Last stage map. Init stage: the paraphraser learns to reconstruct the teacher map (MSE).
    Main stage: a trainable translator's student factor is matched to the frozen paraphraser's
    teacher factor."""

    name = 'factor'
    order = 13
    paper = ('Kim et al., 2018, Paraphrasing Complex Network: Network Compression via Factor '
             'Transfer')
    beta = 200.0
    has_init_stage = True

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.frozen['paraphraser'] = Paraphraser(t_shapes[-2])
        self.trainable['translator'] = Translator(s_shapes[-2], t_shapes[-2])
        self.criterion = FactorTransfer()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        with torch.no_grad():   # the paraphraser is frozen in this stage
            factor_t = self.frozen['paraphraser'](t_feats[-2], is_factor=True)
        return self.criterion(self.trainable['translator'](s_feats[-2]), factor_t)

    def init_modules(self, student):
        return nn.ModuleDict({'paraphraser': self.frozen['paraphraser']})

    def init_loss(self, s_feats, t_feats):
        f_t = t_feats[-2].detach()
        _, rec = self.frozen['paraphraser'](f_t)
        return F.mse_loss(rec, f_t)

    def init_lr(self, opt):
        return 0.01 if opt.model_s in INIT_LR_001 else opt.learning_rate
