"""ReviewKD (Chen et al., CVPR 2021): the student's stages, deepest first, fused by attention-based
fusion (ABF) modules into maps shaped like the teacher's, compared with the teacher's pre-ReLU
stages by the hierarchical context loss (HCL)."""
import torch
import torch.nn.functional as F
from torch import nn

import models
from distiller_zoo.base import Distiller
from distiller_zoo.dkd import warmup_factor
from helper.errors import UsageError

MAX_MID_CHANNEL = 512
WARMUP_EPOCHS = 20.0   # the loss is scaled by min(epoch / 20, 1), epochs from 1 (mdistiller)
# -b per CIFAR-100 pair from the authors' CIFAR-100/script/reviewKD.sh; every other pair takes 5
# (their other pairs and mdistiller's configs/cifar100/reviewkd.yaml)
PAIR_WEIGHTS = {('resnet32x4', 'ShuffleV2'): 8.0, ('resnet56', 'resnet20'): 0.6,
                ('resnet110', 'resnet32'): 1.0}
DEFAULT_WEIGHT = 5.0


def hcl_loss(fused, teacher):
    """Sum over levels of MSE plus the MSEs of 4x4, 2x2, 1x1 average pools (each smaller than the
    map) weighted 1/2, 1/4, 1/8, divided by the sum of the weights used."""
    total = 0.0
    for fs, ft in zip(fused, teacher):
        h = fs.shape[2]
        loss, weight, weights = F.mse_loss(fs, ft), 1.0, 1.0
        for size in (4, 2, 1):
            if size >= h:
                continue
            weight /= 2.0
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(fs, size), F.adaptive_avg_pool2d(ft, size))
            weights += weight
        total = total + loss / weights
    return total


class ABF(nn.Module):
    """1x1 conv + BN to mid channels; with `fuse`, a per-position two-way attention mixes it with
    the deeper level's residual (nearest-upsampled); resized to out_size; 3x3 conv + BN to out
    channels. Returns (output, residual for the next, shallower level)."""

    def __init__(self, in_channel, mid_channel, out_channel, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channel, mid_channel, 1, bias=False), nn.BatchNorm2d(mid_channel))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channel, out_channel, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(out_channel))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channel, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x, residual=None, size=None, out_size=None):
        x = self.conv1(x)
        if self.att_conv is not None:
            residual = F.interpolate(residual, (size, size), mode='nearest')
            att = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * att[:, 0:1] + residual * att[:, 1:2]
        if x.shape[-1] != out_size:
            x = F.interpolate(x, (out_size, out_size), mode='nearest')
        return self.conv2(x), x


class ReviewFusion(nn.Module):
    """The ABF modules for student levels of in_channels (stages then the pooled vector) onto
    teacher levels of out_channels; sizes[i]/out_sizes[i] are the student/teacher map sizes,
    deepest (the pooled 1x1) first. Module i fuses the i-th deepest level."""

    def __init__(self, in_channels, out_channels, sizes, out_sizes):
        super().__init__()
        mid = min(MAX_MID_CHANNEL, in_channels[-1])
        last = len(in_channels) - 1
        abfs = [ABF(c, mid, out_channels[i], i < last) for i, c in enumerate(in_channels)]
        self.abfs = nn.ModuleList(abfs[::-1])
        self.sizes, self.out_sizes = list(sizes), list(out_sizes)

    def forward(self, levels):
        """levels: the student's maps, shallowest first; returns the fused maps in that order."""
        levels = levels[::-1]
        out, residual = self.abfs[0](levels[0], out_size=self.out_sizes[0])
        fused = [out]
        for x, abf, size, out_size in zip(levels[1:], self.abfs[1:], self.sizes[1:], self.out_sizes[1:]):
            out, residual = abf(x, residual, size, out_size)
            fused.insert(0, out)
        return fused


def levels_of(feats):
    """The stages and the pooled vector as a 1x1 map."""
    return list(feats[1:-1]) + [feats[-1].reshape(*feats[-1].shape[:2], 1, 1)]


class ReviewKDMethod(Distiller):
    """Student stages after their ReLU (mdistiller's STU_PREACT False), teacher stages before it;
    the 'method' term is HCL on the fused maps, warmed up over the first 20 epochs."""

    name = 'reviewkd'
    order = 17
    paper = 'Chen et al., 2021, Distilling Knowledge via Knowledge Review'
    gamma, alpha, beta = 1.0, 0.0, DEFAULT_WEIGHT
    teacher_preact = True

    @classmethod
    def published_weights(cls, opt):
        pair = (models.base_name(opt.model_t), models.base_name(opt.model_s))
        return cls.gamma, cls.alpha, PAIR_WEIGHTS.get(pair, DEFAULT_WEIGHT)

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        s_levels, t_levels = shapes_of_levels(s_shapes), shapes_of_levels(t_shapes)
        if len(s_levels) != len(t_levels) or len(s_levels) < 2:
            raise UsageError(f'reviewkd cannot fuse {opt.model_s} onto {opt.model_t}: it pairs stages one to '
                             f'one, but the student\'s stages are {_fmt(s_levels[:-1])} and the teacher\'s '
                             f'{_fmt(t_levels[:-1])}')
        self.trainable['fusion'] = ReviewFusion([s[0] for s in s_levels], [t[0] for t in t_levels],
                                                [s[1] for s in s_levels][::-1], [t[1] for t in t_levels][::-1])

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        fused = self.trainable['fusion'](levels_of(s_feats))
        return {'method': warmup_factor(epoch, WARMUP_EPOCHS) * hcl_loss(fused, levels_of(t_feats))}


def shapes_of_levels(shapes):
    """(channels, size) of each stage and of the pooled vector (size 1)."""
    return [(tuple(s)[1], tuple(s)[2]) for s in shapes[1:-1]] + [(tuple(shapes[-1])[1], 1)]


def _fmt(levels):
    return ', '.join(f'{c}x{h}x{h}' for c, h in levels)
